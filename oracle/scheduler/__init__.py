"""The scheduler: evaluation jobs for every subscribed subject, run by one leader among the replicas.

Public API (wired into ``oracle run``)::

    handle = start_scheduler(ctx)            # election in the background; jobs run when leader
    listener.on_event = lambda ev: handle_event(handle, ev)   # done by start_scheduler itself
    on_new_observation(ctx, observation_id)  # ingest hook: late data → debounced re-evaluation
    on_new_telemetry(ctx, shipment_id)       # ingest hook: new readings → debounced shipment check
    poll_stac(ctx)                           # one STAC pass (also a leader job when configured)
    handle.stop()
"""

from oracle.scheduler.hooks import on_new_observation, on_new_telemetry
from oracle.scheduler.options import JobPolicy, SchedulerOptions, StacCatalog, policies
from oracle.scheduler.service import JobInfo, SchedulerHandle, handle_event, start_scheduler
from oracle.scheduler.stac import StacPoll, poll_stac

__all__ = [
    "JobInfo",
    "JobPolicy",
    "SchedulerHandle",
    "SchedulerOptions",
    "StacCatalog",
    "StacPoll",
    "handle_event",
    "on_new_observation",
    "on_new_telemetry",
    "policies",
    "poll_stac",
    "start_scheduler",
]
