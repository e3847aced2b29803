"""The policy lifecycle on DroughtInsurancePool (issue 12 item 2), on a real anvil: the insurer registers a
product (terms hash, trigger / exit / limit / deductible, coverage, grace, period grid, premium or rate +
loading), a policyholder buys a policy paying the premium in the pool's token, the pool refuses a policy
its capital cannot cover, pays per period (seasonal grids pay a season's worst month once), and the
insurer withdraws only what open policies and owed claims do not need."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_utils.crypto import keccak

from models.payout import drought_payout
from oracle.errors import RevertError
from oracle.reports import month_index_of
from tests.chain.pool_kit import REGION, USD, paid, severity
from tests.fixtures.chain import ChainKit

pytestmark = pytest.mark.chain

TERMS = {"name": "test maize drought cover", "index": "drought_severity", "trigger": 2.0, "exit": 4.0}
TERMS_HASH = keccak(json.dumps(TERMS, sort_keys=True, separators=(",", ":")).encode())


def terms(chain: ChainKit, **over: Any) -> dict[str, Any]:
    now = chain.now()
    t: dict[str, Any] = {
        "termsHash": TERMS_HASH,
        "region": REGION,
        "trigger": 2_000_000,
        "exit": 4_000_000,
        "limit": 1_000 * USD,
        "deductible": 0,
        "coverageStart": now - 200 * 86_400,
        "coverageEnd": now + 86_400,
        "grace": 30 * 86_400,
        "periodMonths": 1,
        "premium": 0,
        "rateBps": 500,
        "loadingBps": 2_000,
    }
    t.update(over)
    return t


def register(chain: ChainKit, **over: Any) -> int:
    receipt = chain.send(chain.pool.functions.registerProduct(terms(chain, **over)))
    (event,) = chain.events(chain.pool, "ProductRegistered", receipt)
    return int(event["productId"])


def buy(chain: ChainKit, product: int, *, approve: int | None = None) -> tuple[int, Any]:
    buyer = chain.accounts.buyer
    premium = chain.pool.functions.product(product).call()[8]
    chain.send(chain.coin.functions.mint(buyer.address, premium))
    chain.send(
        chain.coin.functions.approve(chain.pool.address, premium if approve is None else approve), buyer
    )
    receipt = chain.send(chain.pool.functions.buyPolicy(product, buyer.address), buyer)
    (event,) = chain.events(chain.pool, "PolicyCreated", receipt)
    return int(event["policyId"]), receipt


def month_report(chain: ChainKit, value: int, months_ago: int, revision: int = 0) -> Any:
    now = chain.now()
    return chain.submit(
        severity(value, month=month_index_of(now) - months_ago, revision=revision, observed_at=now - 86_400)
    )


def test_a_policyholder_buys_a_policy_paying_the_loaded_premium_and_is_paid_by_its_terms(
    chain: ChainKit,
) -> None:
    buyer = chain.accounts.buyer.address
    product = register(chain, deductible=50 * USD)
    # Premium = limit x rate x (1 + loading) = 1000 x 5% x 1.2 = 60.
    assert chain.pool.functions.product(product).call()[8] == 60 * USD
    pool_before = chain.balance(chain.pool.address)
    policy, receipt = buy(chain, product)
    assert chain.events(chain.pool, "PolicyTerms", receipt) == [
        {"policyId": policy, "productId": product, "termsHash": TERMS_HASH, "premium": 60 * USD}
    ]
    assert chain.balance(chain.pool.address) - pool_before == 60 * USD
    assert chain.balance(buyer) == 0
    # Value 3.0: 500 by the payout rule, less the 50 deductible.
    receipt = month_report(chain, 3_000_000, months_ago=1)
    expected = (
        drought_payout(value=3_000_000, trigger=2_000_000, exit=4_000_000, limit=1_000 * USD) - 50 * USD
    )
    assert paid(chain, receipt) == {policy: expected} == {policy: 450 * USD}
    assert chain.balance(buyer) == 450 * USD
    # Another month pays again, up to what is left of the limit: 950 - 450 = 550 at most ... capped at 550.
    receipt = month_report(chain, 5_000_000, months_ago=2)
    assert paid(chain, receipt) == {policy: 550 * USD}
    assert chain.pool.functions.policy(policy).call()[4] == 1_000 * USD
    assert paid(chain, month_report(chain, 5_000_000, months_ago=3)) == {}


def test_a_seasonal_grid_pays_a_seasons_worst_month_once(chain: ChainKit) -> None:
    product = register(chain, periodMonths=3, premium=7 * USD)
    assert chain.pool.functions.product(product).call()[8] == 7 * USD
    policy, _ = buy(chain, product)
    month = month_index_of(chain.now()) - 1
    season_start = month - month % 3
    now = chain.now()

    def report(m: int, value: int) -> Any:
        return chain.submit(severity(value, month=m, revision=0, observed_at=now - 86_400))

    months = [season_start - 3, season_start - 2, season_start - 1]  # one whole season
    assert paid(chain, report(months[0], 2_500_000)) == {policy: 250 * USD}
    assert paid(chain, report(months[1], 2_200_000)) == {}  # milder: the season has paid more already
    assert paid(chain, report(months[2], 3_000_000)) == {policy: 250 * USD}  # worse: the difference
    assert chain.pool.functions.periodPaid(policy, months[0] // 3).call() == 500 * USD


def test_the_pool_refuses_a_policy_its_capital_cannot_cover(chain: ChainKit) -> None:
    owner = chain.accounts.deployer.address
    product = register(chain, premium=10 * USD, limit=1_000 * USD)
    chain.send(chain.pool.functions.withdraw(owner, chain.pool.functions.freeCapital().call() - 1_975 * USD))
    first, _ = buy(chain, product)  # free 1,975 + 10 premium covers 1,000
    assert chain.pool.functions.freeCapital().call() == 985 * USD
    with pytest.raises(RevertError) as e:
        buy(chain, product)  # 985 + 10 premium < 1,000
    assert e.value.reason == "InsufficientCapital"
    chain.send(chain.coin.functions.mint(chain.pool.address, 5 * USD))
    second, _ = buy(chain, product)
    assert chain.pool.functions.freeCapital().call() == 0
    assert chain.pool.functions.reserved().call() == 2_000 * USD == chain.balance(chain.pool.address)
    assert second == first + 1
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.withdraw(owner, 1))
    assert e.value.reason == "WouldUnderfundOwed"


def test_sales_rules_and_bad_products_are_refused(chain: ChainKit) -> None:
    product = register(chain)
    with pytest.raises(RevertError) as e:
        buy(chain, product, approve=0)
    assert "insufficient allowance" in str(e.value)
    chain.send(chain.pool.functions.setOnSale(product, False))
    with pytest.raises(RevertError) as e:
        buy(chain, product)
    assert e.value.reason == "NotOnSale"
    with pytest.raises(RevertError) as e:
        buy(chain, 999)
    assert e.value.reason == "UnknownProduct"
    ended = register(chain, coverageStart=chain.now() - 100, coverageEnd=chain.now() - 10)
    with pytest.raises(RevertError, match="coverage has ended"):
        buy(chain, ended)
    for bad, why in [
        ({"termsHash": bytes(32)}, "terms hash is zero"),
        ({"deductible": 1_000 * USD}, "deductible must be below limit"),
        ({"periodMonths": 0}, "periodMonths must be 1..12"),
        ({"rateBps": 10_001}, "rate above 100%"),
        ({"grace": 400 * 86_400}, "grace too long"),
    ]:
        with pytest.raises(RevertError, match=why):
            register(chain, **bad)
    with pytest.raises(RevertError, match="Ownable"):
        chain.send(chain.pool.functions.registerProduct(terms(chain)), chain.accounts.stranger)


def test_closing_settles_every_month_then_frees_the_unused_limit(chain: ChainKit) -> None:
    product = register(chain, grace=10 * 86_400)
    policy, _ = buy(chain, product)
    now = chain.now()
    # A report the pool records but whose paging did not reach the policy: claimed at close.
    chain.send(chain.router.functions.removeSubscriber(REGION, chain.pool.address))
    month_report(chain, 3_000_000, months_ago=1)
    chain.send(chain.pool.functions.sync(REGION))
    assert chain.pool.functions.due(policy, month_index_of(now) - 1).call() == 500 * USD
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.closeExpired(policy))
    assert e.value.reason == "NotClosable"
    chain.advance_time(86_400 + 10 * 86_400 + 1)
    before = chain.balance(chain.accounts.buyer.address)
    receipt = chain.send(chain.pool.functions.closeExpired(policy))
    assert paid(chain, receipt) == {policy: 500 * USD}
    assert chain.balance(chain.accounts.buyer.address) - before == 500 * USD
    assert chain.pool.functions.reserved().call() == 0
    assert chain.pool.functions.policy(policy).call()[1] == 2  # Status.Closed
    with pytest.raises(RevertError) as e:
        chain.send(chain.pool.functions.closeExpired(policy))
    assert e.value.reason == "NotClosable"


def test_the_demo_policyholders_buy_the_demo_product_and_are_paid_by_its_terms(chain: ChainKit) -> None:
    """What `make run` does: each demo region's policyholder buys the insurer's product (600 tUSD premium
    on a 10,000 tUSD limit); a severity report then pays as the product's terms say."""
    from oracle.chain.anvil import dev_accounts
    from oracle.devstack.demo import REGIONS, demo_product_terms, open_policies_and_escrows
    from oracle.reports import subject_id

    before = chain.pool.functions.policyCount().call()
    open_policies_and_escrows(chain.w3, chain.deployment)
    assert chain.pool.functions.policyCount().call() == before + len(REGIONS)
    region = next(iter(REGIONS))
    holder = dev_accounts(3)[2].address
    policy = before + 1
    product = chain.pool.functions.product(chain.pool.functions.policy(policy).call()[2]).call()
    # The terms hash is the demo terms' canonical JSON, dates included (coverageStart = now - 400 days).
    assert product[0] == demo_product_terms(region, product[4] + 400 * 86_400)["termsHash"]
    assert product[8] == 600 * USD  # premium: 10,000 x 5 % x 1.2
    start = chain.balance(holder)
    now = chain.now()
    report = severity(
        2_500_000,
        month=month_index_of(now) - 1,
        revision=0,
        observed_at=now - 86_400,
        region=subject_id("region", region),
    )
    receipt = chain.submit(report)
    expected = drought_payout(value=2_500_000, trigger=1_000_000, exit=4_000_000, limit=10_000 * USD)
    assert paid(chain, receipt) == {policy: expected} == {policy: 5_000 * USD}
    assert chain.balance(holder) - start == 5_000 * USD
