"""The drought decision and ``oracle backfill drought`` with their zonal steps on a LocalCluster of two
workers record the same steps, CIDs, manifests and reports as the single-process path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from distributed import get_task_stream
from sqlalchemy import select
from typer.testing import CliRunner

from oracle.commands.backfill import app
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.decisions.drought import evaluate_drought
from oracle.scale.gridded import DaskZonalSteps
from oracle.storage.decision_tables import Decision, ProvenanceStep

if TYPE_CHECKING:
    from distributed import Client


@pytest.fixture
def copies(world_dir: Path, tmp_path: Path) -> Iterator[tuple[Context, Context]]:
    """Two private copies of the world: one for each path."""
    opened = []
    for name in ("single", "dask"):
        shutil.copytree(world_dir, tmp_path / name)
        opened.append(open_context(Settings(env="dev", data_dir=tmp_path / name, _env_file=None)))  # type: ignore[call-arg]
    yield opened[0], opened[1]
    for ctx in opened:
        ctx.close()


def _zonal_keys(stream: list[dict[str, Any]]) -> list[str]:
    return [str(t["key"]) for t in stream if str(t["key"]).startswith("zonal-step-")]


def test_an_evaluation_with_its_zonal_steps_on_dask_records_the_same_cids(
    cluster: Client, copies: tuple[Context, Context]
) -> None:
    single, dask = copies
    reference = evaluate_drought(single.sessions, single.blobs, region_id="dry", period="2026-06")
    zonal = DaskZonalSteps(cluster)
    with get_task_stream(client=cluster) as stream:
        outcome = evaluate_drought(dask.sessions, dask.blobs, region_id="dry", period="2026-06", zonal=zonal)
    assert reference.status == "complete"
    zonal_steps = [s for s in outcome.steps if s.name == "zonal_mean"]
    assert len(zonal_steps) > 100  # ten years of monthly rain and six Junes of three layers
    assert zonal.computed == len(zonal_steps)
    assert len(set(_zonal_keys(stream.data))) == zonal.computed  # every one ran on a worker
    assert outcome.steps == reference.steps  # names, inputs, output CIDs and parameters, in order
    assert outcome.manifest_cid == reference.manifest_cid
    assert outcome.report == reference.report


def _backfill(ctx: Context, scheduler: str) -> tuple[int, str]:
    env = {
        "ORACLE_DATA_DIR": str(ctx.settings.data_dir),
        "ORACLE_DATABASE_URL": "",
        "ORACLE_DASK_SCHEDULER": scheduler,
    }
    result = CliRunner().invoke(app, ["drought", "--from", "2026-05", "--to", "2026-06"], env=env)
    return result.exit_code, result.stdout


def _recorded(ctx: Context) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    with ctx.sessions() as s:
        decisions = [
            (d.period, d.subject_name, d.status, d.reason, d.value, d.inputs_root, d.model_id, d.manifest_cid)
            for d in s.scalars(select(Decision).where(Decision.kind == "drought"))
        ]
        steps = [(p.name, p.output_cid) for p in s.scalars(select(ProvenanceStep))]
    return sorted(decisions), sorted(steps)


def test_backfill_on_a_dask_scheduler_records_what_the_single_process_run_records(
    cluster: Client, copies: tuple[Context, Context]
) -> None:
    single, dask = copies
    code, single_out = _backfill(single, "off")
    assert code == 0, single_out
    with get_task_stream(client=cluster) as stream:
        code, dask_out = _backfill(dask, str(cluster.scheduler.address))  # type: ignore[union-attr]
    assert code == 0, dask_out
    assert dask_out == single_out
    assert dask_out.strip().splitlines()[-1] == "2 complete, 2 incomplete, 0 failed"
    # The two periods share most rasters: each (raster, region) pair was computed once, on a worker.
    keys = _zonal_keys(stream.data)
    assert len(keys) == len(set(keys)) > 100
    decisions, steps = _recorded(dask)
    assert (decisions, steps) == _recorded(single)
    assert sum(1 for d in decisions if d[2] == "complete") == 2
    assert sum(1 for name, _ in steps if name == "zonal_mean") > 100
