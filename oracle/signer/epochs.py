"""The signer's memory of what it signed: per subject, every epoch with its digest and signature.

A restart must never sign an equal or lower epoch again, so the SQLite file is written (and committed)
before a signature leaves the process. Re-signing the identical report returns the stored signature.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from oracle.errors import StorageError
from oracle.signer.policy import EpochRecord, decide_epoch

# Epochs are uint64 but SQLite integers are signed 64-bit: store them shifted by 2**63, which keeps
# their order, so MAX() and comparisons still work for the whole uint64 range.
_EPOCH_SHIFT = 2**63


def _to_db(epoch: int) -> int:
    return epoch - _EPOCH_SHIFT


def _from_db(v: int) -> int:
    return v + _EPOCH_SHIFT


_SCHEMA = """
CREATE TABLE IF NOT EXISTS signatures (
    subject   BLOB    NOT NULL,
    epoch     INTEGER NOT NULL,
    digest    BLOB    NOT NULL,
    signature BLOB    NOT NULL,
    signed_at REAL    NOT NULL,
    PRIMARY KEY (subject, epoch)
)
"""


class EpochStore(Protocol):
    def sign_once(self, subject: bytes, epoch: int, digest: bytes, sign: Callable[[], bytes]) -> EpochRecord:
        """Atomically apply :func:`~oracle.signer.policy.decide_epoch` to the stored history.

        Returns the stored record for an identical re-sign, otherwise calls ``sign`` and persists the new
        record before returning it. Raises ``SigningRefused`` (stale_epoch, epoch_conflict).
        """
        ...

    def latest_epoch(self, subject: bytes) -> int | None:
        """The highest epoch signed for ``subject``, or ``None``."""
        ...


class MemoryEpochStore:
    """In-memory epoch history for the in-process test signer; forgets everything on exit."""

    def __init__(self) -> None:
        self._records: dict[tuple[bytes, int], EpochRecord] = {}
        self._latest: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def sign_once(self, subject: bytes, epoch: int, digest: bytes, sign: Callable[[], bytes]) -> EpochRecord:
        with self._lock:
            same = self._records.get((subject, epoch))
            if decide_epoch(
                same_epoch=same, latest_epoch=self._latest.get(subject), epoch=epoch, digest=digest
            ):
                assert same is not None
                return same
            rec = EpochRecord(subject=subject, epoch=epoch, digest=digest, signature=sign())
            self._records[(subject, epoch)] = rec
            self._latest[subject] = epoch
            return rec

    def latest_epoch(self, subject: bytes) -> int | None:
        with self._lock:
            return self._latest.get(subject)


class SqliteEpochStore:
    """Epoch history in a small SQLite file (WAL); safe against concurrent threads and processes.

    Raises :class:`~oracle.errors.StorageError` when the file cannot be opened or written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) so the read-decide-write
            # of one signature holds the write lock from the first read.
            self._conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(_SCHEMA)
        except sqlite3.Error as e:
            raise StorageError(f"cannot open signer epoch store {path}: {e}") from None
        self._lock = threading.Lock()

    def sign_once(self, subject: bytes, epoch: int, digest: bytes, sign: Callable[[], bytes]) -> EpochRecord:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    rec = self._decide_and_sign(subject, epoch, digest, sign)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return rec
            except sqlite3.Error as e:
                raise StorageError(f"signer epoch store {self.path} failed: {e}") from None

    def _decide_and_sign(
        self, subject: bytes, epoch: int, digest: bytes, sign: Callable[[], bytes]
    ) -> EpochRecord:
        row = self._conn.execute(
            "SELECT digest, signature FROM signatures WHERE subject = ? AND epoch = ?",
            (subject, _to_db(epoch)),
        ).fetchone()
        same = None if row is None else EpochRecord(subject, epoch, bytes(row[0]), bytes(row[1]))
        latest = self._latest(subject)
        if decide_epoch(same_epoch=same, latest_epoch=latest, epoch=epoch, digest=digest):
            assert same is not None
            return same
        rec = EpochRecord(subject=subject, epoch=epoch, digest=digest, signature=sign())
        self._conn.execute(
            "INSERT INTO signatures (subject, epoch, digest, signature, signed_at) VALUES (?, ?, ?, ?, ?)",
            (subject, _to_db(epoch), digest, rec.signature, time.time()),
        )
        return rec

    def _latest(self, subject: bytes) -> int | None:
        row = self._conn.execute("SELECT MAX(epoch) FROM signatures WHERE subject = ?", (subject,)).fetchone()
        return None if row is None or row[0] is None else _from_db(int(row[0]))

    def latest_epoch(self, subject: bytes) -> int | None:
        with self._lock:
            try:
                return self._latest(subject)
            except sqlite3.Error as e:
                raise StorageError(f"signer epoch store {self.path} failed: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
