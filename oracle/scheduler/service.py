"""The scheduler of ``oracle run``: APScheduler 3 on a database job store, active on one replica only.

Every replica starts an APScheduler ``BackgroundScheduler`` *paused* on the shared job store (table
``options.jobs_table``, created by APScheduler itself on SQLite and PostgreSQL), plus a
:class:`~oracle.scheduler.leader.LeaderElection` thread. A paused scheduler runs nothing but can still
write jobs, so any replica may react to a subscription; only the leader resumes and runs them. On
election the leader reconciles the subject jobs with the database, adds its process-local jobs (outbox
pump, chain listener, STAC polling, periodic reconcile) and resumes; on losing the lock it pauses and drops
them. Jobs overdue at a fail-over run according to their misfire policy (:mod:`oracle.scheduler.options`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.interval import IntervalTrigger

from oracle.context import Context
from oracle.scheduler import runtime as runtimes
from oracle.scheduler.leader import LeaderElection, Lease, lease_for
from oracle.scheduler.options import SchedulerOptions, policies
from oracle.scheduler.subjects import STORE, SubjectJobs
from oracle.storage.db import make_engine

if TYPE_CHECKING:
    from oracle.chain.listener import DecodedEvent

log = logging.getLogger(__name__)

LOCAL = "local"
CONTEXT_KEY = "scheduler"


@dataclass(frozen=True)
class JobInfo:
    """A scheduled job as operators see it; ``next_run`` is UTC, ``None`` when paused."""

    id: str
    name: str
    store: str
    trigger: str
    next_run: dt.datetime | None
    misfire_grace_time: int | None
    coalesce: bool
    max_instances: int


def _job_info(job: Any, store: str) -> JobInfo:
    return JobInfo(
        id=job.id,
        name=job.name,
        store=store,
        trigger=str(job.trigger),
        next_run=getattr(job, "next_run_time", None),
        misfire_grace_time=job.misfire_grace_time,
        coalesce=job.coalesce,
        max_instances=job.max_instances,
    )


class SharedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The job store all replicas share, where a job already gone is not an error.

    APScheduler's main loop reads the due jobs, runs them, then removes each finished one-off job and
    stores the next run time of the others. Another replica (or this one's chain listener, when the
    subject settles) may remove the same job in between: APScheduler then raises ``JobLookupError``
    inside its main loop, which ends the loop's thread, and this replica runs nothing more while it still
    holds the leader lease (seen in a test run: a ``shipment-now`` job removed as its shipment settled).
    The end state wanted is the job's absence, so removing or updating a job that is already gone is
    logged and otherwise ignored."""

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            log.info("job %s was already removed (by another replica or a settled subject)", job_id)

    def update_job(self, job: Any) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            log.info("job %s was removed while it ran; not scheduling it again", job.id)


class ReplicaScheduler(BackgroundScheduler):  # type: ignore[misc]
    """APScheduler's background scheduler, whose loop thread survives a job vanishing mid-pass.

    Besides another replica (see :class:`SharedJobStore`), a shutdown racing the loop's pass sets the
    scheduler stopped while the pass still holds due jobs; APScheduler then looks for the finished one-off
    job among the jobs pending a start, finds nothing and raises ``JobLookupError`` in the loop thread
    (seen at the end of tests/scheduler/test_telemetry_triggers.py). Stopped, the loop simply ends."""

    def _process_jobs(self) -> float | None:
        try:
            wait: float | None = super()._process_jobs()
        except JobLookupError as e:
            if self.state == STATE_STOPPED:
                return None
            log.warning("scheduler pass ended early (%s); passing again", e)
            return 0.5
        return wait


def make_scheduler(ctx: Context, options: SchedulerOptions) -> Any:
    """An APScheduler instance on the shared job store (its own engine: the store disposes it on
    shutdown), not started."""
    store = SharedJobStore(
        engine=make_engine(ctx.settings.resolved_database_url), tablename=options.jobs_table
    )
    return ReplicaScheduler(
        jobstores={STORE: store, LOCAL: MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=options.worker_threads)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone=dt.UTC,
    )


def _start_paused(scheduler: Any, attempts: int = 5) -> None:
    """Start without processing. Two replicas starting at once may race to create the jobs table
    (``CREATE TABLE`` is not idempotent across sessions); the loser retries and finds it."""
    for attempt in range(attempts):
        try:
            scheduler.start(paused=True)
            return
        except Exception as e:
            if attempt == attempts - 1:
                raise
            log.info("scheduler job store not ready (%s); retrying", type(e).__name__)
            time.sleep(0.2 * (attempt + 1))


