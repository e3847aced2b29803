"""Leader election: exactly one scheduler replica runs jobs; the others stand by and take over.

Two lease kinds, chosen by the database URL (:func:`lease_for`):

* **PostgreSQL**: ``pg_try_advisory_lock(key)`` on a dedicated connection held for the leader's whole
  life. The server drops the lock the moment that session ends, so a leader killed with ``kill -9`` (its
  socket closes) frees it at once; TCP keepalives bound how long a silently vanished host keeps it.
  The leader re-checks, every poll, that its session still holds the lock and steps down if not.
* **SQLite**: an exclusive ``fcntl.flock`` on a lock file next to the database file. SQLite already
  confines the service to one host, and the kernel releases a flock when the holding process dies,
  with no clock or expiry involved. (A leases row with an expiry would need clock agreement and a
  renewal loop for no gain on one host.)

:class:`LeaderElection` is a thread that polls: a standby tries the lease every ``poll_s`` seconds, so
fail-over takes at most about one poll interval plus the new leader's start-up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class Lease(Protocol):
    """Something at most one holder has at a time, across processes."""

    def try_acquire(self) -> bool:
        """Take the lease if free; ``True`` when this holder now has it. Never raises."""
        ...

    def still_held(self) -> bool:
        """``True`` while this holder still has the lease. Never raises."""
        ...

    def release(self) -> None:
        """Give the lease up (idempotent)."""
        ...


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key derived from the scheduler name (stable across versions)."""
    digest = hashlib.sha256(f"oracle.scheduler:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLease:
    """``pg_try_advisory_lock`` on a dedicated autocommit connection (never a pooled one: returning it
    to a pool would hand the lock to whoever borrows it next)."""

    def __init__(self, database_url: str, *, key: int, connect_timeout: int = 5) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._where = f"{url.host}:{url.port or 5432}/{url.database}"
        self.key = key
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._held = False

    def __repr__(self) -> str:
        return f"PostgresLease({self._where}, key={self.key})"

    def _connect(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                application_name="oracle-scheduler-leader",
                # A leader whose host vanishes without closing the socket loses the lock within ~30 s.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                options="-c statement_timeout=5000",
            )
        return self._conn

    def try_acquire(self) -> bool:
        try:
            conn = self._connect()
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            self._held = bool(row and row[0])
        except (psycopg.Error, OSError) as e:  # "not leader now"; the next poll tries again
            log.warning("leader lock on %s unavailable: %s", self._where, type(e).__name__)
            self._drop()
            return False
        return self._held

    def still_held(self) -> bool:
        if not self._held or self._conn is None:
            return False
        hi, lo = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
                (hi, lo),
            ).fetchone()
            held = bool(row and row[0])
        except (psycopg.Error, OSError) as e:
            log.warning("leader lock session on %s lost: %s", self._where, type(e).__name__)
            held = False
        if not held:
            self._drop()
        return held

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed and self._held:
            with contextlib.suppress(Exception):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


class FileLease:
    """An exclusive, non-blocking ``flock`` on ``path``; the holder's pid is written into the file for
    operators. Two :class:`FileLease` objects conflict even inside one process (one open file each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __repr__(self) -> str:
        return f"FileLease({self.path})"

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = self.path.open("a+")
        except OSError as e:
            log.warning("leader lock file %s unavailable: %s", self.path, e)
            return False
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return True

    def still_held(self) -> bool:
        return self._file is not None and not self._file.closed

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
        self._file = None


def lease_for(database_url: str, *, name: str, data_dir: Path) -> Lease:
    """The lease that makes one leader among every scheduler sharing ``database_url``."""
    if database_url.startswith("postgresql"):
        return PostgresLease(database_url, key=lock_key(name))
    path = make_url(database_url).database
    if path and path != ":memory:":
        return FileLease(Path(f"{Path(path).resolve()}.scheduler-{name}.lock"))
    return FileLease(data_dir.resolve() / f"scheduler-{name}.lock")


class LeaderElection(threading.Thread):
    """Polls ``lease`` every ``poll_s`` seconds and calls ``on_elected`` / ``on_deposed`` on changes.

    Callbacks run on this thread; an exception in ``on_elected`` releases the lease (another replica
    may do better) and is retried on the next poll.
    """

    def __init__(
        self,
        lease: Lease,
        *,
        poll_s: float,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
        name: str = "scheduler-leader",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.lease = lease
        self.poll_s = poll_s
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.is_leader = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            self.step()
            self._stopping.wait(self.poll_s)
        self._step_down()
        self.lease.release()

    def step(self) -> None:
        """One poll: take the lease when free, or check we still hold it."""
        if self.is_leader.is_set():
            if not self.lease.still_held():
                log.warning("scheduler lost leadership (%r)", self.lease)
                self._step_down()
            return
        if not self.lease.try_acquire():
            return
        log.info("scheduler elected leader (%r)", self.lease)
        try:
            self.on_elected()
        except Exception:
            log.exception("scheduler failed to start as leader; releasing the lock")
            with contextlib.suppress(Exception):
                self.on_deposed()
            self.lease.release()
            return
        self.is_leader.set()

    def _step_down(self) -> None:
        if self.is_leader.is_set():
            self.is_leader.clear()
            try:
                self.on_deposed()
            except Exception:
                log.exception("scheduler step-down failed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)
        else:
            self._step_down()
            self.lease.release()
