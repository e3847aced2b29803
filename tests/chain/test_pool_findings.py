"""The review's findings on DroughtInsurancePool (issue 12 item 3), each reproduced on a real anvil.

Every test here failed against the pool before the fix (see the commit message for the failures)."""

from __future__ import annotations

import time

import pytest
from web3.contract import Contract

from oracle.chain.client import broadcast, sign_call, wait_receipt
from oracle.errors import RevertError
from oracle.reports import MAX_REVISIONS, month_index_of, subject_id
from tests.chain.pool_kit import END, MONTH, REGION, START, USD, create_policy, paid, severity
from tests.fixtures.chain import ChainKit

pytestmark = pytest.mark.chain

OTHER = subject_id("region", "test-pool-other")


@pytest.fixture
def freezable(chain: ChainKit) -> tuple[Contract, Contract]:
    """A pool on the test router paying in FreezableToken (transfers to a frozen address revert)."""
    token = chain.deploy("FreezableToken")
    pool = chain.deploy("DroughtInsurancePool", chain.router.address, token.address)
    chain.approve_consumers(pool.address)
    return pool, token


def create_many(chain: ChainKit, n: int) -> list[int]:
    """``n`` policies on REGION (limit 1 tUSD, trigger 1.0 + i ppm, exit 4.0), signed with consecutive
    nonces and sent without waiting for each receipt; returns their ids in order."""
    owner, insured = chain.accounts.deployer, chain.accounts.insured.address
    first = int(chain.pool.functions.policyCount().call()) + 1
    nonce = chain.w3.eth.get_transaction_count(owner.address, "pending")
    hashes = []
    for i in range(n):
        call = chain.pool.functions.createPolicy(insured, REGION, START, END, 1_000_000 + i, 4_000_000, USD)
        signed = sign_call(chain.w3, call, sender=owner, nonce=nonce + i, gas=400_000)
        hashes.append(broadcast(chain.w3, signed.raw))
    for h in hashes:
        assert wait_receipt(chain.w3, h)["status"] == 1
    return list(range(first, first + n))


def test_close_waits_out_the_grace_period_so_the_last_report_still_pays(chain: ChainKit) -> None:
    """Finding 1: the last period's report is evaluated after coverageEnd; closing must wait for it."""
    now = chain.now()
    end = now + 10
    policy = create_policy(chain, start=now - 40 * 86_400, end=end)
    grace = int(chain.pool.functions.DEFAULT_GRACE().call())
    chain.advance_time(20)  # coverage is over, the last month's report is not in yet
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.closeExpired(policy))
    assert e.value.reason == "NotClosable"
    # The late report for the coverage's last month arrives and pays in full.
    receipt = chain.submit(severity(5_000_000, month=month_index_of(end), revision=0, observed_at=end))
    assert paid(chain, receipt) == {policy: 1_000 * USD}
    chain.advance_time(grace)
    receipt = chain.send(chain.pool.functions.closeExpired(policy))
    assert chain.events(chain.pool, "PolicyClosed", receipt) == [{"policyId": policy}]
    assert chain.pool.functions.totalExposure().call() == 0


def test_a_correction_after_the_next_month_is_accepted_and_tops_up_but_never_claws_back(
    chain: ChainKit,
) -> None:
    """Finding 2: revisions are per (region, month). A correction of month M after M+1 was posted, and
    M's first report after M+1's, are accepted; a higher revision tops the period up, a lower one keeps
    what was paid."""
    insured = chain.accounts.insured.address
    policy = create_policy(chain, start=END - 120 * 86_400, end=END)
    m = MONTH
    before = chain.balance(insured)
    assert paid(chain, chain.submit(severity(2_500_000, month=m - 1, revision=0))) == {policy: 250 * USD}
    assert paid(chain, chain.submit(severity(1_000_000, month=m, revision=0))) == {}
    # The late correction of m - 1: accepted, the difference paid.
    assert paid(chain, chain.submit(severity(3_000_000, month=m - 1, revision=1))) == {policy: 250 * USD}
    # A lower revision of m - 1: accepted, nothing taken back, nothing paid.
    assert paid(chain, chain.submit(severity(2_200_000, month=m - 1, revision=2))) == {}
    assert chain.balance(insured) - before == 500 * USD
    assert chain.pool.functions.periodPaid(policy, m - 1).call() == 500 * USD
    # Month m - 2 is first reported after m: accepted too, and pays its own period.
    assert paid(chain, chain.submit(severity(4_000_000, month=m - 2, revision=0))) == {policy: 500 * USD}
    # The router still holds month m as latest, and refuses anything not above a month's newest revision.
    assert chain.router.functions.latest(REGION).call()[0] == m * MAX_REVISIONS
    assert chain.router.functions.correctionEpoch(REGION, m - 1).call() == (m - 1) * MAX_REVISIONS + 2
    for month, revision in ((m - 1, 1), (m - 1, 2), (m - 2, 0)):
        with pytest.raises(RevertError) as e:
            chain.submit(severity(5_000_000, month=month, revision=revision))
        assert e.value.reason == "StaleEpoch"
    assert chain.balance(insured) - before == 1_000 * USD


