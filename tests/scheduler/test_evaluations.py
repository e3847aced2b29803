"""Late data re-evaluates decided region-periods (debounced); a drought job posts a complete decision
through the signer and the outbox; STAC polling ingests new assets once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from eth_account import Account
from sqlalchemy import select

from oracle.chain.deploy import Deployment
from oracle.context import Context
from oracle.reports import subject_id
from oracle.scheduler import SchedulerOptions, StacCatalog, on_new_observation, poll_stac, start_scheduler
from oracle.scheduler.jobs import drought_job
from oracle.scheduler.subjects import late_job_id
from oracle.signer.client import LocalSigner
from oracle.storage.tables import Observation, OutboxRow, Subscription
from tests.drought.world import PERIOD, TRANSFORM
from tests.fixtures.rasters import StacItemSpec, geotiff_bytes, write_stac_catalog
from tests.scheduler.conftest import FAST, ROUTER


def _subscribe(ctx: Context, *regions: str) -> None:
    with ctx.sessions() as s:
        for r in regions:
            s.add(Subscription(subject="0x" + subject_id("region", r).hex(), consumer="0x" + "44" * 20))
        s.commit()


def test_late_data_schedules_one_debounced_reevaluation(world: Context) -> None:
    _subscribe(world, "dry")
    handle = start_scheduler(world, SchedulerOptions(**{**FAST.__dict__, "late_data_debounce_s": 3600.0}))
    try:
        assert handle.wait_until_leader(10)
        drought_job(FAST.name, "dry", PERIOD)  # the month-end run recorded a decision
        with world.sessions() as s:
            ndvi = s.scalars(select(Observation).where(Observation.variable == "ndvi")).all()
            june_2026 = next(o for o in ndvi if o.meta["date"].startswith(PERIOD))
            june_2024 = next(o for o in ndvi if o.meta["date"].startswith("2024-06"))
            may_precip = next(
                o
                for o in s.scalars(select(Observation).where(Observation.variable == "precip"))
                if o.meta["date"].startswith("2026-05")
            )
        assert on_new_observation(world, june_2026.id) == [("dry", PERIOD)]
        first = {j.id: j for j in handle.jobs()}[late_job_id("dry", PERIOD)].next_run
        assert on_new_observation(world, june_2024.id) == [("dry", PERIOD)]  # history feeds later Junes
        assert on_new_observation(world, may_precip.id) == [("dry", PERIOD)]  # SPI reaches 36 months on
        late = [j for j in handle.jobs() if j.id.startswith("drought-late:")]
        assert [j.id for j in late] == [late_job_id("dry", PERIOD)]  # one job, not three
        assert first is not None
        assert late[0].next_run is not None
        assert late[0].next_run > first  # each new file pushed it later
        assert late[0].misfire_grace_time is None
        assert on_new_observation(world, 10**9) == []
    finally:
        handle.stop()


def test_late_data_without_a_local_scheduler_writes_the_shared_store(world: Context) -> None:
    _subscribe(world, "wet")
    first = start_scheduler(world, FAST)
    try:
        assert first.wait_until_leader(10)
        drought_job(FAST.name, "wet", PERIOD)
    finally:
        first.stop()
    with world.sessions() as s:
        lst = next(
            o
            for o in s.scalars(select(Observation).where(Observation.variable == "lst"))
            if o.meta["date"].startswith(PERIOD)
        )
    assert "scheduler" not in world.extras  # an ingest process: no scheduler of its own
    assert on_new_observation(world, lst.id) == [("wet", PERIOD)]
    again = start_scheduler(world, FAST)
    try:
        assert late_job_id("wet", PERIOD) in {j.id for j in again.jobs()}
    finally:
        again.stop()


def test_drought_job_posts_a_complete_decision_into_the_outbox(world: Context) -> None:
    key = Account.create()
    world.extras["signers"] = [LocalSigner(bytes(key.key))]
    world.extras["deployment"] = Deployment(
        chain_id=31337, block=0, deployer=key.address, addresses={"OracleRouter": ROUTER}
    )
    handle = start_scheduler(world, FAST)
    try:
        assert handle.wait_until_leader(10)
        assert drought_job(FAST.name, "dry", PERIOD) == "complete"
        assert drought_job(FAST.name, "dry", "2026-05") == "incomplete"
    finally:
        handle.stop()
    with world.sessions() as s:
        rows = s.scalars(select(OutboxRow)).all()
    epoch = (2026 * 12 + 5) * 1000
    assert [r.key for r in rows] == [f"report:0x{subject_id('region', 'dry').hex()}:{epoch}"]
    assert rows[0].to_address.lower() == ROUTER


def test_stac_poll_ingests_new_assets_once(ctx: Context, tmp_path: Path) -> None:
    assert poll_stac(ctx).catalogs == 0  # nothing configured: a no-op
    now = dt.datetime.now(dt.UTC)
    tif = tmp_path / "ndvi.tif"
    values = np.full((20, 20), 5000, dtype=np.int16)
    tif.write_bytes(
        geotiff_bytes(
            values, transform=TRANSFORM, tmp_dir=tmp_path, scale=0.0001, time=now.isoformat(), nodata=-9999
        )
    )
    catalog = write_stac_catalog(
        tmp_path / "stac",
        [StacItemSpec("ndvi-now", "ndvi", now - dt.timedelta(days=1), (36.0, -1.0, 37.0, 0.0), str(tif))],
    )
    ctx.extras["stac_catalogs"] = [StacCatalog(source=str(catalog), variable="ndvi")]
    ctx.settings = ctx.settings.model_copy(update={"stac_file_root": tmp_path})  # local files: only here
    first = poll_stac(ctx)
    assert (first.catalogs, first.found, first.ingested, first.failed) == (1, 1, 1, 0)
    second = poll_stac(ctx)
    assert (second.found, second.ingested, second.known) == (1, 0, 1)
    with ctx.sessions() as s:
        assert len(s.scalars(select(Observation).where(Observation.variable == "ndvi")).all()) == 1
