"""network rounds and peer signatures

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "network_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=66), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=66), nullable=False),
        sa.Column("manifest_cid", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("delivered_to", sa.JSON(), nullable=False),
        sa.Column("combined", sa.JSON(), nullable=False),
        sa.Column("landed_tx", sa.String(length=66), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("landed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject", "epoch", name="uq_network_round"),
    )
    op.create_index("ix_network_round_status", "network_rounds", ["status"], unique=False)
    op.create_table(
        "network_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=66), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("signer", sa.String(length=42), nullable=False),
        sa.Column("digest", sa.String(length=66), nullable=False),
        sa.Column("signature", sa.String(length=132), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("manifest_cid", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject", "epoch", "node_id", name="uq_network_signature"),
    )


def downgrade() -> None:
    op.drop_table("network_signatures")
    op.drop_index("ix_network_round_status", table_name="network_rounds")
    op.drop_table("network_rounds")
