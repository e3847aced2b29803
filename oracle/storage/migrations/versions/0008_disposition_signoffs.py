"""disposition sign-offs: signing credentials and the hash-chained sign-off log

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("printed_name", sa.String(length=120), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("scrypt_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_signing_credential_key", "signing_credentials", ["key_id"], unique=False)
    op.create_table(
        "disposition_signoffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("shipment", sa.String(length=120), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("printed_name", sa.String(length=120), nullable=False),
        sa.Column("meaning", sa.String(length=20), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
        sa.UniqueConstraint("prev_hash"),
        sa.UniqueConstraint("entry_hash"),
    )
    op.create_index("ix_disposition_signoff_shipment", "disposition_signoffs", ["shipment"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_disposition_signoff_shipment", table_name="disposition_signoffs")
    op.drop_table("disposition_signoffs")
    op.drop_index("ix_signing_credential_key", table_name="signing_credentials")
    op.drop_table("signing_credentials")
