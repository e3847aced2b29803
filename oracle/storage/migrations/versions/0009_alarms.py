"""excursion alarms: alarms and their trail, evaluator checkpoints, shipment legs, webhooks and deliveries

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.String(length=120), nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("auto_clear", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("raised_at_s", sa.BigInteger(), nullable=False),
        sa.Column("raised_value_c", sa.Float(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=80), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.String(length=80), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_at_s", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shipment_id", "rule", "raised_at_s", name="uq_alarm_identity"),
    )
    op.create_index("ix_alarms_state", "alarms", ["state", "id"], unique=False)
    op.create_index("ix_alarms_shipment", "alarms", ["shipment_id", "id"], unique=False)
    op.create_table(
        "alarm_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at_s", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alarm_id", "action", name="uq_alarm_event"),
    )
    op.create_index("ix_alarm_events_alarm_id", "alarm_events", ["alarm_id"], unique=False)
    op.create_table(
        "alarm_checkpoints",
        sa.Column("shipment_id", sa.String(length=120), nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("last_ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id"),
    )
    op.create_table(
        "shipment_legs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.String(length=120), nullable=False),
        sa.Column("leg", sa.String(length=16), nullable=False),
        sa.Column("at_s", sa.BigInteger(), nullable=False),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_shipment_legs", "shipment_legs", ["shipment_id", "at_s"], unique=False)
    op.create_table(
        "alarm_webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook_id", "event_key", name="uq_webhook_event"),
    )
    op.create_index("ix_webhook_due", "webhook_deliveries", ["state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("alarm_webhooks")
    op.drop_index("ix_shipment_legs", table_name="shipment_legs")
    op.drop_table("shipment_legs")
    op.drop_table("alarm_checkpoints")
    op.drop_index("ix_alarm_events_alarm_id", table_name="alarm_events")
    op.drop_table("alarm_events")
    op.drop_index("ix_alarms_shipment", table_name="alarms")
    op.drop_index("ix_alarms_state", table_name="alarms")
    op.drop_table("alarms")
