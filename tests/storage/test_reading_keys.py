"""The (device_id, seq) idempotency key of telemetry readings, claimed set-based (migration 0012).

Through the ingest's own path (``TelemetryIngest.process``) on SQLite and on the real PostgreSQL: a reading
whose seq was stored in another month is refused as a replay (other content) or counted as a redelivery
(same content), and stays in its first month's partition; the same reading twice in one batch (one COPY)
is stored once. On PostgreSQL: the claim statement itself returns a key once when a batch holds it twice,
a second transaction claiming a key the first holds waits for it and gets nothing (or the key, once the
first rolled back), and migration 0012 drops the row trigger of 0007 and its downgrade puts it back.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import select, text

from ingest.telemetry import IncomingMessage, RejectReason, sign_envelope
from oracle.devices import Kek
from oracle.storage import migrate, partitions
from oracle.storage.tables import TelemetryReading
from tests.telemetry.conftest import Db, add_device, make_ingest, open_db, reading

DAY_MS = 86_400_000


def _msg(device: str, body: object, secret: bytes) -> IncomingMessage:
    return IncomingMessage(device, json.dumps(sign_envelope(body, secret)).encode(), "mqtt")


def _month_ago_and_now() -> tuple[int, int]:
    """A timestamp in last month (well inside it) and one now, in the current month."""
    now = int(time.time() * 1000)
    first = partitions.month_start_ms(partitions.month_of(now))
    return first - 10 * DAY_MS, now


@pytest.fixture
def kek() -> Kek:
    return Kek.from_bytes(bytes(range(32)))


@pytest.fixture
def store(database_url: str) -> Any:
    db = open_db(database_url)
    yield db
    db.engine.dispose()


def _where(db: Db, device: str, seq: int) -> list[tuple[str, float]]:
    """(table holding the row, temp_c) of every stored reading (device, seq): the partition on PostgreSQL."""
    origin = "tableoid::regclass::text" if db.engine.dialect.name == "postgresql" else "'telemetry_readings'"
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {origin}, temp_c FROM telemetry_readings WHERE device_id = :d AND seq = :s"),  # noqa: S608
            {"d": device, "s": seq},
        )
        return [(str(t), float(c)) for t, c in rows]


def test_a_seq_stored_last_month_is_refused_this_month_and_its_row_stays_put(
    store: Db, kek: Kek, tmp_path: Path
) -> None:
    secret = add_device(store, kek, "dev-m")
    ingest = make_ingest(store, kek, tmp_path, reorder_window_s=90 * 86_400)
    last_month, now = _month_ago_and_now()
    first = _msg("dev-m", [reading(1, last_month, 4.0), reading(2, last_month + 1, 4.1)], secret)
    assert ingest.process([first]).accepted == 2
    home = _where(store, "dev-m", 1)
    if store.engine.dialect.name == "postgresql":
        assert home == [(partitions.partition_name(partitions.month_of(last_month)), 4.0)]
    # seq 1 again with other content and this month's time stamp: a replay, not a second row.
    other = ingest.process([_msg("dev-m", reading(1, now, 9.9), secret)])
    assert (other.accepted, other.duplicates) == (0, 0)
    assert [(r.reason, r.seq) for r in other.messages[0].rejects] == [(RejectReason.REPLAY, 1)]
    # The same reading delivered again: a redelivery.
    again = ingest.process([first])
    assert (again.accepted, again.duplicates, again.rejected) == (0, 2, 0)
    # Mixed: a taken seq next to a new one in one batch; only the new one is stored.
    mixed = ingest.process([_msg("dev-m", [reading(2, now, 7.0), reading(3, now + 1, 5.0)], secret)])
    assert mixed.accepted == 1
    assert [(r.reason, r.seq) for r in mixed.messages[0].rejects] == [(RejectReason.REPLAY, 2)]
    assert _where(store, "dev-m", 1) == home
    assert store.count_readings("dev-m") == 3
    assert store.distinct_keys() == 3


def test_the_same_reading_twice_in_one_batch_is_stored_once(store: Db, kek: Kek, tmp_path: Path) -> None:
    secret = add_device(store, kek, "dev-b")
    ingest = make_ingest(store, kek, tmp_path)
    _, now = _month_ago_and_now()
    m = _msg("dev-b", [reading(1, now - 2, 4.0), reading(2, now - 1, 4.2)], secret)
    twice = ingest.process([m, m, _msg("dev-b", [reading(2, now - 1, 4.2), reading(3, now, 4.4)], secret)])
    assert (twice.accepted, twice.duplicates, twice.rejected) == (3, 3, 0)
    assert [(o.accepted, o.duplicates) for o in twice.messages] == [(2, 0), (0, 2), (1, 1)]
    with store.sessions() as s:
        seqs = s.scalars(
            select(TelemetryReading.seq).where(TelemetryReading.device_id == "dev-b").order_by("seq")
        ).all()
    assert list(seqs) == [1, 2, 3]
    if _pg(store):
        with store.engine.connect() as conn:
            keys = conn.execute(text(f"SELECT count(*) FROM {partitions.KEYS}")).scalar_one()  # noqa: S608
        assert keys == 3


def _pg(db: Db) -> bool:
    return db.engine.dialect.name == "postgresql"


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))


@pytest.mark.postgres
def test_claim_returns_a_key_once_and_a_racing_claim_waits_then_gets_nothing(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    ts = partitions.month_start_ms(2025 * 12) + 5
    with _connect(postgres_url) as a, _connect(postgres_url) as b:
        # One statement holding the same key twice (a batch with a redelivery): claimed once.
        got = a.execute(
            partitions.CLAIM_KEYS, ("c1", ["d", "d", "e"], [1, 1, 1], [ts, ts, ts], ["x", "x", "y"])
        )
        assert sorted(got.fetchall()) == [("d", 1), ("e", 1)]
        # b claims d/1 (held by a, uncommitted) and f/1: it waits for a's transaction.
        result: dict[str, Any] = {}

        def claim_b() -> None:
            cur = b.execute(partitions.CLAIM_KEYS, ("c2", ["d", "f"], [1, 1], [ts, ts], ["z", "w"]))
            result["rows"] = sorted(cur.fetchall())
            result["at"] = time.monotonic()

        racer = threading.Thread(target=claim_b)
        racer.start()
        time.sleep(0.5)
        assert "rows" not in result  # still waiting on a's key
        committed_at = time.monotonic()
        a.commit()
        racer.join(timeout=10)
        assert result["rows"] == [("f", 1)]  # d/1 is a's: b gets nothing for it
        assert result["at"] >= committed_at
        b.rollback()
        # A key claimed by a transaction that rolls back is free again.
        a.execute(partitions.CLAIM_KEYS, ("c3", ["g"], [1], [ts], ["v"]))
        a.rollback()
        assert b.execute(partitions.CLAIM_KEYS, ("c4", ["g"], [1], [ts], ["v"])).fetchall() == [("g", 1)]
        b.commit()
        keys = f"SELECT device_id, seq, digest, batch_cid FROM {partitions.KEYS} ORDER BY 1"  # noqa: S608
        rows = a.execute(keys).fetchall()
    assert rows == [("d", 1, "x", "c1"), ("e", 1, "y", "c1"), ("g", 1, "v", "c4")]


@pytest.mark.postgres
def test_migration_0012_drops_the_row_trigger_and_its_downgrade_restores_it(postgres_url: str) -> None:
    def triggers() -> list[str]:
        with _connect(postgres_url) as c:
            rows = c.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'telemetry_readings'::regclass "
                "AND NOT tgisinternal"
            ).fetchall()
        return [r for (r,) in rows]

    migrate.upgrade(postgres_url, "0010")
    assert triggers() == ["telemetry_reading_key"]
    migrate.upgrade(postgres_url)
    assert triggers() == []
    command.downgrade(migrate.alembic_config(postgres_url), "0010")
    assert triggers() == ["telemetry_reading_key"]
    migrate.upgrade(postgres_url)
    assert triggers() == []