def test_an_owed_claim_is_not_overtaken_by_later_payouts(chain: ChainKit) -> None:
    """Finding 3: a payout owed to A must stay in the pool while B is paid. On the old pool A was owed for
    lack of funds, fresh funds came in, B's report spent them and A's claimOwed reverted. Now a policy is
    written only against free capital, and owed payouts are reserved."""
    owner = chain.accounts.deployer
    pool_balance = chain.balance(chain.pool.address)
    chain.send(chain.pool.functions.withdraw(owner.address, pool_balance - 1_000 * USD))
    a = create_policy(chain, limit=1_000 * USD)
    # B's limit is not covered: A's limit holds every token the pool has.
    with pytest.raises(RevertError) as e:
        create_policy(chain, region=OTHER, limit=1_000 * USD)
    assert e.value.reason == "InsufficientCapital"
    chain.send(chain.coin.functions.mint(chain.pool.address, 500 * USD))
    with pytest.raises(RevertError) as e:
        create_policy(chain, region=OTHER, limit=1_000 * USD)
    assert e.value.reason == "InsufficientCapital"
    b = create_policy(chain, region=OTHER, limit=500 * USD)
    chain.submit(severity(5_000_000, region=OTHER))
    # A's report: paid in full even though B was paid first.
    assert paid(chain, chain.submit(severity(5_000_000))) == {a: 1_000 * USD}
    assert chain.pool.functions.policy(b).call()[4] == 500 * USD


def test_an_owed_payout_is_reserved_until_claimed(
    chain: ChainKit, freezable: tuple[Contract, Contract]
) -> None:
    """Finding 3, owed half: a payout whose transfer fails is owed and reserved; later payouts, new
    policies and withdrawals cannot use it, and claimOwed pays it once the insured can receive."""
    pool, token = freezable
    insured, other = chain.accounts.insured.address, chain.accounts.buyer.address
    chain.send(token.functions.mint(pool.address, 1_500 * USD))
    a = create_policy(chain, pool=pool, limit=1_000 * USD)
    b = create_policy(chain, pool=pool, region=OTHER, limit=500 * USD, insured=other)
    chain.send(token.functions.setFrozen(insured, True))
    receipt = chain.submit(severity(5_000_000))
    assert [(e["policyId"], e["amount"]) for e in chain.events(pool, "PayoutFailed", receipt)] == [
        (a, 1_000 * USD)
    ]
    assert pool.functions.totalOwed().call() == 1_000 * USD
    receipt = chain.submit(severity(5_000_000, region=OTHER))
    assert [(e["policyId"], e["amount"]) for e in chain.events(pool, "PayoutSent", receipt)] == [
        (b, 500 * USD)
    ]
    with pytest.raises(RevertError) as e:
        chain.send(pool.functions.withdraw(chain.accounts.deployer.address, 1))
    assert e.value.reason == "WouldUnderfundOwed"
    with pytest.raises(RevertError) as e:
        create_policy(chain, pool=pool, region=OTHER, limit=1)
    assert e.value.reason == "InsufficientCapital"
    chain.send(token.functions.setFrozen(insured, False))
    chain.send(pool.functions.claimOwed(a), chain.accounts.stranger)
    assert token.functions.balanceOf(insured).call() == 1_000 * USD
    assert pool.functions.totalOwed().call() == 0
    with pytest.raises(RevertError) as e:
        chain.send(pool.functions.claimOwed(a))
    assert e.value.reason == "NotOwed"


