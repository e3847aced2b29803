"""The settlement keeper (oracle.chain.keeper) on a real anvil: a report held by a liveness window is paid
by the keeper once the window is over, through the node's outbox, exactly once; a frozen report is not;
a dispute left unanswered is resolved (then the report pays); a held escrow verdict is finalized after its
window; a node later in line waits its turn."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from oracle.chain.keeper import SettlementKeeper
from oracle.chain.listener import ChainListener
from oracle.chain.outbox import OutboxPoster
from oracle.reports import ReportKind, Verdict, subject_id
from oracle.storage.tables import OutboxRow
from tests.chain.dispute_kit import (
    ANSWER,
    LIVENESS,
    dispute_terms,
    file_dispute,
    fund_watcher,
    policy_with_window,
)
from tests.chain.escrow_window_kit import LIVENESS as ESCROW_LIVENESS
from tests.chain.escrow_window_kit import VOIDED, open_with_window, status
from tests.chain.pool_kit import MONTH, USD, severity
from tests.fixtures.chain import ChainKit, buyer_shipment, make_report
from tests.outbox.helpers import open_db, sqlite_url

pytestmark = pytest.mark.chain

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def _payouts(chain: ChainKit, policy: int) -> list[int]:
    logs = chain.pool.events.PayoutSent().get_logs(
        from_block=chain.deployment.block, argument_filters={"policyId": policy}
    )
    return [int(e["args"]["amount"]) for e in logs]


def _outbox_rows(sessions: object) -> int:
    with sessions() as s:  # type: ignore[operator]
        return int(s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.purpose == "settle")))


def test_the_keeper_pays_a_held_report_once_its_window_is_over_and_never_a_frozen_one(
    chain: ChainKit, tmp_path: Path
) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    held, disputed = subject_id("region", "keeper-held"), subject_id("region", "keeper-disputed")
    dispute_terms(chain)
    fund_watcher(chain, chain.accounts.stranger.address)
    policy = policy_with_window(chain, region=held)  # pays 500 at severity 3.0 (trigger 2, exit 4)
    other = policy_with_window(chain, region=disputed)
    ChainListener(sessions, chain.w3, chain.deployment, confirmations=0).poll()  # projects the policies
    keeper = SettlementKeeper(sessions, chain.w3, chain.pool, from_block=chain.deployment.block)
    report = severity(3_000_000, month=MONTH, revision=0, region=held)
    chain.submit(report)
    wrong = severity(5_000_000, month=MONTH, revision=0, region=disputed)
    chain.submit(wrong)
    # Inside the window nothing is due: the keeper queues nothing.
    assert keeper.tick() == []
    assert _outbox_rows(sessions) == 0
    # The wrong report is disputed and frozen.
    file_dispute(chain, chain.accounts.stranger, disputed, wrong.epoch, CID)
    chain.advance_time(LIVENESS + 1)
    # After the window: one settle for the held report, none for the frozen one; a second tick (or a
    # restarted keeper that reads the events again) queues no second transaction.
    (key,) = keeper.tick()
    assert key.split(":")[2:5] == ["0x" + held.hex(), str(MONTH), "0"]
    again = SettlementKeeper(sessions, chain.w3, chain.pool, from_block=chain.deployment.block)
    assert keeper.tick() == [key] == again.tick()
    assert _outbox_rows(sessions) == 1
    OutboxPoster(sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    assert _payouts(chain, policy) == [500 * USD]
    assert _payouts(chain, other) == []
    # Paid: nothing is due any more, so nothing more is queued, and the keeper stops asking about it;
    # the frozen report it keeps watching.
    assert keeper.tick() == []
    assert _outbox_rows(sessions) == 1
    assert ("0x" + held.hex(), MONTH) not in keeper.held
    assert ("0x" + disputed.hex(), MONTH) in keeper.held


def test_a_node_later_in_line_waits_for_its_turn(chain: ChainKit, tmp_path: Path) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    region = subject_id("region", "keeper-rank")
    policy_with_window(chain, region=region)
    ChainListener(sessions, chain.w3, chain.deployment, confirmations=0).poll()
    now = [0.0]
    second = SettlementKeeper(
        sessions,
        chain.w3,
        chain.pool,
        from_block=chain.deployment.block,
        rank=1,
        stagger_s=30.0,
        clock=lambda: now[0],
    )
    chain.submit(severity(3_000_000, month=MONTH, revision=0, region=region))
    chain.advance_time(LIVENESS + 1)
    assert second.tick() == []  # due from now on, but node 0 goes first
    now[0] = 29.0
    assert second.tick() == []
    now[0] = 31.0
    assert len(second.tick()) == 1  # node 0 did not settle within its turn: this node does


def test_the_keeper_resolves_a_dispute_the_network_left_unanswered_then_pays(
    chain: ChainKit, tmp_path: Path
) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    region = subject_id("region", "keeper-unanswered")
    dispute_terms(chain)
    fund_watcher(chain, chain.accounts.stranger.address)
    policy = policy_with_window(chain, region=region)
    ChainListener(sessions, chain.w3, chain.deployment, confirmations=0).poll()
    keeper = SettlementKeeper(sessions, chain.w3, chain.pool, from_block=chain.deployment.block)
    honest = severity(3_000_000, month=MONTH, revision=0, region=region)
    chain.submit(honest)
    file_dispute(chain, chain.accounts.stranger, region, honest.epoch, CID)
    chain.advance_time(LIVENESS + 1)
    assert keeper.tick() == []  # frozen, and the answer window is still open: nothing would pass
    chain.advance_time(ANSWER)
    # Unanswered: the keeper rejects the dispute (its simulation passes), which releases the report.
    (key,) = keeper.tick()
    assert key == f"resolve:{chain.pool.address.lower()}:0x{region.hex()}:{honest.epoch}"
    poster = OutboxPoster(sessions, chain.w3, chain.accounts.relayer)
    poster.run_until_settled(timeout=60)
    rejected = chain.pool.events.DisputeRejected().get_logs(from_block=chain.deployment.block)
    assert [int(e["args"]["epoch"]) for e in rejected if e["args"]["subject"] == region] == [honest.epoch]
    # The rejection released the honest report, and the pool paid it (500, once) in the same call: the
    # keeper finds nothing more due.
    assert _payouts(chain, policy) == [500 * USD]
    assert keeper.tick() == []
    assert keeper.disputes == set()


def test_the_keeper_finalizes_a_held_escrow_verdict_after_its_window(chain: ChainKit, tmp_path: Path) -> None:
    sessions = open_db(sqlite_url(tmp_path))
    name = buyer_shipment("keeper-finalize")
    shipment = subject_id("shipment", name)
    open_with_window(chain, name)
    keeper = SettlementKeeper(
        sessions, chain.w3, chain.pool, from_block=chain.deployment.block, escrow=chain.escrow
    )
    chain.submit(make_report(shipment, kind=ReportKind.COLDCHAIN_VERDICT, value=int(Verdict.BREACH), epoch=1))
    assert keeper.tick() == []  # held inside its window
    chain.advance_time(ESCROW_LIVENESS + 1)
    (key,) = keeper.tick()
    assert key == f"finalize:{chain.escrow.address.lower()}:0x{shipment.hex()}:1"
    OutboxPoster(sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    assert status(chain, shipment) == VOIDED
    assert keeper.tick() == []  # settled: the keeper forgets it
    assert keeper.verdicts == {}
