"""Which jobs should exist, derived from what contracts asked for on-chain.

A region gets a monthly drought job while it has an active router subscription or an open policy
(``Subscribed`` / ``PolicyCreated``); it loses it when neither remains (``Unsubscribed`` /
``PolicyClosed``). An open shipment (``ShipmentRegistered``) gets a periodic evaluation job until it is
settled (``ShipmentVoided`` / ``ShipmentReleased`` / ``ShipmentReclaimed``).

The tables the chain listener projects are the truth: :func:`handle_event` re-derives the jobs of the
event's subject from them, and :func:`reconcile` re-derives all of them (at election and periodically),
so a restart, a missed callback or a standby that saw the event loses nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from oracle.scheduler.options import SchedulerOptions, policies
from oracle.scheduler.periods import last_closed_period
from oracle.storage.decision_tables import Decision, Region
from oracle.storage.tables import Policy, Shipment, Subscription

if TYPE_CHECKING:
    from oracle.chain.listener import DecodedEvent

log = logging.getLogger(__name__)

STORE = "default"
DROUGHT_FUNC = "oracle.scheduler.jobs:drought_job"
SHIPMENT_FUNC = "oracle.scheduler.jobs:shipment_job"
OPEN_SHIPMENT = "open"
SETTLED_EVENTS = ("ShipmentVoided", "ShipmentReleased", "ShipmentReclaimed")


def drought_job_id(region_id: str) -> str:
    return f"drought:{region_id}"


def late_job_id(region_id: str, period: str) -> str:
    return f"drought-late:{region_id}:{period}"


def shipment_job_id(subject: str) -> str:
    return f"shipment:{subject.lower()}"


def shipment_now_job_id(subject: str) -> str:
    return f"shipment-now:{subject.lower()}"


@dataclass(frozen=True)
class Desired:
    """The subject jobs the database asks for: region ids and open shipment subjects (0x hex)."""

    regions: frozenset[str]
    shipments: frozenset[str]


def desired_jobs(s: Session, *, region_subjects: set[str] | None = None) -> Desired:
    """Regions with an active subscription or an open policy; open shipments. ``region_subjects``
    restricts the region query to those subjects (0x hex)."""
    subscribed = select(Subscription.subject).where(Subscription.active.is_(True))
    insured = select(Policy.region_subject).where(Policy.status != "closed")
    q = select(Region.region_id).where(or_(Region.subject.in_(subscribed), Region.subject.in_(insured)))
    if region_subjects is not None:
        q = q.where(Region.subject.in_(sorted(region_subjects)))
    regions = frozenset(s.scalars(q).all())
    shipments = frozenset(
        x.lower() for x in s.scalars(select(Shipment.subject).where(Shipment.status == OPEN_SHIPMENT)).all()
    )
    return Desired(regions=regions, shipments=shipments)


class SubjectJobs:
    """Adds and removes subject jobs on an APScheduler instance (running or paused: both write the
    shared job store)."""

    def __init__(self, scheduler: Any, options: SchedulerOptions) -> None:
        self.scheduler = scheduler
        self.options = options
        self.policies = policies(options)

    # -- single jobs ------------------------------------------------------------------------------

    def ensure_drought(self, region_id: str) -> bool:
        """Add the monthly drought job unless it exists (an existing one keeps its pending run time)."""
        job_id = drought_job_id(region_id)
        if self.scheduler.get_job(job_id, STORE) is not None:
            return False
        self.scheduler.add_job(
            DROUGHT_FUNC,
            CronTrigger(
                day=1, hour=self.options.drought_hour, minute=self.options.drought_minute, timezone=dt.UTC
            ),
            args=[self.options.name, region_id],
            id=job_id,
            name=f"drought evaluation of region {region_id} for the month just closed",
            jobstore=STORE,
            replace_existing=True,
            **self.policies["drought"].kwargs(),
        )
        log.info("scheduled monthly drought evaluation region=%s", region_id)
        return True

    def ensure_shipment(self, subject: str) -> bool:
        job_id = shipment_job_id(subject)
        if self.scheduler.get_job(job_id, STORE) is not None:
            return False
        self.scheduler.add_job(
            SHIPMENT_FUNC,
            IntervalTrigger(seconds=self.options.shipment_every_s, timezone=dt.UTC),
            args=[self.options.name, subject.lower()],
            id=job_id,
            name=f"cold-chain evaluation of shipment {subject.lower()}",
            jobstore=STORE,
            replace_existing=True,
            **self.policies["shipment"].kwargs(),
        )
        log.info("scheduled shipment evaluation subject=%s", subject)
        return True

    def evaluate_soon(self, region_id: str, period: str, *, delay_s: float) -> None:
        """A one-off drought evaluation after ``delay_s``; called again before it runs, it moves later
        (debounce: a burst of late files costs one evaluation)."""
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_s)
        self.scheduler.add_job(
            DROUGHT_FUNC,
            DateTrigger(run_date=when, timezone=dt.UTC),
            args=[self.options.name, region_id, period],
            id=late_job_id(region_id, period),
            name=f"drought re-evaluation of region {region_id} for {period}",
            jobstore=STORE,
            replace_existing=True,
            **self.policies["drought-late"].kwargs(),
        )

    def shipment_soon(self, subject: str, *, delay_s: float) -> None:
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_s)
        self.scheduler.add_job(
            SHIPMENT_FUNC,
            DateTrigger(run_date=when, timezone=dt.UTC),
            args=[self.options.name, subject.lower()],
            id=shipment_now_job_id(subject),
            name=f"cold-chain evaluation of shipment {subject.lower()} after new telemetry",
            jobstore=STORE,
            replace_existing=True,
            **self.policies["shipment-now"].kwargs(),
        )

    def remove(self, job_id: str) -> bool:
        if self.scheduler.get_job(job_id, STORE) is None:
            return False
        try:
            self.scheduler.remove_job(job_id, STORE)
        except LookupError:  # another replica removed it first
            return False
        log.info("removed job %s", job_id)
        return True

    def remove_prefix(self, prefix: str) -> int:
        return sum(self.remove(job.id) for job in self.scheduler.get_jobs(STORE) if job.id.startswith(prefix))

    # -- derived from the database ------------------------------------------------------------------

    def sync_regions(self, s: Session, region_subjects: set[str]) -> None:
        """Make the drought jobs of these region subjects match the database."""
        want = desired_jobs(s, region_subjects=region_subjects).regions
        rows = s.scalars(select(Region).where(Region.subject.in_(sorted(region_subjects)))).all()
        for region in rows:
            if region.region_id in want:
                self.ensure_drought(region.region_id)
            else:
                self.remove(drought_job_id(region.region_id))
                self.remove_prefix(f"drought-late:{region.region_id}:")

    def sync_shipment(self, s: Session, subject: str) -> None:
        shipment = s.get(Shipment, subject)
        if shipment is None:
            # Maybe a lower/upper-case mismatch; the listener stores what the ABI decoder gives.
            shipment = s.scalar(select(Shipment).where(Shipment.subject.ilike(subject)))
        if shipment is not None and shipment.status == OPEN_SHIPMENT:
            self.ensure_shipment(subject)
        else:
            self.remove(shipment_job_id(subject))
            self.remove(shipment_now_job_id(subject))

    def reconcile(self, s: Session, *, now: dt.datetime | None = None, catch_up: bool = True) -> Desired:
        """Add every missing subject job and remove every stale one; optionally catch up on a missed
        month-end run (see :attr:`SchedulerOptions.catch_up`)."""
        want = desired_jobs(s)
        have = {job.id for job in self.scheduler.get_jobs(STORE)}
        for region_id in sorted(want.regions):
            self.ensure_drought(region_id)
        for subject in sorted(want.shipments):
            self.ensure_shipment(subject)
        for job_id in sorted(have):
            kind, _, rest = job_id.partition(":")
            region = rest.rsplit(":", 1)[0] if kind == "drought-late" else rest
            stale = (kind in ("drought", "drought-late") and region not in want.regions) or (
                kind in ("shipment", "shipment-now") and rest not in want.shipments
            )
            if stale:
                self.remove(job_id)
        if catch_up:
            self._catch_up(s, want.regions, now or dt.datetime.now(dt.UTC))
        return want

    def _catch_up(self, s: Session, regions: frozenset[str], now: dt.datetime) -> None:
        this_month_run = now.replace(
            day=1, hour=self.options.drought_hour, minute=self.options.drought_minute, second=0, microsecond=0
        )
        if now < this_month_run:
            return  # the monthly run for the month just closed has not been due yet
        period = last_closed_period(now)
        decided = set(
            s.scalars(
                select(Decision.subject_name).where(Decision.kind == "drought", Decision.period == period)
            ).all()
        )
        for region_id in sorted(regions - decided):
            if self.scheduler.get_job(late_job_id(region_id, period), STORE) is None:
                log.info(
                    "catching up on the missed month-end evaluation region=%s period=%s", region_id, period
                )
                self.evaluate_soon(region_id, period, delay_s=0)

    def on_event(self, s: Session, event: DecodedEvent) -> None:
        a = event.args
        key = (event.contract, event.name)
        if key in (("OracleRouter", "Subscribed"), ("OracleRouter", "Unsubscribed")):
            subject = str(a["subject"])
            self.sync_regions(s, {subject})
            if s.get(Shipment, subject) is not None:
                self.sync_shipment(s, subject)
        elif key == ("DroughtInsurancePool", "PolicyCreated"):
            self.sync_regions(s, {str(a["region"])})
        elif key == ("DroughtInsurancePool", "PolicyClosed"):
            policy = s.get(Policy, (event.address, int(a["policyId"])))
            if policy is not None:
                self.sync_regions(s, {policy.region_subject})
        elif event.contract == "ColdChainEscrow" and (
            event.name == "ShipmentRegistered" or event.name in SETTLED_EVENTS
        ):
            self.sync_shipment(s, str(a["shipmentId"]))
