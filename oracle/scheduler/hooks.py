"""Hooks the ingest side calls when new data lands, so affected subjects are re-evaluated.

Both are cheap and debounced: they (re)schedule a one-off job a little later, keyed by subject and
period, so a burst of files or telemetry batches costs one evaluation. They work in any process: with a
running scheduler in ``ctx.extras["scheduler"]`` they use it, otherwise they write the one-off job
straight into the shared job store and the leader picks it up on its next store poll.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

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


@contextlib.contextmanager
def _subject_jobs(ctx: Context) -> Iterator[SubjectJobs]:
    from oracle.scheduler.service import CONTEXT_KEY, SchedulerHandle, make_scheduler

    handle = ctx.extras.get(CONTEXT_KEY)
    if isinstance(handle, SchedulerHandle):
        yield handle.subjects
        return
    given = ctx.extras.get("scheduler_options")
    options = given if isinstance(given, SchedulerOptions) else SchedulerOptions()
    scheduler = make_scheduler(ctx, options)
    scheduler.start(paused=True)
    try:
        yield SubjectJobs(scheduler, options)
    finally:
        scheduler.shutdown(wait=False)


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


def on_new_telemetry(ctx: Context, shipment_id: str) -> bool:
    """Schedule a debounced evaluation of the shipment named ``shipment_id`` (its telemetry id) when it
    is open on-chain; returns whether one was scheduled."""
    subject = "0x" + subject_id("shipment", shipment_id).hex()
    with ctx.sessions() as s:
        if subject not in desired_jobs(s).shipments:
            return False
    with _subject_jobs(ctx) as jobs:
        jobs.shipment_soon(subject, delay_s=jobs.options.telemetry_debounce_s)
    return True
