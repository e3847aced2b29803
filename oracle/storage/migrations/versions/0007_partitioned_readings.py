"""telemetry readings partitioned by month on PostgreSQL; idempotency key in its own small table

Revision ID: 0007
Revises: 0006

On PostgreSQL ``telemetry_readings`` becomes a declarative RANGE-partitioned table on ``ts_ms`` (the
logger's own timestamp, UNIX ms), one partition per UTC calendar month named
``telemetry_readings_yYYYYmMM`` plus ``telemetry_readings_default`` for stragglers. Whole months can then
be detached and dropped (``oracle devices retention``) instead of deleted row by row. On SQLite (the
embedded default) nothing changes: the table stays plain with its unique (device_id, seq).

The idempotency key. PostgreSQL requires the partition key in every unique constraint of a partitioned
table, so (device_id, seq) can no longer be unique on the readings themselves. Putting the month into the
key, unique (device_id, seq, ts_ms), would refuse an exact redelivery (a signed reading's ts is fixed by
its digest, so a redelivery lands in the same partition), but not a second, different reading signed with
the same seq and a timestamp in another month: two workers racing could both store it, and the
"different content under a used seq is a replay" rule would hold only as long as no two batches race.
Instead the key lives in ``telemetry_reading_keys`` (device_id, seq) PRIMARY KEY, with the reading's
digest, batch CID and ts_ms: a small, non-partitioned table. A BEFORE INSERT row trigger on the
partitioned table inserts the key ``ON CONFLICT DO NOTHING`` and skips the reading when the key was
already there, so every writer (the ingest, the ORM, a hand-written INSERT) is held to it, across months,
and a racing second insert of the same key waits on the first transaction's key and is then skipped. The
ingest looks up (digest, batch CID) of known keys in that table alone (one index probe, whatever the
number of months). Retention deletes the keys of the months it drops (see ingest/telemetry/README.md).

``id`` becomes BIGINT (same sequence, widened); the primary key is (id, ts_ms). Existing rows are copied
with their ids; partitions are created for every month that holds rows, and for the current month and
the next two; the ingest creates a month's partition itself before its first reading lands there (moving
that month's rows out of the default partition, if any).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "id, device_id, seq, ts_ms, shipment_id, temp_c, humidity_pct, door_open, battery_pct, lat, lon, "
    "digest, batch_cid, source, received_ms"
)

_KEY_TRIGGER = """
CREATE FUNCTION telemetry_reading_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO telemetry_reading_keys (device_id, seq, ts_ms, digest, batch_cid)
    VALUES (NEW.device_id, NEW.seq, NEW.ts_ms, NEW.digest, NEW.batch_cid)
    ON CONFLICT (device_id, seq) DO NOTHING;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    RETURN NULL;  -- (device_id, seq) is taken: the reading is not stored again
