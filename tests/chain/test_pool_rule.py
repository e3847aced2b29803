"""The pool's per-period rule (deductible, top-up, limit cap) equals ``models.payout.period_due``: random
products are bought on a real anvil, two revisions of one month are reported, and each payout is
compared with the Python rule (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.payout import period_due
from oracle.reports import subject_id
from tests.chain.pool_kit import START, USD, paid, severity
from tests.fixtures.chain import ChainKit

pytestmark = pytest.mark.chain

_regions = itertools.count()


@st.composite
def terms(draw: st.DrawFn) -> tuple[int, int, int, int]:
    trigger = draw(st.integers(min_value=0, max_value=3_000_000))
    exit_ = trigger + draw(st.integers(min_value=1, max_value=2_000_000))
    limit = draw(st.integers(min_value=1, max_value=1_000 * USD))
    deductible = draw(st.integers(min_value=0, max_value=limit - 1))
    return trigger, exit_, limit, deductible


VALUE = st.integers(min_value=0, max_value=5_000_000)


def test_period_due_refuses_impossible_books() -> None:
    with pytest.raises(ValueError, match="deductible"):
        period_due(value=1, trigger=0, exit=2, limit=5, deductible=5, period_paid=0, policy_paid=0)
    with pytest.raises(ValueError, match="period_paid"):
        period_due(value=1, trigger=0, exit=2, limit=5, deductible=0, period_paid=3, policy_paid=2)
    # A lower revision never claws back; the limit caps a top-up.
    assert period_due(value=1, trigger=0, exit=2, limit=10, deductible=0, period_paid=8, policy_paid=8) == 0
    assert period_due(value=2, trigger=0, exit=2, limit=10, deductible=1, period_paid=3, policy_paid=7) == 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=terms(), first=VALUE, second=VALUE)
def test_payouts_and_top_ups_equal_the_python_rule(
    chain: ChainKit, t: tuple[int, int, int, int], first: int, second: int
) -> None:
    trigger, exit_, limit, deductible = t
    region = subject_id("region", f"rule-{next(_regions)}")
    product = {
        "termsHash": b"\x01" * 32,
        "region": region,
        "trigger": trigger,
        "exit": exit_,
        "limit": limit,
        "deductible": deductible,
        "coverageStart": START,
        "coverageEnd": chain.now() + 86_400,
        "grace": 0,
        "periodMonths": 1,
        "premium": 0,
        "rateBps": 0,
        "loadingBps": 0,
    }
    receipt = chain.send(chain.pool.functions.registerProduct(product))
    (event,) = chain.events(chain.pool, "ProductRegistered", receipt)
    receipt = chain.send(chain.pool.functions.buyPolicy(event["productId"], chain.accounts.insured.address))
    policy = int(chain.events(chain.pool, "PolicyCreated", receipt)[0]["policyId"])
    rule = {"trigger": trigger, "exit": exit_, "limit": limit, "deductible": deductible}

    got_first = paid(chain, chain.submit(severity(first, revision=1, region=region))).get(policy, 0)
    want_first = period_due(value=first, period_paid=0, policy_paid=0, **rule)
    assert got_first == want_first
    # A second revision of the same month: the top-up (or nothing), never a claw-back.
    got_second = paid(chain, chain.submit(severity(second, revision=2, region=region))).get(policy, 0)
    want_second = period_due(value=second, period_paid=want_first, policy_paid=want_first, **rule)
    assert got_second == want_second
    assert chain.pool.functions.periodPaid(policy, 0).call() == want_first + want_second
