"""Telemetry that may be a breach is evaluated at once; in-band telemetry is debounced. Through the
service's own scheduler and through the shared job store that a standalone ingest worker writes."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from ingest.telemetry import IncomingMessage, TelemetryIngest, sign_envelope
from models.coldchain.profiles import load_profile, load_profiles
from models.coldchain.rules import may_breach_now
from oracle.context import Context
from oracle.decisions.coldchain import profile_bytes32
from oracle.devices import Kek, load_kek, register_device
from oracle.reports import subject_id
from oracle.scheduler import SchedulerHandle, start_scheduler
from oracle.scheduler.hooks import notify_committed_telemetry
from oracle.scheduler.subjects import shipment_now_job_id
from tests.scheduler.conftest import ESCROW, FAST, apply, event

SHIPMENT = "vax-42"


@pytest.mark.parametrize("name", sorted(load_profiles()))
def test_may_breach_now_is_false_in_band_and_true_at_every_rule_edge(name: str) -> None:
    p = load_profile(name)
    middle = (p.band_low_c + p.band_high_c) / 2
    assert not may_breach_now(p, [middle, p.band_low_c, p.band_high_c])
    assert not may_breach_now(p, [])
    assert may_breach_now(p, [middle, p.band_high_c + 0.1])
    assert may_breach_now(p, [p.band_low_c - 0.1])
    assert may_breach_now(p, np.array([p.hard_max_c]))
    for rule in p.duration_limits:  # every duration rule can only fire on a reading this test flags
        edge = rule.threshold_c + (0.01 if rule.op in (">", ">=") else -0.01)
        assert may_breach_now(p, [edge])


def _batch(ctx: Context, kek: Kek, secret: bytes, temps: list[float], first_seq: int) -> tuple[list, object]:
    t0 = int(dt.datetime.now(dt.UTC).timestamp() * 1000) - 600_000
    body = [
        {"seq": first_seq + i, "ts": t0 + (first_seq + i) * 1000, "temp_c": t} for i, t in enumerate(temps)
    ]
    messages = [IncomingMessage("logger-1", json.dumps(sign_envelope(body, secret)).encode())]
    outcome = TelemetryIngest(sessions=ctx.sessions, blobs=ctx.blobs, kek=kek).process(messages)
    assert outcome.accepted == len(temps)
    return messages, outcome


def _register(ctx: Context) -> tuple[Kek, bytes]:
    apply(
        ctx,
        event(
            "ColdChainEscrow",
            "ShipmentRegistered",
            ESCROW,
            shipmentId=_subject(),
            buyer="0x" + "66" * 20,
            seller="0x" + "77" * 20,
            amount=5 * 10**6,
            profile="0x" + profile_bytes32("refrigerated").hex(),
            deadline=1_900_000_000,
        ),
    )
    kek = load_kek(ctx.settings)
    secret = register_device(
        ctx.sessions,
        kek,
        device_id="logger-1",
        shipment_id=SHIPMENT,
        valid_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    return kek, secret


def _due_in_s(handle_or_ctx: SchedulerHandle) -> float:
    job = next(j for j in handle_or_ctx.scheduler.get_jobs() if j.id == shipment_now_job_id(_subject()))
    return (job.next_run_time - dt.datetime.now(dt.UTC)).total_seconds()


def _subject() -> str:
    return "0x" + subject_id("shipment", SHIPMENT).hex()


def test_breach_reading_schedules_at_once_in_band_is_debounced(
    ctx: Context, running: Callable[..., SchedulerHandle]
) -> None:
    handle = running(FAST)
    assert handle.wait_until_leader(10)
    kek, secret = _register(ctx)
    handle.scheduler.pause()  # look at the job before it runs
    messages, outcome = _batch(ctx, kek, secret, [4.0, 5.0, 6.0], 0)
    assert notify_committed_telemetry(ctx, messages, outcome) == {SHIPMENT: False}
    assert _due_in_s(handle) > FAST.telemetry_debounce_s - 5
    messages, outcome = _batch(ctx, kek, secret, [5.0, 11.5], 10)  # 11.5 °C: out of the 2–8 °C band
    assert notify_committed_telemetry(ctx, messages, outcome) == {SHIPMENT: True}
    assert _due_in_s(handle) <= 1.0


def test_standalone_worker_writes_an_immediate_job_the_leader_sees(ctx: Context) -> None:
    kek, secret = _register(ctx)
    assert "scheduler" not in ctx.extras  # as in `oracle ingest telemetry`: no scheduler of its own
    messages, outcome = _batch(ctx, kek, secret, [-1.0], 0)
    assert notify_committed_telemetry(ctx, messages, outcome) == {SHIPMENT: True}
    stored = _stored_job(ctx)
    assert stored is not None, "no job in the shared store"
    assert stored - dt.datetime.now(dt.UTC).timestamp() <= 1.0  # due at once, not debounced
    leader = start_scheduler(ctx, FAST)
    try:
        assert leader.wait_until_leader(10)
        deadline = time.monotonic() + FAST.store_poll_s + 10
        while _stored_job(ctx) is not None:  # the leader picks it up and runs it
            assert time.monotonic() < deadline, "the leader never ran the stored job"
            time.sleep(0.1)
    finally:
        leader.stop()


def _stored_job(ctx: Context) -> float | None:
    """The shared store's next run time (UNIX s) of the shipment's immediate job, None when absent."""
    engine = create_engine(ctx.settings.resolved_database_url)
    try:
        with engine.connect() as c:
            row = c.execute(
                text("SELECT next_run_time FROM apscheduler_jobs WHERE id = :id"),
                {"id": shipment_now_job_id(_subject())},
            ).first()
    finally:
        engine.dispose()
    return None if row is None else float(row[0])