END
$$
"""


def _month_start_ms(year: int, month: int) -> int:
    return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp() * 1000)


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _create_partition(year: int, month: int) -> None:
    lo, hi = _month_start_ms(year, month), _month_start_ms(*_next(year, month))
    op.execute(
        f"CREATE TABLE telemetry_readings_y{year:04d}m{month:02d} PARTITION OF telemetry_readings "
        f"FOR VALUES FROM ({lo}) TO ({hi})"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps the plain table and its unique (device_id, seq)
    op.execute("ALTER TABLE telemetry_readings RENAME TO telemetry_readings_plain")
    op.execute("ALTER TABLE telemetry_readings_plain RENAME CONSTRAINT telemetry_readings_pkey TO trp_pkey")
    op.execute("ALTER INDEX ix_telemetry_shipment_ts RENAME TO trp_shipment_ts")
    op.execute("ALTER SEQUENCE telemetry_readings_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE telemetry_readings_plain ALTER COLUMN id DROP DEFAULT")
    op.execute("ALTER SEQUENCE telemetry_readings_id_seq AS bigint")
    op.create_table(
        "telemetry_reading_keys",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("batch_cid", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "seq", name="telemetry_reading_keys_pkey"),
    )
    op.execute(
        """
        CREATE TABLE telemetry_readings (
            id BIGINT NOT NULL DEFAULT nextval('telemetry_readings_id_seq'),
            device_id VARCHAR(64) NOT NULL,
            seq BIGINT NOT NULL,
            ts_ms BIGINT NOT NULL,
            shipment_id VARCHAR(120) NOT NULL,
            temp_c DOUBLE PRECISION NOT NULL,
            humidity_pct DOUBLE PRECISION,
            door_open BOOLEAN,
            battery_pct DOUBLE PRECISION,
            lat DOUBLE PRECISION,
            lon DOUBLE PRECISION,
            digest VARCHAR(32) NOT NULL,
            batch_cid VARCHAR(100) NOT NULL,
            source VARCHAR(10) NOT NULL,
            received_ms BIGINT NOT NULL,
            CONSTRAINT telemetry_readings_pkey PRIMARY KEY (id, ts_ms)
        ) PARTITION BY RANGE (ts_ms)
        """
    )
    op.execute("ALTER SEQUENCE telemetry_readings_id_seq OWNED BY telemetry_readings.id")
    op.execute("CREATE INDEX ix_telemetry_shipment_ts ON telemetry_readings (shipment_id, ts_ms)")
    op.execute(_KEY_TRIGGER)
    op.execute(
        "CREATE TRIGGER telemetry_reading_key BEFORE INSERT ON telemetry_readings "
        "FOR EACH ROW EXECUTE FUNCTION telemetry_reading_key()"
    )
    op.execute("CREATE TABLE telemetry_readings_default PARTITION OF telemetry_readings DEFAULT")
    now = dt.datetime.now(dt.UTC)
    months = {(now.year, now.month)}
    months.add(_next(now.year, now.month))
    months.add(_next(*_next(now.year, now.month)))
    rows = op.get_bind().execute(
        sa.text(
            "SELECT DISTINCT extract(year FROM t)::int, extract(month FROM t)::int FROM ("
            "SELECT to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC' AS t FROM telemetry_readings_plain) m"
        )
    )
    months |= {(int(y), int(m)) for y, m in rows if 1 <= y <= 9999}
    for year, month in sorted(months):
        _create_partition(year, month)
    op.execute(
        f"INSERT INTO telemetry_readings ({_COLUMNS}) SELECT {_COLUMNS} FROM telemetry_readings_plain "  # noqa: S608 - constants only
        "ORDER BY id"
    )
    op.execute("DROP TABLE telemetry_readings_plain")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE telemetry_readings RENAME TO telemetry_readings_parted")
    op.execute("ALTER INDEX ix_telemetry_shipment_ts RENAME TO trp_shipment_ts")
    op.execute("ALTER TABLE telemetry_readings_parted RENAME CONSTRAINT telemetry_readings_pkey TO trp_pkey")
    op.execute("ALTER SEQUENCE telemetry_readings_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE telemetry_readings_parted ALTER COLUMN id DROP DEFAULT")
    op.execute(
        """
        CREATE TABLE telemetry_readings (
            id INTEGER NOT NULL DEFAULT nextval('telemetry_readings_id_seq'),
            device_id VARCHAR(64) NOT NULL,
            seq BIGINT NOT NULL,
            ts_ms BIGINT NOT NULL,
            shipment_id VARCHAR(120) NOT NULL,
            temp_c DOUBLE PRECISION NOT NULL,
            humidity_pct DOUBLE PRECISION,
            door_open BOOLEAN,
            battery_pct DOUBLE PRECISION,
            lat DOUBLE PRECISION,
            lon DOUBLE PRECISION,
            digest VARCHAR(32) NOT NULL,
            batch_cid VARCHAR(100) NOT NULL,
            source VARCHAR(10) NOT NULL,
            received_ms BIGINT NOT NULL,
            CONSTRAINT telemetry_readings_pkey PRIMARY KEY (id),
            CONSTRAINT uq_telemetry_device_seq UNIQUE (device_id, seq)
        )
        """
    )
    op.execute(
        f"INSERT INTO telemetry_readings ({_COLUMNS}) SELECT {_COLUMNS} FROM telemetry_readings_parted "  # noqa: S608 - constants only
        "ORDER BY id"
    )
    op.execute("DROP TABLE telemetry_readings_parted")  # its partitions go with it
    op.execute("DROP FUNCTION telemetry_reading_key()")
    op.execute("DROP TABLE telemetry_reading_keys")
    op.execute("ALTER SEQUENCE telemetry_readings_id_seq AS integer")
    op.execute("ALTER SEQUENCE telemetry_readings_id_seq OWNED BY telemetry_readings.id")
    op.execute("CREATE INDEX ix_telemetry_shipment_ts ON telemetry_readings (shipment_id, ts_ms)")
