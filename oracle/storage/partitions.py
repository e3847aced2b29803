"""Monthly partitions of ``telemetry_readings`` on PostgreSQL (migration 0007); SQLite has none.

A month is a UTC calendar month, numbered ``year * 12 + month - 1`` (so consecutive months are
consecutive integers); its partition ``telemetry_readings_yYYYYmMM`` holds the readings whose ``ts_ms``
falls in it. ``telemetry_readings_default`` holds readings of months that have no partition (yet).

:func:`ensure_month` creates a month's partition, moving that month's rows out of the default partition
first, so it always succeeds whatever the default holds. :func:`drop_month` detaches and drops a month's
partition together with its readings' idempotency keys. Both serialise on one advisory lock, so two
workers creating the same month at once do not collide.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

PARENT = "telemetry_readings"
DEFAULT = "telemetry_readings_default"
KEYS = "telemetry_reading_keys"

CLAIM_KEYS = (
    f"INSERT INTO {KEYS} (device_id, seq, ts_ms, digest, batch_cid) "  # noqa: S608 - constants only
    "SELECT d, s, t, g, %s::varchar FROM unnest(%s::varchar[], %s::bigint[], %s::bigint[], %s::varchar[]) "
    "AS u(d, s, t, g) ORDER BY d, s "
    "ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq"
)
"""Claim readings' idempotency keys in one statement (psycopg parameters: the batch CID, then four
parallel lists of device ids, seqs, ts_ms and digests); returns the (device_id, seq) that were free and
are now this transaction's. Every writer of ``telemetry_readings`` on PostgreSQL stores exactly the
readings whose key it claimed, in the same transaction (migration 0012 dropped the per-row trigger that
did this).

The primary key of the key table holds it across months and across workers: a second transaction
claiming a key that a first one claimed and has not committed waits for it, then gets nothing back (or
the key, if the first rolled back). Keys are claimed in (device_id, seq) order, so two workers claiming
overlapping batches take the key locks in the same order and cannot deadlock on them."""
_NAME = re.compile(r"^telemetry_readings_y(\d{4})m(\d{2})$")
_LOCK_KEY = 0x7E1E_0007  # pg_advisory_xact_lock key for partition DDL on the readings table


def month_of(ts_ms: int) -> int:
    """The month (``year * 12 + month - 1``, UTC) of a UNIX-millisecond timestamp."""
    t = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
    return t.year * 12 + t.month - 1


def month_start_ms(month: int) -> int:
    """The first millisecond of ``month``."""
    return int(dt.datetime(month // 12, month % 12 + 1, 1, tzinfo=dt.UTC).timestamp() * 1000)


def month_label(month: int) -> str:
    """``YYYY-MM``."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def partition_name(month: int) -> str:
    return f"telemetry_readings_y{month // 12:04d}m{month % 12 + 1:02d}"


def is_partitioned(conn: Connection) -> bool:
    """True on PostgreSQL once migration 0007 ran (the readings table is partitioned)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT})
    return kind.scalar() == "p"


def existing_months(conn: Connection) -> set[int]:
    """The months that have a partition attached."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
    )
    months = set()
    for (name,) in rows:
        m = _NAME.match(name)
        if m:
            months.add(int(m.group(1)) * 12 + int(m.group(2)) - 1)
    return months


def ensure_month(engine: Engine, month: int) -> bool:
    """Create ``month``'s partition unless it exists; returns True if it was created.

    Its rows already in the default partition move into it in the same transaction (the new partition is
    filled as a plain table and then attached; their keys stay in the key table as they were)."""
    name = partition_name(month)
    lo, hi = month_start_ms(month), month_start_ms(month + 1)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        if month in existing_months(conn):
            return False
        conn.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
        conn.execute(
            text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK (ts_ms >= {lo} AND ts_ms < {hi})")
        )
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts_ms >= {lo} AND ts_ms < {hi} RETURNING *) "  # noqa: S608 - integers only
                f"INSERT INTO {name} SELECT * FROM moved"
            )
        )
        conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"))
        conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range"))
    return True


def ensure_months_ahead(engine: Engine, *, now_ms: int, ahead: int = 2) -> list[int]:
    """Create the partitions of the current month and the next ``ahead`` months; returns those created."""
    first = month_of(now_ms)
    return [m for m in range(first, first + ahead + 1) if ensure_month(engine, m)]


@dataclass(frozen=True)
class MonthPartition:
    month: int
    name: str
    readings: int


def list_months(conn: Connection) -> list[MonthPartition]:
    """Every month's partition with its number of readings, oldest first."""
    out = []
    for month in sorted(existing_months(conn)):
        name = partition_name(month)
        count = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608 - our own name
        out.append(MonthPartition(month, name, int(count)))
    return out


def default_count(conn: Connection) -> int:
    """How many readings the default partition holds (months without a partition of their own)."""
    return int(conn.execute(text(f"SELECT count(*) FROM {DEFAULT}")).scalar_one())  # noqa: S608 - constant


def shipments_in(conn: Connection, month: int) -> set[str]:
    """The shipment ids that have readings in ``month``'s partition."""
    rows = conn.execute(text(f"SELECT DISTINCT shipment_id FROM {partition_name(month)}"))  # noqa: S608
    return {r for (r,) in rows}


def drop_month(engine: Engine, month: int) -> int:
    """Detach and drop ``month``'s partition and delete its readings' idempotency keys; returns how many
    readings went. A no-op (0) when the month has no partition."""
    name = partition_name(month)
    lo, hi = month_start_ms(month), month_start_ms(month + 1)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        if month not in existing_months(conn):
            return 0
        count = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())  # noqa: S608
        conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
        conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(
            text(f"DELETE FROM {KEYS} WHERE ts_ms >= {lo} AND ts_ms < {hi}")  # noqa: S608 - integers only
        )
    return count


def schema_filter(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """An Alembic ``include_object`` hook for comparing the models with a ``dialect`` database: on
    PostgreSQL it leaves out what migration 0007 made differently from the models (the month partitions,
    the key table, the unique (device_id, seq) that the key table replaces)."""

    def include(_obj: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        if dialect != "postgresql":
            return True
        if type_ == "table" and reflected and name in (KEYS, DEFAULT):
            return False
        if type_ == "table" and reflected and name is not None and _NAME.match(name):
            return False
        return not (type_ == "unique_constraint" and name == "uq_telemetry_device_seq")

    return include
