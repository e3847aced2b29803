"""DroughtInsurancePool on a real anvil: automatic payouts once per period with top-ups for revisions, the
capital kept for open policies, and the payout rule checked against ``models.payout`` with hypothesis.
The review's findings are in test_pool_findings.py, the product lifecycle in test_pool_lifecycle.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.contract import Contract

from models.payout import INT64_MAX, drought_payout
from oracle.chain.deploy import deploy_contract
from oracle.errors import RevertError
from oracle.reports import month_index_of, subject_id
from tests.chain.pool_kit import END, REGION, START, USD, create_policy, paid, severity
from tests.fixtures.chain import Accounts, ChainKit

pytestmark = pytest.mark.chain

OTHER = subject_id("region", "test-pool-other")


def test_report_pays_the_insured_automatically_once_per_period(chain: ChainKit) -> None:
    insured = chain.accounts.insured.address
    before = chain.balance(insured)
    policy = create_policy(chain)
    assert chain.router.functions.subscribers(REGION).call() == [chain.pool.address]
    receipt = chain.submit(severity(3_000_000, revision=1))
    assert chain.events(chain.pool, "PayoutSent", receipt) == [
        {"policyId": policy, "insured": insured, "amount": 500 * USD, "epoch": 1}
    ]
    assert chain.balance(insured) - before == 500 * USD
    # A worse revision of the same period pays only the difference (a top-up) ...
    receipt = chain.submit(severity(5_000_000, revision=2))
    assert chain.events(chain.pool, "PayoutSent", receipt) == [
        {"policyId": policy, "insured": insured, "amount": 500 * USD, "epoch": 2}
    ]
    # ... and a milder one takes nothing back and pays nothing: the period is settled at its highest.
    receipt = chain.submit(severity(2_500_000, revision=3))
    assert chain.events(chain.pool, "PayoutSent", receipt) == []
    assert chain.balance(insured) - before == 1_000 * USD
    assert chain.pool.functions.policy(policy).call()[4] == 1_000 * USD  # paid
    assert chain.pool.functions.periodPaid(policy, 0).call() == 1_000 * USD
    # Settling the period again, by anyone, pays nothing.
    assert chain.pool.functions.claim(policy, 0).call() == 0


def test_reports_below_trigger_or_outside_coverage_pay_nothing(chain: ChainKit) -> None:
    insured = chain.accounts.insured.address
    before = chain.balance(insured)
    create_policy(chain)
    for revision, (value, observed) in enumerate(
        [(2_000_000, END - 10), (5_000_000, START), (5_000_000, END + 1), (5_000_000, START - 1)], start=1
    ):
        receipt = chain.submit(severity(value, revision=revision, observed_at=observed))
        assert chain.events(chain.pool, "PayoutSent", receipt) == []
    assert chain.balance(insured) == before
    # The boundary END itself is inside the window (start, end].
    receipt = chain.submit(severity(5_000_000, revision=5, observed_at=END))
    assert chain.events(chain.pool, "PayoutSent", receipt)[0]["amount"] == 1_000 * USD


def test_many_policies_in_one_region_each_get_their_own_payout(chain: ChainKit) -> None:
    terms = [
        (1_000_000, 3_000_000, 300 * USD),
        (2_500_000, 5_000_000, 1_000 * USD),
        (3_500_000, 4_000_000, 7 * USD),
    ]
    ids = [create_policy(chain, trigger=t, exit=x, limit=lim) for t, x, lim in terms]
    receipt = chain.submit(severity(2_750_000))
    expected = {
        pid: drought_payout(value=2_750_000, trigger=t, exit=x, limit=lim)
        for pid, (t, x, lim) in zip(ids, terms, strict=True)
    }
    assert paid(chain, receipt) == {pid: amount for pid, amount in expected.items() if amount}
    assert paid(chain, receipt) == {ids[0]: 262_500_000, ids[1]: 100_000_000}
    assert chain.pool.functions.regionPolicies(REGION, 0, 10).call() == ids
    assert chain.pool.functions.observation(REGION, 0).call() == [True, 1, 2_750_000, END - 86_400, 3]


def test_bad_policy_terms_are_refused(chain: ChainKit) -> None:
    with pytest.raises(RevertError, match=re.escape("BadTerms('need 0 <= trigger < exit',)")):
        create_policy(chain, trigger=3_000_000, exit=3_000_000)
    with pytest.raises(RevertError, match=re.escape("BadTerms('coverage too long',)")):
        create_policy(chain, start=START, end=START + 61 * 31 * 86_400)
    with pytest.raises(RevertError, match="Ownable"):
        chain.send(
            chain.pool.functions.createPolicy(chain.accounts.stranger.address, REGION, START, END, 1, 2, 3),
            chain.accounts.stranger,
        )
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.claim(99, 0))
    assert e.value.reason == "UnknownPolicy"


def test_withdraw_keeps_what_open_policies_and_owed_claims_require(chain: ChainKit) -> None:
    owner = chain.accounts.deployer.address
    policy = create_policy(chain, limit=1_000 * USD, start=chain.now() - 86_400, end=chain.now() + 86_400)
    assert chain.pool.functions.reserved().call() == 1_000 * USD
    free = chain.pool.functions.freeCapital().call()
    assert free == chain.balance(chain.pool.address) - 1_000 * USD
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.withdraw(owner, free + 1))
    assert e.value.reason == "WouldUnderfundOwed"
    chain.send(chain.pool.functions.withdraw(owner, free))
    assert chain.balance(chain.pool.address) == 1_000 * USD
    # A partial payout leaves the rest of the limit reserved until the policy closes.
    month = month_index_of(chain.now())
    chain.submit(severity(3_000_000, month=month - 1, revision=0, observed_at=chain.now()))
    assert chain.pool.functions.reserved().call() == 500 * USD == chain.balance(chain.pool.address)
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.withdraw(owner, 1))
    assert e.value.reason == "WouldUnderfundOwed"
    chain.advance_time(2 * 86_400 + int(chain.pool.functions.DEFAULT_GRACE().call()))
    chain.send(chain.pool.functions.closeExpired(policy))
    assert chain.pool.functions.reserved().call() == 0
    chain.send(chain.pool.functions.withdraw(owner, 500 * USD))
    assert chain.balance(chain.pool.address) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2_000_001, 500), (2_345_678, 172_839_000), (3_999_999, 999_999_500), (4_000_000, 1_000_000_000)],
)
def test_end_to_end_payout_matches_the_python_rule(chain: ChainKit, value: int, expected: int) -> None:
    create_policy(chain)
    receipt = chain.submit(severity(value))
    (event,) = chain.events(chain.pool, "PayoutSent", receipt)
    assert (
        event["amount"]
        == expected
        == drought_payout(value=value, trigger=2_000_000, exit=4_000_000, limit=1_000 * USD)
    )


@pytest.fixture(scope="module")
def payout_pool(w3: Web3, accounts: Accounts) -> Contract:
    # payoutFor is pure: any pool will do, so one deploy serves every hypothesis example.
    return deploy_contract(
        w3,
        "DroughtInsurancePool",
        accounts.deployer.address,
        accounts.deployer.address,
        deployer=accounts.deployer,
    )


INT64 = st.integers(min_value=-(2**63), max_value=INT64_MAX)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    trigger=INT64,
    width=st.integers(min_value=1, max_value=2**64 - 1),
    limit=st.integers(min_value=0, max_value=2**128 - 1),
    offset=st.integers(min_value=-(2**65), max_value=2**65),
)
@example(trigger=0, width=1, limit=2**128 - 1, offset=0)
@example(trigger=2_000_000, width=2_000_000, limit=1, offset=1_999_999)
@example(trigger=INT64_MAX - 1, width=1, limit=5, offset=1)
@example(trigger=-5, width=10, limit=10**18, offset=10)  # value == exit
@example(trigger=7, width=3, limit=10**6, offset=2)  # value == exit - 1
@example(trigger=7, width=3, limit=10**6, offset=-(2**65))  # far below the trigger
def test_on_chain_payout_equals_python_reference(
    payout_pool: Contract, trigger: int, width: int, limit: int, offset: int
) -> None:
    exit_ = trigger + width
    if exit_ > INT64_MAX:
        exit_ = INT64_MAX
        if exit_ <= trigger:
            return
    value = trigger + offset
    expected = drought_payout(value=value, trigger=trigger, exit=exit_, limit=limit)
    assert payout_pool.functions.payoutFor(value, trigger, exit_, limit).call() == expected
    assert 0 <= expected <= limit


def test_payout_rule_refuses_inverted_terms(payout_pool: Contract) -> None:
    with pytest.raises(ValueError, match="exit must exceed trigger"):
        drought_payout(value=1, trigger=5, exit=5, limit=10)
    from oracle.chain.client import translate_errors

    with pytest.raises(RevertError, match="exit must exceed trigger"), translate_errors("payoutFor"):
        payout_pool.functions.payoutFor(1, 5, 5, 10).call()
