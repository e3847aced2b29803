"""Job functions stored in the database job store, by reference (``oracle.scheduler.jobs:<name>``).

Each takes the scheduler's name first and finds the live context through :mod:`oracle.scheduler.runtime`.
A failing evaluation is logged with its subject and period and does not stop the scheduler; the next
trigger (or a late-data re-evaluation) tries again.
"""

from __future__ import annotations

import datetime as dt
import logging

from oracle.errors import OracleError
from oracle.scheduler import evaluations
from oracle.scheduler.periods import last_closed_period
from oracle.scheduler.runtime import lookup

log = logging.getLogger(__name__)


def drought_job(runtime_name: str, region_id: str, period: str | None = None) -> str:
    """Evaluate ``region_id`` for ``period`` (default: the month just closed, UTC) and post it when
    complete. Returns the decision status, or ``"failed"`` (logged)."""
    rt = lookup(runtime_name)
    period = period or last_closed_period(dt.datetime.now(dt.UTC))
    try:
        outcome = evaluations.run_drought(rt.ctx, region_id=region_id, period=period)
    except OracleError as e:
        log.error("drought job failed region=%s period=%s: %s", region_id, period, e)
        return "failed"
    return outcome.status


def shipment_job(runtime_name: str, subject: str) -> str:
    """Evaluate the shipment with on-chain subject ``subject``; returns its status or ``"skipped"``."""
    rt = lookup(runtime_name)
    try:
        outcome = evaluations.run_shipment(rt.ctx, subject=subject)
    except OracleError as e:
        log.error("shipment job failed subject=%s: %s", subject, e)
        return "failed"
    return "skipped" if outcome is None else str(getattr(outcome, "status", "done"))
