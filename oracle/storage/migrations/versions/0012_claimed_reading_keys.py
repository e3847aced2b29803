"""telemetry readings: the ingest claims idempotency keys set-based; drop the per-row key trigger

Revision ID: 0012
Revises: 0010

PostgreSQL only (SQLite keeps its plain table and unique (device_id, seq)). Migration 0007 kept the
(device_id, seq) key of the month-partitioned ``telemetry_readings`` in ``telemetry_reading_keys`` with a
BEFORE INSERT row trigger: one PL/pgSQL call and one single-row INSERT per reading, about 30 % of a
batch's throughput. The only writer of readings, the ingest (ingest/telemetry/pipeline.py), now claims a
whole batch's keys in one statement in the same transaction (``oracle.storage.partitions.CLAIM_KEYS``:
INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING) and COPYs only the readings whose key it
got. The key table's primary key still serialises two transactions claiming one key, across months and
across workers, exactly as the trigger's INSERT did; so the trigger goes.

From this revision on, a hand-written INSERT into ``telemetry_readings`` is no longer held to the key:
claim the key first (``CLAIM_KEYS``) and insert only what it returns. Downgrade puts the trigger back;
no row changes either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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


def _partitioned() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    kind = bind.exec_driver_sql(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass('telemetry_readings')"
    ).scalar()
    return bool(kind == "p")


def upgrade() -> None:
    if not _partitioned():
        return
    op.execute("DROP TRIGGER IF EXISTS telemetry_reading_key ON telemetry_readings")
    op.execute("DROP FUNCTION IF EXISTS telemetry_reading_key()")


def downgrade() -> None:
    if not _partitioned():
        return
    op.execute(_KEY_TRIGGER)
    op.execute(
        "CREATE TRIGGER telemetry_reading_key BEFORE INSERT ON telemetry_readings "
        "FOR EACH ROW EXECUTE FUNCTION telemetry_reading_key()"
    )
