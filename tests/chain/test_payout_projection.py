"""Payouts as the listener projects them: one row per PayoutSent event. A policy paid in one month and
topped up by a higher revision shows both payouts and their sum (the old projection kept the first only);
migration 0010 carries existing rows over with the log index of the event they came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from oracle.chain.listener import ChainListener
from oracle.dashboard.views import policies_view
from oracle.storage import migrate
from oracle.storage.db import make_engine, session_factory
from oracle.storage.tables import Payout
from tests.chain.pool_kit import MONTH, USD, create_policy, paid, severity
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import open_db, sqlite_url


@pytest.mark.chain
def test_a_top_up_is_a_second_payout_and_the_policy_shows_their_sum(chain: ChainKit, tmp_path: Path) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    policy = create_policy(chain)  # trigger 2.0, exit 4.0, limit 1,000: severity 3.0 pays 500
    assert paid(chain, chain.submit(severity(3_000_000, month=MONTH, revision=0))) == {policy: 500 * USD}
    # The network posts a higher revision for the same month: the pool pays the difference.
    assert paid(chain, chain.submit(severity(3_500_000, month=MONTH, revision=1))) == {policy: 250 * USD}
    ChainListener(sessions, chain.w3, chain.deployment, confirmations=0).poll()
    with sessions() as s:
        rows = s.scalars(select(Payout).where(Payout.policy_id == policy).order_by(Payout.block_number)).all()
        assert [(int(r.amount), r.epoch) for r in rows] == [
            (500 * USD, MONTH * 1000),
            (250 * USD, MONTH * 1000 + 1),
        ]
        (view,) = [v for v in policies_view(s) if v["policy_id"] == policy]
        assert view["payout"] == str(750 * USD)
        assert view["payout_tx"] == rows[-1].tx_hash
    # Polling again applies nothing twice.
    ChainListener(sessions, chain.w3, chain.deployment, confirmations=0).poll()
    with sessions() as s:
        assert len(s.scalars(select(Payout).where(Payout.policy_id == policy)).all()) == 2


def test_migration_0010_keeps_existing_payouts_with_their_event(database_url: str) -> None:
    migrate.upgrade(database_url, "0009")
    engine = make_engine(database_url)
    tx1, tx2 = "0x" + "11" * 32, "0x" + "22" * 32
    with engine.begin() as c:
        # Two policies paid in one transaction (inline paging), a third with no recorded event.
        for policy, tx, log_index in ((1, tx1, 3), (2, tx1, 5)):
            c.execute(
                sa.text(
                    "INSERT INTO chain_events (block_number, block_hash, tx_hash, log_index, contract, name,"
                    " args) VALUES (7, :bh, :tx, :li, 'DroughtInsurancePool', 'PayoutSent', :args)"
                ),
                {
                    "bh": "0x" + "aa" * 32,
                    "tx": tx,
                    "li": log_index,
                    "args": f'{{"policyId": {policy}, "amount": 5, "epoch": 24286001}}',
                },
            )
        for policy, tx in ((1, tx1), (2, tx1), (3, tx2)):
            c.execute(
                sa.text(
                    "INSERT INTO payouts (pool, policy_id, insured, amount, tx_hash, block_number)"
                    " VALUES ('0xpool', :p, '0xinsured', '5', :tx, 7)"
                ),
                {"p": policy, "tx": tx},
            )
    migrate.upgrade(database_url)
    sessions = session_factory(engine)
    with sessions() as s:
        got = {r.policy_id: (r.log_index, r.epoch) for r in s.scalars(select(Payout))}
    assert got[1] == (3, 24286001)
    assert got[2] == (5, 24286001)
    assert got[3][1] == 0
    assert got[3][0] < 0  # no event on record: a log index no real event has
    # Back down to 0009 and up again: one row per policy survives the downgrade, as before.
    command.downgrade(migrate.alembic_config(database_url), "0009")
    migrate.upgrade(database_url)
    with sessions() as s:
        assert sorted(r.policy_id for r in s.scalars(select(Payout))) == [1, 2, 3]
    engine.dispose()
