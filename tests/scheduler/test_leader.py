"""One active scheduler across replicas: PostgreSQL advisory lock and SQLite flock, with fail-over
after ``kill -9`` between real processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import psycopg
import pytest

from oracle.context import Context
from oracle.scheduler.leader import FileLease, LeaderElection, PostgresLease, lease_for, lock_key
from oracle.scheduler.options import FAILOVER_BOUND_S, SchedulerOptions
from oracle.storage import migrate

ROOT = Path(__file__).resolve().parents[2]
POLL_S = SchedulerOptions().leader_poll_s  # the shipped default: what a deployment gets


class Contender:
    def __init__(self, data_dir: Path, url: str, log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.scheduler.contender", str(data_dir), url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, out: IO[str]) -> None:
        for line in out:
            self.lines.put(line.strip())

    def wait_for(self, word: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line.startswith(word):
                return line
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def contenders(tmp_path: Path) -> Iterator[Callable[[str], Contender]]:
    started: list[Contender] = []

    def start(url: str) -> Contender:
        log = (tmp_path / f"contender-{len(started)}.log").open("wb")
        c = Contender(tmp_path / "data", url, log)
        log.close()
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def _first_leader(pair: list[Contender], timeout: float) -> tuple[Contender, Contender]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, c in enumerate(pair):
            if c.wait_for("leader", 0.05):
                return c, pair[1 - i]
    raise AssertionError("nobody became leader")


def _failover(contenders: Callable[[str], Contender], url: str) -> float:
    migrate.upgrade(url)  # deployed replicas find the schema migrated; two racing upgrades are not a test
    # Both start at once (start-up is mostly imports); whichever takes the lock first leads.
    pair = [contenders(url), contenders(url)]
    for c in pair:
        assert c.wait_for("started", 90), "a contender did not start"
    leader, standby = _first_leader(pair, 30)
    # The standby polls every POLL_S and must not take over while the leader lives.
    assert standby.wait_for("leader", 4 * POLL_S) is None
    killed_at = time.time()
    leader.kill()
    line = standby.wait_for("leader", 60)
    assert line is not None, "the standby did not take over within 60 s"
    return float(line.split()[2]) - killed_at


@pytest.mark.postgres
def test_postgres_standby_takes_over_after_kill_9(
    postgres_url: str, contenders: Callable[[str], Contender]
) -> None:
    took = _failover(contenders, postgres_url)
    assert took <= FAILOVER_BOUND_S
    print(f"postgres fail-over after kill -9: {took:.2f} s")


def test_sqlite_standby_takes_over_after_kill_9(
    tmp_path: Path, contenders: Callable[[str], Contender]
) -> None:
    took = _failover(contenders, f"sqlite:///{tmp_path / 'data' / 'oracle.sqlite3'}")
    assert took <= FAILOVER_BOUND_S
    print(f"sqlite fail-over after kill -9: {took:.2f} s")


def test_file_lease_admits_one_holder(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3.scheduler-oracle.lock"
    a, b = FileLease(path), FileLease(path)
    assert a.try_acquire()
    assert not b.try_acquire()
    assert a.still_held()
    assert not b.still_held()
    assert path.read_text().strip() == str(os.getpid())
    a.release()
    assert b.try_acquire()
    b.release()


def test_lease_for_picks_the_lock_by_database(tmp_path: Path) -> None:
    lease = lease_for(f"sqlite:///{tmp_path}/x.sqlite3", name="oracle", data_dir=tmp_path)
    assert isinstance(lease, FileLease)
    assert lease.path == tmp_path.resolve() / "x.sqlite3.scheduler-oracle.lock"
    pg = lease_for("postgresql+psycopg://u@h:5432/d", name="oracle", data_dir=tmp_path)
    assert isinstance(pg, PostgresLease)
    assert pg.key == lock_key("oracle") != lock_key("other")
    assert -(2**63) <= pg.key < 2**63


@pytest.mark.postgres
def test_postgres_leader_steps_down_when_its_session_is_killed(postgres_url: str) -> None:
    key = lock_key("step-down-test")
    events: list[str] = []
    a = PostgresLease(postgres_url, key=key)
    election = LeaderElection(
        a,
        poll_s=0.1,
        on_elected=lambda: events.append("elected"),
        on_deposed=lambda: events.append("deposed"),
    )
    election.start()
    try:
        assert election.is_leader.wait(10)
        b = PostgresLease(postgres_url, key=key)
        assert not b.try_acquire()
        # An operator (or a network failure) ends the leader's session: the lock goes with it.
        leader_pid = a._conn.info.backend_pid
        conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (leader_pid,))
        deadline = time.monotonic() + 10
        while "deposed" not in events and time.monotonic() < deadline:
            time.sleep(0.02)
        assert events[:2] == ["elected", "deposed"]
    finally:
        election.stop()
    assert b.try_acquire()  # free for a standby once the deposed leader stops contending
    b.release()


def test_leader_runs_a_job_stored_in_the_database(ctx: Context) -> None:
    """A one-off job written by a paused replica is executed by the leader from the shared store."""
    from oracle.scheduler import start_scheduler
    from tests.scheduler.conftest import FAST

    handle = start_scheduler(ctx, FAST)
    try:
        assert handle.wait_until_leader(10)
        handle.subjects.evaluate_soon("dry", "2026-06", delay_s=0)
        from oracle.storage.decision_tables import Decision

        deadline = time.monotonic() + 60
        decision = None
        while decision is None and time.monotonic() < deadline:
            with ctx.sessions() as s:
                decision = s.query(Decision).filter_by(subject_name="dry", period="2026-06").first()
            time.sleep(0.2)
        assert decision is not None, "the leader did not run the stored job"
        assert decision.status == "incomplete"  # this database has regions but no rasters
        assert "ndvi for 2026-06" in decision.reason
        assert {j.id for j in handle.jobs() if j.store == "default"} == set()  # one-off: gone after its run
    finally:
        handle.stop()