def test_a_region_of_1000_policies_settles_every_one_and_reports_the_gas(chain: ChainKit) -> None:
    """Finding 4: a region's policy count is not bounded by the subscriber gas. The report pays what its
    gas allows and records the region's value; pages (and single claims) pay the rest, none lost."""
    n = 1_000
    started = time.monotonic()
    ids = create_many(chain, n)
    created_s = time.monotonic() - started
    assert chain.pool.functions.regionPolicyCount(REGION).call() == n
    receipt = chain.submit(severity(3_000_000, month=0, revision=1))
    assert chain.events(chain.router, "SubscriberFailed", receipt) == []
    in_report = paid(chain, receipt)
    report_gas = int(receipt["gasUsed"])
    assert 0 < len(in_report) < n
    # One policy claimed on its own, then pages of 100 until none remain.
    loose = ids[-1]
    claim = chain.send(chain.pool.functions.claim(loose, 0), chain.accounts.stranger)
    claim_gas = int(claim["gasUsed"])
    settled = {**in_report, **paid(chain, claim)}
    page_gas = []
    while True:
        left = chain.pool.functions.settle(REGION, 0, 100).call()
        receipt = chain.send(chain.pool.functions.settle(REGION, 0, 100), chain.accounts.stranger)
        page = paid(chain, receipt)
        assert not set(page) & set(settled), "a policy paid twice"
        settled.update(page)
        if page:
            page_gas.append((len(page), int(receipt["gasUsed"])))
        if left == 0:
            break
    expected = {
        pid: USD * (3_000_000 - (1_000_000 + i)) // (4_000_000 - (1_000_000 + i)) for i, pid in enumerate(ids)
    }
    assert settled == expected
    assert chain.pool.functions.settle(REGION, 0, 100).call() == 0
    per_policy = max(g / k for k, g in page_gas)
    gases = [g for _, g in page_gas]
    total = report_gas + claim_gas + sum(gases)
    print(
        f"\n1,000 policies in one region (created in {created_s:.0f} s): report tx {report_gas:,} gas "
        f"paying {len(in_report)} policies in onReport; claim of one policy {claim_gas:,} gas; "
        f"{len(gases)} settle pages of up to 100: {min(gases):,}..{max(gases):,} gas, "
        f"at most {per_policy:,.0f} gas per policy; total {total:,}"
    )


def test_a_removed_subscription_is_restored_and_the_missed_report_recovered(chain: ChainKit) -> None:
    """Finding 5: after the router's owner removed the pool from a region, the pool's own bookkeeping said
    'subscribed' for ever. Now a new policy (or anyone's resubscribe) subscribes it again and sync
    records a report it missed meanwhile."""
    first = create_policy(chain)
    chain.send(chain.router.functions.removeSubscriber(REGION, chain.pool.address))
    # A report while unsubscribed: the pool does not hear it ...
    assert paid(chain, chain.submit(severity(5_000_000, revision=1))) == {}
    second = create_policy(chain)
    assert chain.router.functions.subscribers(REGION).call() == [chain.pool.address]
    # ... but can record it from the router, then pay both policies.
    chain.send(chain.pool.functions.sync(REGION), chain.accounts.stranger)
    receipt = chain.send(chain.pool.functions.settle(REGION, 0, 10), chain.accounts.stranger)
    assert paid(chain, receipt) == {first: 1_000 * USD, second: 1_000 * USD}
    # Removed again: anyone may resubscribe the pool, and the next report reaches it.
    chain.send(chain.router.functions.removeSubscriber(REGION, chain.pool.address))
    chain.send(chain.pool.functions.resubscribe(REGION), chain.accounts.stranger)
    assert chain.router.functions.subscribers(REGION).call() == [chain.pool.address]
    third = create_policy(chain)
    assert paid(chain, chain.submit(severity(5_000_000, revision=2))) == {third: 1_000 * USD}
