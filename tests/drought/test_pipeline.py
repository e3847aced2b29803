"""Drought end to end: real GeoTIFFs → content store → zonal means → indices → LightGBM → signed report
→ outbox → router → the pool pays the insured of the region in drought, and only them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.observations import ingest_raster
from models.payout import drought_payout
from oracle.chain.outbox import OutboxPoster
from oracle.decisions.drought import DroughtTerms, evaluate_drought
from oracle.decisions.post import post_decision
from oracle.errors import ValidationError
from oracle.reports import subject_id, to_fixed
from oracle.storage.blobs import FilesystemBlobStore
from oracle.storage.decision_tables import Decision, ProvenanceStep
from oracle.storage.tables import Reject
from tests.drought.world import PERIOD, build
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import local_signers, open_db, sqlite_url

TRIGGER, EXIT, LIMIT = to_fixed(1.0), to_fixed(4.0), 5_000 * 10**6


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    sessions = open_db(sqlite_url(tmp_path))
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    build(sessions, blobs, tmp_path)
    return sessions, blobs


def test_corrupt_raster_is_quarantined_and_evaluation_still_completes(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sessions, blobs = world
    good = next((tmp_path).glob("r*.tif")).read_bytes()
    truncated = good[: len(good) // 2]
    out = ingest_raster(sessions, blobs, truncated, variable="ndvi", name="ndvi-2026-truncated")
    assert not out.accepted
    assert out.reason == "corrupt_file"
    assert blobs.has(out.cid)  # the refused bytes are kept for the audit trail
    with sessions() as s:
        reject = s.scalar(select(Reject).where(Reject.cid == out.cid))
        assert reject is not None
        assert reject.reason == "corrupt_file"
    dry = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    assert dry.status == "complete"
    assert out.cid not in dry.steps[0].inputs


def test_same_inputs_same_report_bit_for_bit(world) -> None:  # type: ignore[no-untyped-def]
    sessions, blobs = world
    a = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    b = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    assert a.report is not None
    assert a.report == b.report
    assert a.manifest_cid == b.manifest_cid
    assert a.decision_id == b.decision_id
    assert a.report.epoch == (2026 * 12 + 5) * 1000
    assert a.report.subject == subject_id("region", "dry")
    assert [f["feature"] for f in a.factors]
    assert len(a.factors) == 3
    with sessions() as s:
        names = {st.name for st in s.scalars(select(ProvenanceStep))}
        assert {"zonal_mean", "features", "score", "report"} <= names


def test_incomplete_inputs_report_nothing(world) -> None:  # type: ignore[no-untyped-def]
    sessions, blobs = world
    outcome = evaluate_drought(sessions, blobs, region_id="dry", period="2026-07")
    assert outcome.status == "incomplete"
    assert outcome.report is None
    assert "ndvi for 2026-07" in outcome.reason
    assert "monthly precipitation" in outcome.reason
    longer = evaluate_drought(
        sessions, blobs, region_id="dry", period=PERIOD, terms=DroughtTerms(min_precip_months=200)
    )
    assert longer.status == "incomplete"
    with sessions() as s:
        assert {d.status for d in s.scalars(select(Decision))} == {"incomplete"}
    with pytest.raises(ValidationError, match="incomplete"):
        post_decision(
            sessions,
            outcome,
            subject_name="dry",
            signers=[],
            threshold=1,
            chain_id=1,
            router="0x" + "00" * 20,
        )


@pytest.mark.chain
def test_drought_region_is_paid_and_normal_region_is_not(world, chain: ChainKit) -> None:  # type: ignore[no-untyped-def]
    sessions, blobs = world
    insured = {"dry": chain.accounts.insured.address, "wet": chain.accounts.stranger.address}
    before = {r: chain.balance(a) for r, a in insured.items()}
    for region, address in insured.items():
        chain.send(
            chain.pool.functions.createPolicy(
                address, subject_id("region", region), 1_780_000_000, 1_790_000_000, TRIGGER, EXIT, LIMIT
            )
        )
    outcomes = {r: evaluate_drought(sessions, blobs, region_id=r, period=PERIOD) for r in insured}
    assert outcomes["dry"].score is not None
    assert outcomes["dry"].score > 2.0
    assert outcomes["wet"].score is not None
    assert outcomes["wet"].score < 1.0
    for region, outcome in outcomes.items():
        post_decision(
            sessions,
            outcome,
            subject_name=region,
            signers=local_signers(chain.keys),
            threshold=2,
            chain_id=chain.deployment.chain_id,
            router=chain.router.address,
        )
    OutboxPoster(sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    dry_report = outcomes["dry"].report
    assert dry_report is not None
    expected = drought_payout(value=dry_report.value, trigger=TRIGGER, exit=EXIT, limit=LIMIT)
    assert expected > 0
    assert chain.balance(insured["dry"]) - before["dry"] == expected
    assert chain.balance(insured["wet"]) == before["wet"]
    stored = chain.router.functions.latest(subject_id("region", "dry")).call()
    assert dry_report.epoch in list(stored)


def test_old_raster_resent_as_new_is_flagged_and_excluded(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A poisoning attempt: last year's June NDVI re-sent with this June's date. The field repeats an
    earlier date's exactly, so it is excluded as a duplicate and the flag is in the decision log."""
    import rasterio

    sessions, blobs = world
    honest = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    assert not [f for f in honest.flags if f.get("quality") == "duplicate"]
    with sessions() as s:
        from oracle.storage.tables import Observation

        last_year = s.scalars(
            select(Observation).where(Observation.variable == "ndvi", Observation.observed_at < "2026-01-01")
        ).all()[-1]
    source = tmp_path / "old.tif"
    source.write_bytes(blobs.get(last_year.cid))
    with rasterio.open(source, "r+") as ds:
        ds.update_tags(time="2026-06-20T00:00:00Z")
    resent = ingest_raster(sessions, blobs, source.read_bytes(), variable="ndvi", name="ndvi-2026-06-20")
    assert resent.accepted
    poisoned = evaluate_drought(sessions, blobs, region_id="dry", period=PERIOD)
    duplicate = [f for f in poisoned.flags if f.get("quality") == "duplicate"]
    assert [(f["variable"], f["date"]) for f in duplicate] == [("ndvi", "2026-06-20")]
    assert poisoned.report is not None
    assert honest.report is not None
    assert poisoned.report.value == honest.report.value  # the excluded copy changed nothing
    held = evaluate_drought(
        sessions, blobs, region_id="dry", period=PERIOD, terms=DroughtTerms(duplicates="hold")
    )
    assert held.status == "held"
    assert held.report is None
