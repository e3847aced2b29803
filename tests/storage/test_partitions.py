"""Telemetry readings partitioned by month on PostgreSQL (migration 0007) and ``oracle devices retention``.

On the real PostgreSQL: a reading lands in its month's partition; its (device, seq) stays unique across
months (the key table, claimed before the insert); a month created late takes its readings out of the default
partition; retention drops old months whose shipments are all settled and keeps the rest. On SQLite the
table stays plain and retention changes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from oracle.commands.retention import plan
from oracle.reports import subject_id
from oracle.storage import migrate, partitions
from oracle.storage.db import make_engine
from oracle.storage.partitions import MonthPartition, month_of, month_start_ms, partition_name


def _insert(
    engine: Engine, device: str, seq: int, ts_ms: int, shipment: str = "SHP-1", digest: str = "d"
) -> int:
    """Store one reading. On PostgreSQL as every writer must since migration 0012: claim its key, insert
    the reading if the key was free. On SQLite a plain INSERT (the unique (device_id, seq) holds there)."""
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "INSERT INTO telemetry_readings (device_id, seq, ts_ms, shipment_id, temp_c, digest, "
                        "batch_cid, source, received_ms) VALUES (:d, :s, :t, :sh, 4.5, :g, 'cid', 'mqtt', 0)"
                    ),
                    {"d": device, "s": seq, "t": ts_ms, "sh": shipment, "g": digest},
                ).rowcount
            )
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(partitions.CLAIM_KEYS, ("cid", [device], [seq], [ts_ms], [digest]))
            if not cur.fetchall():
                raw.commit()
                return 0
            cur.execute(
                "INSERT INTO telemetry_readings (device_id, seq, ts_ms, shipment_id, temp_c, digest, "
                "batch_cid, source, received_ms) VALUES (%s, %s, %s, %s, 4.5, %s, 'cid', 'mqtt', 0)",
                (device, seq, ts_ms, shipment, digest),
            )
            count = int(cur.rowcount)
        raw.commit()
        return count
    finally:
        raw.close()


def _where(engine: Engine, device: str, seq: int) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tableoid::regclass::text FROM telemetry_readings WHERE device_id = :d AND seq = :s"),
            {"d": device, "s": seq},
        )
        return [r for (r,) in rows]


def _oracle(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")} | env
    return subprocess.run(
        [sys.executable, "-c", "from oracle.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
        check=False,
    )


@pytest.mark.postgres
def test_a_reading_lands_in_its_month_and_its_key_holds_across_months(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    jan, mar = 2025 * 12 + 0, 2025 * 12 + 2
    for m in (jan, mar):
        partitions.ensure_month(engine, m)
    assert _insert(engine, "dev-a", 1, month_start_ms(jan) + 5) == 1
    assert _where(engine, "dev-a", 1) == [partition_name(jan)]
    # The same (device, seq) again, in another month and with other content: not stored.
    assert _insert(engine, "dev-a", 1, month_start_ms(mar) + 5, digest="other") == 0
    assert _insert(engine, "dev-a", 1, month_start_ms(jan) + 5) == 0
    assert _where(engine, "dev-a", 1) == [partition_name(jan)]
    # A month without a partition: the default takes it, and creating the month moves it there.
    may = 2025 * 12 + 4
    assert _insert(engine, "dev-a", 2, month_start_ms(may) + 7) == 1
    assert _where(engine, "dev-a", 2) == [partitions.DEFAULT]
    assert partitions.ensure_month(engine, may)
    assert not partitions.ensure_month(engine, may)
    assert _where(engine, "dev-a", 2) == [partition_name(may)]
    assert _insert(engine, "dev-a", 2, month_start_ms(may) + 7) == 0  # its key survived the move
    with engine.connect() as conn:
        assert {jan, mar, may} <= partitions.existing_months(conn)
        assert conn.execute(text("SELECT count(*) FROM telemetry_reading_keys")).scalar_one() == 2
    engine.dispose()


def test_retention_plan_keeps_recent_and_undecided_months() -> None:
    months = [MonthPartition(m, partition_name(m), 10) for m in (100, 101, 102, 103, 104)]
    verdicts = plan(months, current=104, keep_months=2, undecided={101: ["SHP-9"]})
    assert [(v.partition.month, v.drop) for v in verdicts] == [
        (100, True),
        (101, False),
        (102, False),
        (103, False),
        (104, False),
    ]
    assert "SHP-9" in verdicts[1].why


@pytest.mark.postgres
def test_retention_drops_old_settled_months_and_keeps_undecided_ones(
    postgres_url: str, tmp_path: Path
) -> None:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    now = month_of(int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    settled, undecided, recent = now - 8, now - 7, now - 1
    for m in (settled, undecided, recent):
        partitions.ensure_month(engine, m)
    _insert(engine, "dev-r", 1, month_start_ms(settled) + 1, shipment="SHP-DONE")
    _insert(engine, "dev-r", 2, month_start_ms(settled) + 2, shipment="SHP-DONE")
    _insert(engine, "dev-r", 3, month_start_ms(undecided) + 1, shipment="SHP-DONE")
    _insert(engine, "dev-s", 1, month_start_ms(undecided) + 1, shipment="SHP-OPEN")
    _insert(engine, "dev-r", 4, month_start_ms(recent) + 1, shipment="SHP-DONE")
    with engine.begin() as conn:
        for name, status in (("SHP-DONE", "released"), ("SHP-OPEN", "open")):
            conn.execute(
                text(
                    "INSERT INTO shipments (subject, escrow, buyer, seller, amount, profile, deadline, "
                    "status) "
                    "VALUES (:s, '0x0', '0x0', '0x0', '1', '0x0', 0, :st)"
                ),
                {"s": "0x" + subject_id("shipment", name).hex(), "st": status},
            )
    env = {"ORACLE_DATABASE_URL": postgres_url, "ORACLE_DATA_DIR": str(tmp_path)}
    dry = _oracle("devices", "retention", "--keep-months", "3", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing changed" in dry.stdout
    assert "undecided: SHP-OPEN" in dry.stdout
    with engine.connect() as conn:
        assert settled in partitions.existing_months(conn)
    r = _oracle("devices", "retention", "--keep-months", "3", env=env)
    assert r.returncode == 0, r.stderr
    assert "2 readings dropped" in r.stdout
    with engine.connect() as conn:
        months = partitions.existing_months(conn)
        keys = conn.execute(text("SELECT device_id, seq FROM telemetry_reading_keys ORDER BY 1, 2")).all()
    assert settled not in months
    assert {undecided, recent, now, now + 1, now + 2} <= months
    assert [tuple(k) for k in keys] == [("dev-r", 3), ("dev-r", 4), ("dev-s", 1)]
    engine.dispose()


def test_on_sqlite_the_table_stays_plain_and_retention_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'oracle.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    assert _insert(engine, "dev-q", 1, 5) == 1
    with pytest.raises(IntegrityError):  # the plain unique (device_id, seq)
        _insert(engine, "dev-q", 1, 10**12)
    with engine.connect() as conn:
        assert not partitions.is_partitioned(conn)
    engine.dispose()
    r = _oracle(
        "devices",
        "retention",
        "--keep-months",
        "0",
        env={"ORACLE_DATABASE_URL": url, "ORACLE_DATA_DIR": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    assert "partitioned on PostgreSQL only" in r.stdout
