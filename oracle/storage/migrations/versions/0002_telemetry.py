"""telemetry ingest: devices, shipment bindings, readings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("secret_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "device_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("shipment_id", sa.String(length=120), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_bindings", schema=None) as batch_op:
        batch_op.create_index("ix_device_binding_device", ["device_id", "valid_from"], unique=False)
        batch_op.create_index(batch_op.f("ix_device_bindings_shipment_id"), ["shipment_id"], unique=False)

    op.create_table(
        "telemetry_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("shipment_id", sa.String(length=120), nullable=False),
        sa.Column("temp_c", sa.Double(), nullable=False),
        sa.Column("humidity_pct", sa.Double(), nullable=True),
        sa.Column("door_open", sa.Boolean(), nullable=True),
        sa.Column("battery_pct", sa.Double(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("batch_cid", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "seq", name="uq_telemetry_device_seq"),
    )
    with op.batch_alter_table("telemetry_readings", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_shipment_ts", ["shipment_id", "ts_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("telemetry_readings", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_shipment_ts")
    op.drop_table("telemetry_readings")
    with op.batch_alter_table("device_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_bindings_shipment_id"))
        batch_op.drop_index("ix_device_binding_device")
    op.drop_table("device_bindings")
    op.drop_table("devices")
