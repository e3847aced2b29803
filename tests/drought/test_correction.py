"""A correction, end to end (issue 12, the review's corrections finding): late data for a month that was
already reported and paid makes the oracle sign a revision of that month (epoch + 1), after the next
month was reported too; the router accepts it and the pool pays the policy the difference, once, and never
claws back a revision that comes out lower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.observations import ingest_raster
from oracle.decisions.drought import evaluate_drought
from oracle.reports import subject_id
from tests.chain.pool_kit import create_policy
from tests.drought.world import PERIOD, SHAPE, TRANSFORM, build
from tests.fixtures.chain import ChainKit, make_report
from tests.fixtures.rasters import geotiff_bytes
from tests.verify.test_verify import post_and_settle
from tests.verify.test_watch import node_context

pytestmark = pytest.mark.chain

DAY = 86_400
EXIT = 5_000_000
LIMIT = 1_000 * 10**6


def _paid(chain: ChainKit, policy: int) -> list[tuple[int, int]]:
    logs = chain.pool.events.PayoutSent().get_logs(
        from_block=chain.deployment.block, argument_filters={"policyId": policy}
    )
    return [(int(e["args"]["amount"]), int(e["args"]["epoch"])) for e in logs]


def _late_soil_moisture(sessions: object, blobs: object, tmp: Path, value: float) -> None:
    """A June 2026 soil-moisture file received after the others (the last one received is used)."""
    data = geotiff_bytes(
        np.full(SHAPE, value, dtype=np.float32),
        transform=TRANSFORM,
        tmp_dir=tmp,
        scale=1.0,
        units="m3 m-3",
        time="2026-06-15T00:00:00Z",
        nodata=-9999,
    )
    out = ingest_raster(sessions, blobs, data, variable="soil_moisture", name=f"sm-2026-{value}")  # type: ignore[arg-type]
    assert out.accepted, out.message


def test_late_data_signs_a_revision_that_tops_up_a_paid_policy_once(chain: ChainKit, tmp_path: Path) -> None:
    ctx = node_context(tmp_path / "data")
    try:
        build(ctx.sessions, ctx.blobs, tmp_path)
        # The June soil-moisture file reported first says the soil was normal for June.
        _late_soil_moisture(ctx.sessions, ctx.blobs, tmp_path, 0.27)
        first = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
        assert first.report is not None
        june = first.report
        # A policy paying linearly from severity 0 to 5 (limit 1,000): the value is the payout's share.
        policy = create_policy(
            chain,
            region=june.subject,
            start=june.observed_at - 100 * DAY,
            end=june.observed_at + 100 * DAY,
            trigger=0,
            exit=EXIT,
            limit=LIMIT,
        )
        post_and_settle(chain, ctx.sessions, first)
        assert _paid(chain, policy) == [(LIMIT * june.value // EXIT, june.epoch)]
        # July is reported before June's correction exists (a report for the next month, any value).
        july = make_report(june.subject, kind=june.kind, value=0, epoch=june.epoch + 1000)
        chain.submit(july)
        # Late data: a reprocessed file says June's soil was far drier. The oracle re-evaluates June and
        # signs revision 1 of June; the router takes it after July, and the pool pays the difference.
        _late_soil_moisture(ctx.sessions, ctx.blobs, tmp_path, 0.06)
        second = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
        assert second.report is not None
        assert second.report.epoch == june.epoch + 1
        assert second.report.value > june.value
        post_and_settle(chain, ctx.sessions, second)
        top_up = LIMIT * second.report.value // EXIT - LIMIT * june.value // EXIT
        assert _paid(chain, policy) == [
            (LIMIT * june.value // EXIT, june.epoch),
            (top_up, second.report.epoch),
        ]
        # A later revision that comes out lower (another reprocessing, soil near normal) claws nothing back.
        _late_soil_moisture(ctx.sessions, ctx.blobs, tmp_path, 0.26)
        third = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
        assert third.report is not None
        assert third.report.epoch == june.epoch + 2
        assert third.report.value < second.report.value
        post_and_settle(chain, ctx.sessions, third)
        assert len(_paid(chain, policy)) == 2
        held = chain.pool.functions.observation(subject_id("region", "dry"), june.epoch // 1000).call()
        assert (held[1], held[2]) == (2, third.report.value)  # the pool holds the latest revision
    finally:
        ctx.close()
