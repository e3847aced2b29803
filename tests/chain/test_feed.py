"""DroughtIndexFeed as a Chainlink AggregatorV3Interface, read by a consumer that knows only that."""

from __future__ import annotations

import pytest
from web3.contract import Contract

from oracle.chain.client import translate_errors
from oracle.chain.deploy import feed_name
from oracle.errors import RevertError
from oracle.reports import ReportKind, subject_id
from tests.fixtures.chain import ChainKit, make_report

pytestmark = pytest.mark.chain

REGION = subject_id("region", "test-feed")


def feed_and_reader(chain: ChainKit) -> tuple[Contract, Contract]:
    dep = chain.add_feed(REGION, "test feed")
    feed = dep.contract(chain.w3, feed_name(REGION))
    return feed, chain.deploy("FeedReader", feed.address)


def test_feed_metadata_and_no_data_refusal(chain: ChainKit) -> None:
    feed, reader = feed_and_reader(chain)
    assert feed.functions.decimals().call() == 6
    assert feed.functions.description().call() == "test feed"
    assert feed.functions.version().call() == 1
    with pytest.raises(RevertError, match="No data present"), translate_errors("latestRoundData"):
        feed.functions.latestRoundData().call()
    with pytest.raises(RevertError, match="No data present"), translate_errors("reader"):
        reader.functions.latestSeverity().call()


def test_each_report_is_a_round_readable_through_the_chainlink_interface(chain: ChainKit) -> None:
    feed, reader = feed_and_reader(chain)
    values = [1_200_000, 3_700_000]
    for epoch, value in enumerate(values, start=1):
        chain.submit(
            make_report(
                REGION,
                kind=ReportKind.DROUGHT_SEVERITY,
                value=value,
                epoch=epoch,
                observed_at=1_700_000_000 + epoch,
            )
        )
    mined_at = chain.now()
    round_id, answer, started, updated, answered = feed.functions.latestRoundData().call()
    assert (round_id, answer, started, answered) == (2, 3_700_000, 1_700_000_002, 2)
    assert updated == mined_at
    assert feed.functions.getRoundData(1).call()[1] == 1_200_000
    assert reader.functions.latestSeverity().call()[:2] == [3, 2]
    assert reader.functions.inDrought(3_000_000).call() is True
    assert reader.functions.inDrought(4_000_000).call() is False
