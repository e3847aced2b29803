"""Hooks the ingest side calls when new data lands, so affected subjects are re-evaluated.

They (re)schedule a one-off job keyed by subject and period, so a burst of files or telemetry batches
costs one evaluation: a little later (debounced) for data that cannot move money at once, immediately
for telemetry that may be a breach. They work in any process: with a
running scheduler in ``ctx.extras["scheduler"]`` they use it, otherwise they write the one-off job
straight into the shared job store and the leader picks it up on its next store poll.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest.telemetry.pipeline import BatchOutcome, IncomingMessage
from models.coldchain.profiles import ProductProfile
from oracle.context import Context
from oracle.reports import subject_id
from oracle.scheduler.options import SchedulerOptions
from oracle.scheduler.periods import month_index
from oracle.scheduler.subjects import SubjectJobs, desired_jobs
from oracle.storage.decision_tables import Decision
from oracle.storage.tables import Observation

log = logging.getLogger(__name__)

#: SPI needs this many months of precipitation: a late monthly total can change the decision of any
#: period up to this many months later.
PRECIP_REACH_MONTHS = 36


STORE_WRITER_KEY = "scheduler_store_writer"


@contextlib.contextmanager
def _subject_jobs(ctx: Context) -> Iterator[SubjectJobs]:
    from oracle.scheduler.service import CONTEXT_KEY, SchedulerHandle, make_scheduler

    handle = ctx.extras.get(CONTEXT_KEY)
    if isinstance(handle, SchedulerHandle):
        yield handle.subjects
        return
    # No scheduler here (a standalone ingest process): write to the shared job store through a paused
    # scheduler, built once per process; the leader picks the jobs up on its next store poll.
    writer = ctx.extras.get(STORE_WRITER_KEY)
    if not isinstance(writer, SubjectJobs):
        given = ctx.extras.get("scheduler_options")
        options = given if isinstance(given, SchedulerOptions) else SchedulerOptions()
        scheduler = make_scheduler(ctx, options)
        scheduler.start(paused=True)
        writer = ctx.extras[STORE_WRITER_KEY] = SubjectJobs(scheduler, options)
    yield writer


def affected_periods(s: Session, observation: Observation) -> list[tuple[str, str]]:
    """(region id, period) pairs already decided whose decision ``observation`` may change, limited to
    regions that still have a drought job. Telemetry and unknown kinds affect no region."""
    regions = desired_jobs(s).regions
    if not regions:
        return []
    decided = s.execute(
        select(Decision.subject_name, Decision.period)
        .where(Decision.kind == "drought", Decision.subject_name.in_(sorted(regions)))
        .distinct()
    ).all()
    meta = observation.meta or {}
    if observation.kind == "weather":
        stations = set(meta.get("stations", []))
        return sorted({(r, p) for r, p in decided if r in stations})
    if observation.kind != "raster":
        return []
    date = str(meta.get("date", ""))
    if len(date) < 7:
        return []
    first = month_index(date[:7])
    out: set[tuple[str, str]] = set()
    for region_id, period in decided:
        index = month_index(period)
        if observation.variable == "precip":
            reach = 0 if meta.get("cadence") == "daily" else PRECIP_REACH_MONTHS - 1
            if first <= index <= first + reach:
                out.add((region_id, period))
        elif index >= first and index % 12 == first % 12:
            out.add((region_id, period))  # a calendar month's history feeds later years' same month
    return sorted(out)


def on_new_observation(ctx: Context, observation_id: int) -> list[tuple[str, str]]:
    """Schedule debounced re-evaluations of the region-periods a newly accepted observation affects;
    returns them. An unknown id affects nothing (logged)."""
    with ctx.sessions() as s:
        observation = s.get(Observation, observation_id)
        if observation is None:
            log.warning("on_new_observation: no observation %s", observation_id)
            return []
        pairs = affected_periods(s, observation)
    if not pairs:
        return []
    with _subject_jobs(ctx) as jobs:
        for region_id, period in pairs:
            jobs.evaluate_soon(region_id, period, delay_s=jobs.options.late_data_debounce_s)
    log.info("late data observation=%s re-evaluates %d region-periods", observation_id, len(pairs))
    return pairs


def on_new_telemetry(ctx: Context, shipment_id: str, *, urgent: bool = False) -> bool:
    """Schedule an evaluation of the shipment named ``shipment_id`` (its telemetry id) when it is open
    on-chain: at once when ``urgent`` (the readings may be a breach), otherwise debounced, since then
    only the slow stability budget can move; returns whether one was scheduled."""
    subject = "0x" + subject_id("shipment", shipment_id).hex()
    with ctx.sessions() as s:
        if subject not in desired_jobs(s).shipments:
            return False
    with _subject_jobs(ctx) as jobs:
        jobs.shipment_soon(subject, delay_s=0.0 if urgent else jobs.options.telemetry_debounce_s)
    return True


@functools.lru_cache(maxsize=64)
def _shipped_profile(name: str) -> ProductProfile:
    """A shipped profile, read from its file once per process (this runs after every telemetry batch)."""
    from models.coldchain.profiles import load_profile

    return load_profile(name)


def notify_committed_telemetry(
    ctx: Context, messages: Sequence[IncomingMessage], outcome: BatchOutcome
) -> dict[str, bool]:
    """After a committed batch: schedule an evaluation of every shipment it touched, at once for a
    shipment with a reading that :func:`~models.coldchain.rules.may_breach_now` under its on-chain
    profile. The service's ingest worker and the standalone ``oracle ingest telemetry`` both call this.
    Returns {shipment id: urgent} for the shipments scheduled."""
    from ingest.telemetry.envelope import EnvelopeError, parse_envelope
    from models.coldchain.rules import may_breach_now
    from oracle.decisions.coldchain import profile_name
    from oracle.storage.tables import DeviceBinding, Shipment

    temps: dict[str, list[float]] = {}
    for message, result in zip(messages, outcome.messages, strict=True):
        if not result.accepted:
            continue
        try:
            items = parse_envelope(message.payload).items
        except EnvelopeError:
            continue
        temps.setdefault(message.device_id, []).extend(
            float(i["temp_c"])
            for i in items
            if isinstance(i, dict) and isinstance(i.get("temp_c"), int | float)
        )
    if not temps:
        return {}
    with ctx.sessions() as s:
        bindings = s.execute(
            select(DeviceBinding.device_id, DeviceBinding.shipment_id).where(
                DeviceBinding.device_id.in_(temps)
            )
        ).all()
        by_shipment: dict[str, list[float]] = {}
        for device, shipment in bindings:
            by_shipment.setdefault(shipment, []).extend(temps[device])
        profiles = {
            shipment: s.scalar(
                select(Shipment.profile).where(
                    Shipment.subject == "0x" + subject_id("shipment", shipment).hex()
                )
            )
            for shipment in by_shipment
        }
    scheduled: dict[str, bool] = {}
    for shipment in sorted(by_shipment):
        urgent = False
        try:
            if profiles[shipment]:
                profile = _shipped_profile(profile_name(bytes.fromhex(str(profiles[shipment])[2:])))
                urgent = may_breach_now(profile, by_shipment[shipment])
        except Exception:  # an unknown profile: the evaluation itself records why; schedule it at once
            log.warning("shipment %s: profile unreadable, evaluating at once", shipment, exc_info=True)
            urgent = True
        try:
            if on_new_telemetry(ctx, shipment, urgent=urgent):
                scheduled[shipment] = urgent
        except Exception:
            log.exception("could not schedule the evaluation of shipment %s", shipment)
    return scheduled
