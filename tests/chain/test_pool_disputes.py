"""Liveness windows and disputes on DroughtInsurancePool (issue 14 items 1 and 4), on a real anvil.

A product with a liveness window W pays a report only W seconds after it arrived; a report pending
for some product of its region can be disputed with a bond, which freezes it. The network's
replacement revision upholds the dispute (bond back plus a reward); otherwise it is rejected after the
answer window (bond to the pool) and the frozen report pays. The gas of each step is printed (-s)."""

from __future__ import annotations

import pytest

from oracle.errors import RevertError
from tests.chain.dispute_kit import (
    ANSWER,
    BOND,
    LIVENESS,
    REWARD,
    dispute_terms,
    file_dispute,
    fund_watcher,
    policy_with_window,
)
from tests.chain.pool_kit import MONTH, REGION, USD, create_policy, paid, severity
from tests.fixtures.chain import ChainKit

pytestmark = pytest.mark.chain

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_a_wrong_report_is_frozen_and_the_replacement_upholds_the_dispute(chain: ChainKit) -> None:
    watcher, insured = chain.accounts.stranger, chain.accounts.insured.address
    dispute_terms(chain)
    fund_watcher(chain, watcher.address)
    policy = policy_with_window(chain)
    pool_before = chain.balance(chain.pool.address)
    # A wrong report (severity 5.0 pays the whole limit): nothing pays at once.
    wrong = severity(5_000_000, month=MONTH, revision=0)
    assert paid(chain, chain.submit(wrong)) == {}
    assert chain.pool.functions.due(policy, MONTH).call() == 0
    receipt = file_dispute(chain, watcher, REGION, wrong.epoch, CID)
    (filed,) = chain.events(chain.pool, "DisputeFiled", receipt)
    assert (filed["evidenceCid"], filed["bond"], filed["watcher"]) == (CID, BOND, watcher.address)
    print(f"\ngas dispute (approve not included): {receipt['gasUsed']}")
    bonds = chain.pool.functions.bonds().call()
    assert chain.balance(bonds) == BOND == chain.pool.functions.openBonds().call()
    assert chain.pool.functions.frozen(REGION, MONTH).call()
    # Frozen: the window passes, still nothing pays, by settle, claim or the resolver.
    chain.advance_time(LIVENESS + 1)
    assert chain.pool.functions.due(policy, MONTH).call() == 0
    assert paid(chain, chain.send(chain.pool.functions.settle(REGION, MONTH, 10))) == {}
    assert paid(chain, chain.send(chain.pool.functions.claim(policy, MONTH))) == {}
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.resolveDispute(REGION, wrong.epoch))
    assert e.value.reason == "DisputeUnanswered"
    # The network replaces the report (revision 1, the right value 2.5): the dispute is upheld.
    right = severity(2_500_000, month=MONTH, revision=1)
    assert paid(chain, chain.submit(right)) == {}  # the replacement waits out its own window
    assert not chain.pool.functions.frozen(REGION, MONTH).call()
    before = chain.balance(watcher.address)
    receipt = chain.send(chain.pool.functions.resolveDispute(REGION, wrong.epoch), chain.accounts.relayer)
    print(f"gas resolveDispute, upheld: {receipt['gasUsed']}")
    (upheld,) = chain.events(chain.pool, "DisputeUpheld", receipt)
    assert (upheld["bond"], upheld["reward"]) == (BOND, REWARD)
    assert chain.balance(watcher.address) - before == BOND + REWARD
    assert chain.balance(bonds) == 0 == chain.pool.functions.openBonds().call()
    assert chain.pool.functions.disputeOf(REGION, wrong.epoch).call()[2] == 2  # Upheld
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.resolveDispute(REGION, wrong.epoch))
    assert e.value.reason == "NoOpenDispute"
    # The replacement pays after its window: 250 of the limit, never the wrong report's 1,000.
    chain.advance_time(LIVENESS + 1)
    assert paid(chain, chain.send(chain.pool.functions.settle(REGION, MONTH, 10))) == {policy: 250 * USD}
    assert chain.pool.functions.policy(policy).call()[4] == 250 * USD
    assert chain.balance(insured) >= 250 * USD
    assert pool_before - chain.balance(chain.pool.address) == 250 * USD + REWARD


def test_a_dispute_of_an_honest_report_is_rejected_and_the_bond_goes_to_the_pool(chain: ChainKit) -> None:
    watcher = chain.accounts.stranger
    dispute_terms(chain)
    fund_watcher(chain, watcher.address)
    slow = policy_with_window(chain)
    fast = create_policy(chain, trigger=1_000_000)  # window 0: pays at once, as before
    honest = severity(3_000_000, month=MONTH, revision=0)
    assert paid(chain, chain.submit(honest)) == {fast: 666_666_666}
    file_dispute(chain, watcher, REGION, honest.epoch, CID)
    pool_before = chain.balance(chain.pool.address)
    chain.advance_time(ANSWER - 5)
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.resolveDispute(REGION, honest.epoch))
    assert e.value.reason == "DisputeUnanswered"
    assert chain.pool.functions.due(slow, MONTH).call() == 0  # its window is over, but it is frozen
    chain.advance_time(10)
    receipt = chain.send(chain.pool.functions.resolveDispute(REGION, honest.epoch), chain.accounts.relayer)
    print(f"\ngas resolveDispute, rejected (pays 1 policy): {receipt['gasUsed']}")
    (rejected,) = chain.events(chain.pool, "DisputeRejected", receipt)
    assert (rejected["bond"], rejected["watcher"]) == (BOND, watcher.address)
    # The bond is the pool's; the frozen report pays in the same transaction.
    assert paid(chain, receipt) == {slow: 500 * USD}
    assert chain.balance(chain.pool.address) - pool_before == BOND - 500 * USD
    assert chain.balance(watcher.address) == 0
    assert chain.balance(chain.pool.functions.bonds().call()) == 0
    assert chain.pool.functions.disputeOf(REGION, honest.epoch).call()[2] == 3  # Rejected


def test_what_can_be_disputed(chain: ChainKit) -> None:
    """Only the revision the pool holds, only within its region's window, once, and only with
    disputes on (a bond set); a region whose products have no window pays at once and cannot be
    disputed."""
    watcher = chain.accounts.stranger
    fund_watcher(chain, watcher.address, 3 * BOND)
    policy_with_window(chain)
    first = severity(2_000_000, month=MONTH, revision=0)
    chain.submit(first)

    def refused(epoch: int) -> str:
        with pytest.raises(RevertError) as e:
            file_dispute(chain, watcher, REGION, epoch, CID)
        return str(e.value.reason)

    assert refused(first.epoch) == "DisputesOff"
    dispute_terms(chain)
    assert refused(first.epoch + 1) == "NotDisputable"  # a revision the pool does not hold
    file_dispute(chain, watcher, REGION, first.epoch, CID)
    assert refused(first.epoch) == "NotDisputable"  # already disputed
    second = severity(2_000_000, month=MONTH + 1, revision=0, observed_at=chain.now())
    chain.submit(second)
    chain.advance_time(LIVENESS)
    assert refused(second.epoch) == "NotDisputable"  # its window is over
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.setLiveness(1, 31 * 86_400))
    assert e.value.reason == "BadTerms"
