"""Chainlink data-feed compatibility: a contract compiled against Chainlink's own
``AggregatorV3Interface.sol`` (``contracts/src/test/FeedReader.sol`` imports it from
``@chainlink/contracts``) reads the drought severity the oracle evaluated and posted through the outbox."""

from __future__ import annotations

import pytest

from oracle.chain.artifacts import load_artifact
from oracle.chain.deploy import feed_name
from oracle.chain.outbox import OutboxPoster
from oracle.context import Context
from oracle.decisions.drought import evaluate_drought
from oracle.decisions.post import post_decision
from oracle.reports import VALUE_SCALE, subject_id
from tests.drought.world import PERIOD
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import local_signers

pytestmark = pytest.mark.chain


def test_feed_reader_sees_the_posted_severity(world_ctx: Context, chain: ChainKit) -> None:
    source = open("contracts/src/test/FeedReader.sol").read()  # noqa: SIM115 -- a one-line read
    assert '"@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol"' in source
    interface = {f["name"] for f in load_artifact("AggregatorV3Interface").abi if f.get("type") == "function"}
    assert interface == {"decimals", "description", "version", "getRoundData", "latestRoundData"}

    region = subject_id("region", "dry")
    deployment = chain.add_feed(region, "dry")
    feed = deployment.contract(chain.w3, feed_name(region))
    reader = chain.deploy("FeedReader", feed.address)

    outcome = evaluate_drought(world_ctx.sessions, world_ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.report is not None
    post_decision(
        world_ctx.sessions,
        outcome,
        subject_name="region:dry",
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
    )
    settled = OutboxPoster(world_ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    assert settled.open == 0

    value = outcome.report.value
    round_id, answer, started_at, updated_at, answered_in = feed.functions.latestRoundData().call()
    assert (round_id, answer, answered_in) == (1, value, 1)
    assert started_at == outcome.report.observed_at
    assert updated_at > 0
    severity, reader_round, reader_updated = reader.functions.latestSeverity().call()
    assert severity == value // VALUE_SCALE  # whole severity units, floored
    assert (reader_round, reader_updated) == (1, updated_at)
    assert reader.functions.inDrought(2 * VALUE_SCALE).call() is (value >= 2 * VALUE_SCALE)
    assert reader.functions.inDrought(value).call() is True
    assert reader.functions.inDrought(value + 1).call() is False
