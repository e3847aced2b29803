"""Two replicas share one job store: a due one-off job that the other replica removes while this one runs
it must not end this replica's scheduler loop (it did: APScheduler raised JobLookupError in its main
loop thread when it went to remove the finished job, seen in a full test run)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from oracle.scheduler.service import SharedJobStore

RAN: dict[str, threading.Event] = {}


def mark(name: str) -> None:
    RAN.setdefault(name, threading.Event()).set()


def _other_replica(url: str) -> BackgroundScheduler:
    other = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=dt.UTC)
    other.start(paused=True)
    return other


@pytest.mark.parametrize("trigger", ["date", "interval"])
def test_a_job_removed_by_another_replica_while_due_leaves_the_loop_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, trigger: str
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = SharedJobStore(url=url)
    other = _other_replica(url)
    removed_between: list[str] = []
    fetch = store.get_due_jobs

    def due_then_removed_elsewhere(now: Any) -> list[Any]:
        jobs: list[Any] = fetch(now)
        for job in jobs:
            if job.id == "gone":
                other.remove_job("gone")  # the other replica, between this one's read and its removal
                removed_between.append(job.id)
        return jobs

    store.get_due_jobs = due_then_removed_elsewhere  # type: ignore[method-assign]
    me = BackgroundScheduler(jobstores={"default": store}, timezone=dt.UTC)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=300)
    RAN.clear()
    caplog.set_level(logging.INFO, logger="oracle.scheduler.service")
    try:
        me.start()
        gone_trigger = (
            DateTrigger(run_date=soon, timezone=dt.UTC)
            if trigger == "date"
            else IntervalTrigger(seconds=3600, start_date=soon - dt.timedelta(seconds=3600), timezone=dt.UTC)
        )
        me.add_job(mark, gone_trigger, args=["gone"], id="gone")
        assert RAN.setdefault("gone", threading.Event()).wait(15), "the due job never ran"
        # The removal really happened between the read and APScheduler's own remove/update.
        assert removed_between == ["gone"]
        # A later job still runs: the loop thread is alive.
        me.add_job(
            mark, DateTrigger(run_date=dt.datetime.now(dt.UTC), timezone=dt.UTC), args=["later"], id="later"
        )
        assert RAN.setdefault("later", threading.Event()).wait(15), "the scheduler loop stopped"
        assert me._thread is not None
        assert me._thread.is_alive()
        assert me.get_job("gone") is None
        assert other.get_job("gone") is None
        said = " ".join(r.getMessage() for r in caplog.records)
        assert "job gone was already removed" in said or "job gone was removed while it ran" in said, said
    finally:
        me.shutdown(wait=False)
        other.shutdown(wait=False)