class SchedulerHandle:
    """A running scheduler replica. :meth:`stop` is idempotent; :attr:`is_leader` tells whether this
    replica runs the jobs right now."""

    def __init__(self, ctx: Context, options: SchedulerOptions, scheduler: Any, lease: Lease) -> None:
        self.ctx = ctx
        self.options = options
        self.scheduler = scheduler
        self.subjects = SubjectJobs(scheduler, options)
        self.runtime = runtimes.Runtime(ctx=ctx, options=options, scheduler=scheduler)
        self.policies = policies(options)
        self.local_jobs: dict[str, tuple[Callable[[], object], float]] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self.election = LeaderElection(
            lease,
            poll_s=options.leader_poll_s,
            on_elected=self._on_elected,
            on_deposed=self._on_deposed,
            name=f"scheduler-leader-{options.name}",
        )

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader.is_set()

    def wait_until_leader(self, timeout: float) -> bool:
        return self.election.is_leader.wait(timeout)

    def jobs(self) -> list[JobInfo]:
        """Every job in both stores, subject jobs first, each sorted by id."""
        out = [_job_info(j, STORE) for j in self.scheduler.get_jobs(STORE)]
        out += [_job_info(j, LOCAL) for j in self.scheduler.get_jobs(LOCAL)]
        return sorted(out, key=lambda j: (j.store != STORE, j.id))

    def reconcile(self) -> None:
        with self.ctx.sessions() as s:
            self.subjects.reconcile(s, catch_up=self.options.catch_up)

    def add_local_job(self, job_id: str, func: Callable[[], object], every_s: float) -> None:
        """A process-local interval job (kept in memory, run only while leader)."""
        self.local_jobs[job_id] = (func, every_s)
        if self.is_leader:
            self._add_local(job_id, func, every_s)

    def _add_local(self, job_id: str, func: Callable[[], object], every_s: float) -> None:
        policy = self.policies.get(job_id, self.policies["outbox"])
        self.scheduler.add_job(
            func,
            IntervalTrigger(seconds=every_s, timezone=dt.UTC),
            id=job_id,
            name=job_id,
            jobstore=LOCAL,
            replace_existing=True,
            # The election just reconciled; everything else starts at once.
            **({} if job_id == "reconcile" else {"next_run_time": dt.datetime.now(dt.UTC)}),
            **policy.kwargs(),
        )

    def _on_elected(self) -> None:
        with self._lock:
            runtimes.register(self.runtime)
            self.reconcile()
            for job_id, (func, every_s) in self.local_jobs.items():
                self._add_local(job_id, func, every_s)
            self.scheduler.resume()
        log.info("scheduler %s is the active leader with %d jobs", self.options.name, len(self.jobs()))

    def _on_deposed(self) -> None:
        with self._lock:
            with contextlib.suppress(Exception):
                self.scheduler.pause()
            with contextlib.suppress(Exception):
                self.scheduler.remove_all_jobs(LOCAL)
            runtimes.unregister(self.options.name, self.runtime)
        log.info("scheduler %s stood down", self.options.name)

    def _shutdown_scheduler(self) -> None:
        with contextlib.suppress(Exception):
            self.scheduler.shutdown(wait=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stand down (the lock is released at once, so a standby takes over on its next poll) and
        shut the scheduler down, waiting up to ``timeout`` for the election thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.election.stop(timeout)
        # Wait (bounded) for running jobs: the caller closes the database and the chain next, and a job
        # still running then would fail against them mid-way.
        closer = threading.Thread(target=self._shutdown_scheduler, name="scheduler-shutdown", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            log.warning(
                "scheduler %s: jobs still running after %.0f s at shutdown", self.options.name, timeout
            )
        if self.ctx.extras.get(CONTEXT_KEY) is self:
            del self.ctx.extras[CONTEXT_KEY]


def start_scheduler(ctx: Context, options: SchedulerOptions | None = None) -> SchedulerHandle:
    """Start this replica's scheduler: paused on the shared job store, electing a leader in the
    background. Puts the handle in ``ctx.extras["scheduler"]`` so the ingest hooks find it.

    The leader runs, besides the subject jobs: the outbox pump and chain listener when the context has
    a chain (``ctx.chain_rpc_url`` and ``ctx.extras["deployment"]``; a poster already built by the
    service in ``ctx.extras["poster"]`` is reused), STAC polling when catalogs are configured
    (``options.stac_catalogs`` or ``ctx.extras["stac_catalogs"]``) and a periodic reconcile.
    """
    from oracle.scheduler.stac import catalogs_of, poll_stac

    options = options or _options_from(ctx)
    scheduler = make_scheduler(ctx, options)
    _start_paused(scheduler)
    lease = lease_for(ctx.settings.resolved_database_url, name=options.name, data_dir=ctx.settings.data_dir)
    handle = SchedulerHandle(ctx, options, scheduler, lease)
    handle.add_local_job("reconcile", handle.reconcile, options.reconcile_every_s)
    handle.add_local_job("wake", _wake, options.store_poll_s)
    if catalogs_of(ctx, options):
        handle.add_local_job("stac", lambda: poll_stac(ctx, options=options), options.stac_every_s)
    if options.chain_jobs:
        _add_chain_jobs(handle)
    ctx.extras[CONTEXT_KEY] = handle
    handle.election.start()
    return handle


def _options_from(ctx: Context) -> SchedulerOptions:
    given = ctx.extras.get("scheduler_options")
    return given if isinstance(given, SchedulerOptions) else SchedulerOptions()


def _wake() -> None:
    """No work: its tick makes the leader look at the shared job store for jobs other processes
    added (APScheduler only re-reads a store when it wakes)."""


def _add_chain_jobs(handle: SchedulerHandle) -> None:
    from oracle.chain.deploy import Deployment

    ctx = handle.ctx
    deployment = ctx.extras.get("deployment")
    if not ctx.chain_rpc_url or not isinstance(deployment, Deployment):
        log.info("no chain configured: the scheduler runs without the outbox pump and chain listener")
        return
    from oracle.chain.client import connect
    from oracle.chain.listener import ChainListener
    from oracle.chain.outbox import OutboxPoster

    poster = ctx.extras.get("poster")
    if not isinstance(poster, OutboxPoster):
        from oracle.devstack.localchain import load_or_create_transmitter
        from oracle.posting import make_poster

        poster = make_poster(ctx, load_or_create_transmitter(ctx.settings))
        ctx.extras["poster"] = poster
    listener = ChainListener(
        ctx.sessions,
        connect(ctx.chain_rpc_url),
        deployment,
        confirmations=ctx.settings.chain_confirmations,
        on_event=lambda event: handle_event(handle, event),
    )
    handle.add_local_job("outbox", poster.pump, handle.options.outbox_every_s)
    handle.add_local_job("listener", listener.poll, handle.options.listener_every_s)
    if "DroughtInsurancePool" in deployment.addresses:
        from oracle.chain.keeper import SettlementKeeper

        w3 = connect(ctx.chain_rpc_url)
        keeper = SettlementKeeper(
            ctx.sessions,
            w3,
            deployment.contract(w3, "DroughtInsurancePool"),
            from_block=deployment.block,
            escrow=deployment.contract(w3, "ColdChainEscrow")
            if "ColdChainEscrow" in deployment.addresses
            else None,
            rank=_network_rank(ctx),
        )
        handle.add_local_job("keeper", keeper.tick, handle.options.keeper_every_s)


def _network_rank(ctx: Context) -> int:
    """This node's place in its network's member list (0 outside a network): the keeper's turn."""
    from oracle.network.rounds import NodeRuntime

    runtime = ctx.extras.get("network_node")
    if not isinstance(runtime, NodeRuntime):
        return 0
    return list(runtime.network.ids).index(runtime.identity.node_id)


def handle_event(scheduler_handle: SchedulerHandle, event: DecodedEvent) -> None:
    """The chain listener's ``on_event`` callback: create or remove the jobs of the event's subject.

    Called after the listener committed the event's projection, so the tables already say what the
    subject needs. Never raises: a failure is logged and the next reconcile repairs it.
    """
    try:
        with scheduler_handle.ctx.sessions() as s:
            scheduler_handle.subjects.on_event(s, event)
    except Exception:
        log.exception(
            "scheduler could not apply event %s.%s tx=%s; the next reconcile will",
            event.contract,
            event.name,
            event.tx_hash,
        )
