"""What the scheduler runs and how often, with the misfire rules chosen per job kind.

Every job runs with ``max_instances=1`` (an evaluation never overlaps itself) and ``coalesce=True`` (a
backlog of missed runs, e.g. after a fail-over, runs once, not once per missed tick). The grace time for
a late run depends on what the job is for:

==================  ==============================  ==================================================
job kind            trigger                         ``misfire_grace_time`` and why
==================  ==============================  ==================================================
drought (monthly)   cron: day 1, ``drought_hour``    ``None`` (no limit): a month-end evaluation is
                    UTC, for the month just closed  owed however late the leader comes back
drought (late data) one-off, debounced               ``None``: the re-evaluation must happen
shipment            every ``shipment_every_s``       half the interval: a late tick is superseded by
                                                    the next one anyway
shipment (telemetry) one-off, debounced              ``None``
STAC polling        every ``stac_every_s``           half the interval
outbox pump         every ``outbox_every_s``         30 s: coalesced, a stale tick is simply skipped
chain listener      every ``listener_every_s``       30 s: same
settlement keeper   every ``keeper_every_s``         30 s: same
reconcile           every ``reconcile_every_s``      half the interval
==================  ==============================  ==================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class StacCatalog:
    """One STAC source to poll: its assets become raster observations of ``variable``.

    ``source`` is a local catalog/collection/ItemCollection path or an ``http(s)://`` STAC URL;
    ``lookback_days`` bounds the item time range searched on each poll (UTC, inclusive).
    """

    source: str
    variable: str
    cadence: Literal["monthly", "daily"] = "monthly"
    collections: Sequence[str] | None = None
    bbox: Sequence[float] | None = None
    asset_keys: Sequence[str] | None = None
    units: str | None = None
    lookback_days: int = 62


#: What the README promises: a standby becomes leader within this many seconds of the leader's death.
FAILOVER_BOUND_S = 5.0


@dataclass(frozen=True)
class SchedulerOptions:
    """Knobs of :func:`oracle.scheduler.start_scheduler`; all times in seconds unless named otherwise.

    ``name`` keys the leader lock and the in-process runtime registry: replicas that should share one
    leader use the same name (the default). ``leader_poll_s`` is how often a standby tries the lock and
    the leader re-checks it holds it; fail-over takes at most about one poll interval. The default of
    1 s keeps fail-over within :data:`FAILOVER_BOUND_S` (the leader's lock goes when its process dies),
    for one cheap lock attempt per second per standby.
    """

    name: str = "oracle"
    leader_poll_s: float = 1.0
    drought_hour: int = 1
    drought_minute: int = 0
    late_data_debounce_s: float = 120.0
    telemetry_debounce_s: float = 30.0
    shipment_every_s: float = 900.0
    stac_every_s: float = 3600.0
    outbox_every_s: float = 1.0
    listener_every_s: float = 2.0
    #: The settlement keeper: pays reports whose liveness window is over (oracle.chain.keeper).
    keeper_every_s: float = 5.0
    reconcile_every_s: float = 600.0
    #: How often the leader looks at the shared job store for jobs written by other processes
    #: (late-data jobs and breach evaluations from a standalone ingest process, subscriptions seen by a
    #: standby). It bounds how late a breach seen by a standalone worker is evaluated; one cheap query.
    store_poll_s: float = 0.5
    worker_threads: int = 4
    jobs_table: str = "apscheduler_jobs"
    stac_catalogs: tuple[StacCatalog, ...] = field(default_factory=tuple)
    #: Catch up on start: evaluate the month just closed for subscribed regions that have no decision
    #: for it yet, when the monthly run's time has already passed.
    catch_up: bool = True
    #: Run the outbox pump and chain listener as scheduler jobs (only when a chain is configured).
    chain_jobs: bool = True


@dataclass(frozen=True)
class JobPolicy:
    """The APScheduler options one job kind is added with."""

    misfire_grace_time: int | None
    coalesce: bool = True
    max_instances: int = 1

    def kwargs(self) -> dict[str, object]:
        return {
            "misfire_grace_time": self.misfire_grace_time,
            "coalesce": self.coalesce,
            "max_instances": self.max_instances,
        }


def policies(options: SchedulerOptions) -> dict[str, JobPolicy]:
    """The misfire/coalesce policy per job kind (see the module docstring for the reasons)."""

    def half(seconds: float) -> int:
        return max(1, int(seconds / 2))

    return {
        "drought": JobPolicy(misfire_grace_time=None),
        "drought-late": JobPolicy(misfire_grace_time=None),
        "shipment": JobPolicy(misfire_grace_time=half(options.shipment_every_s)),
        "shipment-now": JobPolicy(misfire_grace_time=None),
        "stac": JobPolicy(misfire_grace_time=half(options.stac_every_s)),
        "outbox": JobPolicy(misfire_grace_time=30),
        "listener": JobPolicy(misfire_grace_time=30),
        "keeper": JobPolicy(misfire_grace_time=30),
        "reconcile": JobPolicy(misfire_grace_time=half(options.reconcile_every_s)),
        "wake": JobPolicy(misfire_grace_time=half(options.store_poll_s)),
    }
