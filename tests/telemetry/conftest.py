"""Shared helpers for the telemetry tests: a migrated database, a KEK, registered devices."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.telemetry import TelemetryIngest
from oracle.devices import Kek, register_device
from oracle.storage import migrate
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.db import make_engine, session_factory
from oracle.storage.tables import Reject, TelemetryReading

START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@dataclass
class Db:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def count_readings(self, device_id: str | None = None) -> int:
        q = select(func.count()).select_from(TelemetryReading)
        if device_id is not None:
            q = q.where(TelemetryReading.device_id == device_id)
        with self.sessions() as s:
            return int(s.scalar(q) or 0)

    def reject_reasons(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(Reject.reason).order_by(Reject.id)))

    def distinct_keys(self) -> int:
        with self.sessions() as s:
            q = select(func.count()).select_from(
                select(TelemetryReading.device_id, TelemetryReading.seq).distinct().subquery()
            )
            return int(s.scalar(q) or 0)


def open_db(url: str) -> Db:
    migrate.upgrade(url)
    engine = make_engine(url)
    return Db(url, engine, session_factory(engine))


@pytest.fixture
def db(database_url: str) -> Iterator[Db]:
    d = open_db(database_url)
    yield d
    d.engine.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Db]:
    d = open_db(f"sqlite:///{tmp_path / 'oracle.sqlite3'}")
    yield d
    d.engine.dispose()


@pytest.fixture
def kek() -> Kek:
    return Kek.from_bytes(bytes(range(32)))


def add_device(db: Db, kek: Kek, device_id: str, shipment: str = "SHP-1", **window: Any) -> bytes:
    window.setdefault("valid_from", START)
    return register_device(db.sessions, kek, device_id=device_id, shipment_id=shipment, **window)


def make_ingest(db: Db, kek: Kek, tmp_path: Path, **kw: Any) -> TelemetryIngest:
    return TelemetryIngest(sessions=db.sessions, blobs=FilesystemBlobStore(tmp_path / "blobs"), kek=kek, **kw)


def now_ms() -> int:
    return int(time.time() * 1000)


def reading(seq: int, ts: int, temp_c: float = 4.5, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "temp_c": temp_c, **extra}
