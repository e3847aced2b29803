"""device public keys: devices that sign with their own key, rotation by seq, revocation by seq

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both backends (no table rebuild: SQLite would have to drop a referenced table).
    op.add_column("devices", sa.Column("auth", sa.String(length=10), server_default="hmac", nullable=False))
    op.add_column("devices", sa.Column("revoked_after_seq", sa.BigInteger(), nullable=True))
    op.create_table(
        "device_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=10), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("valid_through_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "fingerprint", name="uq_device_key"),
    )
    op.create_index("ix_device_keys_device_id", "device_keys", ["device_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_device_keys_device_id", table_name="device_keys")
    op.drop_table("device_keys")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("revoked_after_seq")
        batch.drop_column("auth")
