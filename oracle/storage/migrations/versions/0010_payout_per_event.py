"""payouts: one row per PayoutSent event, not one per policy

A policy is paid more than once: in several months of its coverage, by a top-up when the network posts a
higher revision for a month, and by ``claimOwed`` after a failed transfer. The projection kept only the
first payout of each policy (unique on pool and policy), so the dashboard and ``GET /v1/payouts`` showed
less than the pool paid. Each row is now one event, unique on (tx_hash, log_index) like ``chain_events``,
and carries the report epoch the payout was made on (0 for ``claimOwed``). Existing rows take their
log index from the event the listener recorded in ``chain_events``.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payouts") as batch:
        batch.add_column(sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("log_index", sa.Integer(), nullable=True))
        batch.drop_constraint("uq_payout_policy", type_="unique")
    bind = op.get_bind()
    events: dict[tuple[str, int], tuple[int, int]] = {}
    for tx_hash, log_index, args in bind.execute(
        sa.text("SELECT tx_hash, log_index, args FROM chain_events WHERE name = 'PayoutSent'")
    ):
        a = json.loads(args) if isinstance(args, str) else args
        events[(tx_hash, int(a["policyId"]))] = (int(log_index), int(a.get("epoch", 0)))
    for row_id, tx_hash, policy_id in bind.execute(
        sa.text("SELECT id, tx_hash, policy_id FROM payouts")
    ).all():
        log_index, epoch = events.get((tx_hash, int(policy_id)), (-int(row_id), 0))
        bind.execute(
            sa.text("UPDATE payouts SET log_index = :i, epoch = :e WHERE id = :id"),
            {"i": log_index, "e": epoch, "id": row_id},
        )
    with op.batch_alter_table("payouts") as batch:
        batch.alter_column("log_index", existing_type=sa.Integer(), nullable=False)
        batch.create_unique_constraint("uq_payout_event", ["tx_hash", "log_index"])
        batch.create_index("ix_payouts_policy", ["pool", "policy_id"], unique=False)


def downgrade() -> None:
    bind = op.get_bind()
    # Keep the first payout of each policy, as the old projection did.
    bind.execute(
        sa.text("DELETE FROM payouts WHERE id NOT IN (SELECT MIN(id) FROM payouts GROUP BY pool, policy_id)")
    )
    with op.batch_alter_table("payouts") as batch:
        batch.drop_index("ix_payouts_policy")
        batch.drop_constraint("uq_payout_event", type_="unique")
        batch.create_unique_constraint("uq_payout_policy", ["pool", "policy_id"])
        batch.drop_column("log_index")
        batch.drop_column("epoch")
