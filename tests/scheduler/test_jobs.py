"""Jobs follow the chain: Subscribed / PolicyCreated / ShipmentRegistered create them, cancellations
remove them, a restart reconciles them from the tables; on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import create_engine, text

from oracle.context import Context
from oracle.reports import subject_id
from oracle.scheduler import SchedulerHandle, handle_event
from oracle.scheduler.subjects import drought_job_id, shipment_job_id
from tests.scheduler.conftest import ESCROW, FAST, POOL, apply, event

DRY = "0x" + subject_id("region", "dry").hex()
WET = "0x" + subject_id("region", "wet").hex()
SHIP = "0x" + subject_id("shipment", "vaccines-7").hex()
CONSUMER = "0x" + "44" * 20


def _ids(handle: SchedulerHandle) -> set[str]:
    return {j.id for j in handle.jobs() if j.store == "default"}


def _stored_ids(ctx: Context) -> set[str]:
    engine = create_engine(ctx.settings.resolved_database_url)
    try:
        with engine.connect() as c:
            return {r[0] for r in c.execute(text("SELECT id FROM apscheduler_jobs"))}
    finally:
        engine.dispose()


def _policy(policy_id: int, region: str) -> dict[str, object]:
    return {
        "policyId": policy_id,
        "insured": "0x" + "55" * 20,
        "region": region,
        "coverageStart": 1_700_000_000,
        "coverageEnd": 1_800_000_000,
        "trigger": 1_000_000,
        "exit": 4_000_000,
        "limit": 10**9,
    }


def _shipment() -> dict[str, object]:
    return {
        "shipmentId": SHIP,
        "buyer": "0x" + "66" * 20,
        "seller": "0x" + "77" * 20,
        "amount": 5 * 10**6,
        "profile": "0x" + "00" * 32,
        "deadline": 1_800_000_000,
    }


def test_events_create_jobs_and_cancellations_remove_them(
    ctx: Context, running: Callable[..., SchedulerHandle]
) -> None:
    handle = running()
    assert handle.wait_until_leader(10)
    steps = [
        (event("OracleRouter", "Subscribed", subject=DRY, consumer=CONSUMER), {drought_job_id("dry")}),
        (
            event("DroughtInsurancePool", "PolicyCreated", POOL, **_policy(1, WET)),
            {drought_job_id("dry"), drought_job_id("wet")},
        ),
        (
            event("ColdChainEscrow", "ShipmentRegistered", ESCROW, **_shipment()),
            {drought_job_id("dry"), drought_job_id("wet"), shipment_job_id(SHIP)},
        ),
        (
            event("OracleRouter", "Unsubscribed", subject=DRY, consumer=CONSUMER),
            {drought_job_id("wet"), shipment_job_id(SHIP)},
        ),
        (event("DroughtInsurancePool", "PolicyClosed", POOL, policyId=1), {shipment_job_id(SHIP)}),
        (event("ColdChainEscrow", "ShipmentReleased", ESCROW, shipmentId=SHIP, amount=5 * 10**6), set()),
    ]
    for ev, expected in steps:
        apply(ctx, ev)
        handle_event(handle, ev)
        assert _ids(handle) == expected, ev.name
        assert _stored_ids(ctx) == expected, ev.name  # in the database job store, not only in memory


def test_a_region_stays_scheduled_while_a_policy_or_subscription_remains(
    ctx: Context, running: Callable[..., SchedulerHandle]
) -> None:
    handle = running()
    assert handle.wait_until_leader(10)
    for ev in (
        event("OracleRouter", "Subscribed", subject=DRY, consumer=CONSUMER),
        event("DroughtInsurancePool", "PolicyCreated", POOL, **_policy(7, DRY)),
        event("OracleRouter", "Unsubscribed", subject=DRY, consumer=CONSUMER),
    ):
        apply(ctx, ev)
        handle_event(handle, ev)
    assert _ids(handle) == {drought_job_id("dry")}  # the open policy still needs reports
    closed = event("DroughtInsurancePool", "PolicyClosed", POOL, policyId=7)
    apply(ctx, closed)
    handle_event(handle, closed)
    assert _ids(handle) == set()


def test_subscription_to_an_unknown_subject_schedules_nothing_and_does_not_raise(
    ctx: Context, running: Callable[..., SchedulerHandle]
) -> None:
    handle = running()
    ev = event("OracleRouter", "Subscribed", subject="0x" + "ab" * 32, consumer=CONSUMER)
    apply(ctx, ev)
    handle_event(handle, ev)
    assert _ids(handle) == set()


def test_restart_reconciles_jobs_from_the_tables(
    ctx: Context, running: Callable[..., SchedulerHandle]
) -> None:
    first = running()
    assert first.wait_until_leader(10)
    for ev in (
        event("OracleRouter", "Subscribed", subject=WET, consumer=CONSUMER),
        event("OracleRouter", "Subscribed", subject=DRY, consumer=CONSUMER),
    ):
        apply(ctx, ev)
        handle_event(first, ev)
    first.stop()
    # While no scheduler runs, the listener (of another replica, or on catch-up) applies more events.
    for ev in (
        event("OracleRouter", "Unsubscribed", subject=WET, consumer=CONSUMER),
        event("ColdChainEscrow", "ShipmentRegistered", ESCROW, **_shipment()),
    ):
        apply(ctx, ev)
    assert _stored_ids(ctx) == {drought_job_id("dry"), drought_job_id("wet")}
    second = running()
    assert second.wait_until_leader(10)
    assert _ids(second) == {drought_job_id("dry"), shipment_job_id(SHIP)}
    assert _stored_ids(ctx) == {drought_job_id("dry"), shipment_job_id(SHIP)}


def test_jobs_carry_deliberate_misfire_and_coalesce_settings(
    ctx: Context, running: Callable[..., SchedulerHandle]
) -> None:
    handle = running(
        FAST.__class__(**{**FAST.__dict__, "shipment_every_s": 600.0, "drought_hour": 2, "drought_minute": 5})
    )
    assert handle.wait_until_leader(10)
    for ev in (
        event("OracleRouter", "Subscribed", subject=DRY, consumer=CONSUMER),
        event("ColdChainEscrow", "ShipmentRegistered", ESCROW, **_shipment()),
    ):
        apply(ctx, ev)
        handle_event(handle, ev)
    jobs = {j.id: j for j in handle.jobs()}
    drought = jobs[drought_job_id("dry")]
    assert (drought.misfire_grace_time, drought.coalesce, drought.max_instances) == (None, True, 1)
    assert "day='1'" in drought.trigger
    assert "hour='2'" in drought.trigger
    assert "minute='5'" in drought.trigger
    assert drought.next_run is not None
    assert drought.next_run.day == 1
    assert drought.next_run > dt.datetime.now(dt.UTC)
    shipment = jobs[shipment_job_id(SHIP)]
    assert (shipment.misfire_grace_time, shipment.coalesce, shipment.max_instances) == (300, True, 1)
    assert "0:10:00" in shipment.trigger
    local = {j.id: j for j in handle.jobs() if j.store == "local"}
    assert set(local) == {"reconcile", "wake"}
    assert all(j.coalesce and j.max_instances == 1 for j in local.values())


def test_a_standby_writes_jobs_but_runs_none(ctx: Context, running: Callable[..., SchedulerHandle]) -> None:
    leader = running()
    assert leader.wait_until_leader(10)
    standby = running()
    assert not standby.wait_until_leader(1.0)
    ev = event("OracleRouter", "Subscribed", subject=DRY, consumer=CONSUMER)
    apply(ctx, ev)
    handle_event(standby, ev)
    assert drought_job_id("dry") in _ids(leader)  # the shared store: the leader sees it
    assert {j.id for j in standby.jobs() if j.store == "local"} == set()
    leader.stop()
    assert standby.wait_until_leader(10)
    assert {j.id for j in standby.jobs() if j.store == "local"} == {"reconcile", "wake"}
