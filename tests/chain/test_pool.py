"""DroughtInsurancePool on a real anvil: automatic payouts, once per policy, underfunding, and the payout
rule checked against ``models.payout`` with hypothesis."""

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
from oracle.reports import Report, ReportKind, subject_id
from tests.fixtures.chain import Accounts, ChainKit, make_report

pytestmark = pytest.mark.chain

REGION = subject_id("region", "test-pool")
START, END = 1_690_000_000, 1_700_000_000
USD = 10**6


def create_policy(
    chain: ChainKit,
    *,
    trigger: int = 2_000_000,
    exit: int = 4_000_000,
    limit: int = 1_000 * USD,
    insured: str | None = None,
    region: bytes = REGION,
) -> int:
    call = chain.pool.functions.createPolicy(
        insured or chain.accounts.insured.address, region, START, END, trigger, exit, limit
    )
    receipt = chain.send(call)
    (event,) = chain.events(chain.pool, "PolicyCreated", receipt)
    return int(event["policyId"])


def severity(epoch: int, value: int, observed_at: int = END - 86_400) -> Report:
    return make_report(
        REGION, kind=ReportKind.DROUGHT_SEVERITY, value=value, epoch=epoch, observed_at=observed_at
    )


def test_report_pays_the_insured_automatically_and_only_once(chain: ChainKit) -> None:
    insured = chain.accounts.insured.address
    before = chain.balance(insured)
    policy = create_policy(chain)
    assert chain.router.functions.subscribers(REGION).call() == [chain.pool.address]
    receipt = chain.submit(severity(1, 3_000_000))
    paid = chain.events(chain.pool, "PayoutSent", receipt)
    assert paid == [{"policyId": policy, "insured": insured, "amount": 500 * USD, "epoch": 1}]
    assert chain.balance(insured) - before == 500 * USD
    # A worse report in the same period pays nothing more: the policy's one period is settled.
    receipt = chain.submit(severity(2, 5_000_000))
    assert chain.events(chain.pool, "PayoutSent", receipt) == []
    assert chain.balance(insured) - before == 500 * USD
    assert chain.pool.functions.policy(policy).call()[2] == 2  # Status.Paid


def test_reports_below_trigger_or_outside_coverage_pay_nothing(chain: ChainKit) -> None:
    insured = chain.accounts.insured.address
    before = chain.balance(insured)
    create_policy(chain)
    for epoch, (value, observed) in enumerate(
        [(2_000_000, END - 10), (5_000_000, START), (5_000_000, END + 1), (5_000_000, START - 1)], start=1
    ):
        receipt = chain.submit(severity(epoch, value, observed))
        assert chain.events(chain.pool, "PayoutSent", receipt) == []
    assert chain.balance(insured) == before
    # The boundary END itself is inside the window (start, end].
    receipt = chain.submit(severity(5, 5_000_000, END))
    assert chain.events(chain.pool, "PayoutSent", receipt)[0]["amount"] == 1_000 * USD


def test_many_policies_in_one_region_each_get_their_own_payout(chain: ChainKit) -> None:
    terms = [
        (1_000_000, 3_000_000, 300 * USD),
        (2_500_000, 5_000_000, 1_000 * USD),
        (3_500_000, 4_000_000, 7 * USD),
    ]
    ids = [create_policy(chain, trigger=t, exit=x, limit=lim) for t, x, lim in terms]
    receipt = chain.submit(severity(1, 2_750_000))
    paid = {e["policyId"]: e["amount"] for e in chain.events(chain.pool, "PayoutSent", receipt)}
    expected = {
        pid: drought_payout(value=2_750_000, trigger=t, exit=x, limit=lim)
        for pid, (t, x, lim) in zip(ids, terms, strict=True)
    }
    assert paid == {pid: amount for pid, amount in expected.items() if amount}
    assert paid == {ids[0]: 262_500_000, ids[1]: 100_000_000}
    assert chain.pool.functions.activePolicies(REGION).call() == [ids[2]]


def test_policy_limit_per_region_is_enforced(chain: ChainKit) -> None:
    cap = chain.pool.functions.MAX_POLICIES_PER_REGION().call()
    for _ in range(cap):
        create_policy(chain, limit=USD)
    with pytest.raises(RevertError) as e:
        create_policy(chain, limit=USD)
    assert e.value.reason == "TooManyPolicies"
    receipt = chain.submit(severity(1, 5_000_000))
    assert len(chain.events(chain.pool, "PayoutSent", receipt)) == cap


def test_bad_policy_terms_are_refused(chain: ChainKit) -> None:
    with pytest.raises(RevertError, match=re.escape("BadTerms('need 0 <= trigger < exit',)")):
        create_policy(chain, trigger=3_000_000, exit=3_000_000)
    with pytest.raises(RevertError, match="Ownable"):
        chain.send(
            chain.pool.functions.createPolicy(chain.accounts.stranger.address, REGION, START, END, 1, 2, 3),
            chain.accounts.stranger,
        )


def test_underfunded_pool_records_the_debt_and_never_pays_twice(chain: ChainKit) -> None:
    owner, insured = chain.accounts.deployer, chain.accounts.insured.address
    balance = chain.balance(chain.pool.address)
    chain.send(chain.pool.functions.withdraw(owner.address, balance - 100 * USD))
    policy = create_policy(chain, limit=1_000 * USD)
    other_region = subject_id("region", "test-pool-other")
    recorder = chain.subscriber("RecordingSubscriber", REGION)

    receipt = chain.submit(severity(1, 5_000_000))
    assert chain.events(chain.pool, "PayoutFailed", receipt) == [
        {"policyId": policy, "insured": insured, "amount": 1_000 * USD, "epoch": 1}
    ]
    assert chain.events(chain.router, "SubscriberFailed", receipt) == []
    assert recorder.functions.calls().call() == 1
    assert chain.pool.functions.policy(policy).call()[2] == 3  # Status.Owed
    assert chain.pool.functions.totalOwed().call() == 1_000 * USD
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.claimOwed(policy))
    assert e.value.reason == "ERC20: transfer amount exceeds balance"
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.withdraw(owner.address, 1))
    assert e.value.reason == "WouldUnderfundOwed"

    chain.send(chain.coin.functions.mint(chain.pool.address, 10_000 * USD))
    before = chain.balance(insured)
    receipt = chain.send(chain.pool.functions.claimOwed(policy), chain.accounts.stranger)
    assert chain.events(chain.pool, "PayoutSent", receipt)[0]["amount"] == 1_000 * USD
    assert chain.balance(insured) - before == 1_000 * USD
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.claimOwed(policy))
    assert e.value.reason == "NotOwed"
    receipt = chain.submit(severity(2, 5_000_000))
    assert chain.events(chain.pool, "PayoutSent", receipt) == []
    assert chain.balance(insured) - before == 1_000 * USD
    assert chain.router.functions.subscribers(other_region).call() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2_000_001, 500), (2_345_678, 172_839_000), (3_999_999, 999_999_500), (4_000_000, 1_000_000_000)],
)
def test_end_to_end_payout_matches_the_python_rule(chain: ChainKit, value: int, expected: int) -> None:
    create_policy(chain)
    receipt = chain.submit(severity(1, value))
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
