"""Which scheduler gridded work uses: none until a large evaluation needs one, the named one then, never
with ``off``; an unreachable scheduler is a configuration error naming the variable."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from distributed import get_task_stream
from sqlalchemy import select

from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.decisions.drought import evaluate_drought
from oracle.errors import ConfigError
from oracle.scale import cluster as scale_cluster
from oracle.scale import gridded
from oracle.storage.tables import Observation

if TYPE_CHECKING:
    from distributed import Client


@pytest.fixture
def world(world_dir: Path, tmp_path: Path) -> Iterator[Context]:
    shutil.copytree(world_dir, tmp_path / "data")
    ctx = open_context(Settings(env="dev", data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]
    yield ctx
    ctx.close()


@pytest.fixture
def no_shared_client() -> Iterator[None]:
    scale_cluster.close_shared()
    yield
    scale_cluster.close_shared()


def _settings(scheduler: str) -> Settings:
    return Settings(env="dev", dask_scheduler=scheduler, _env_file=None)  # type: ignore[call-arg]


def test_a_small_evaluation_starts_no_cluster(world: Context, no_shared_client: None) -> None:
    with world.sessions() as s:
        rasters = s.scalars(select(Observation.cid).where(Observation.kind == "raster")).all()
    jobs = [(cid, {}) for cid in rasters]
    assert len(jobs) > 100
    assert gridded.zonal_steps_for(world.blobs, jobs) is gridded.local_zonal_steps
    assert scale_cluster._shared is None  # `oracle run` pays nothing for Dask until work is large


def test_a_large_evaluation_runs_its_zonal_steps_on_the_scheduler(
    cluster: Client, world: Context, no_shared_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gridded, "LARGE_EVALUATION_BYTES", 1)  # the world's rasters are a few kB each
    address = str(cluster.scheduler.address)  # type: ignore[union-attr]
    shared = scale_cluster.shared_client(_settings(address))
    assert shared is not None
    assert shared.scheduler.address == address  # type: ignore[union-attr]
    with get_task_stream(client=cluster) as stream:
        outcome = evaluate_drought(world.sessions, world.blobs, region_id="wet", period="2026-06")
    assert outcome.status == "complete"
    ran = [t for t in stream.data if str(t["key"]).startswith("zonal-step-")]
    assert len(ran) == sum(1 for s in outcome.steps if s.name == "zonal_mean") > 100


def test_off_keeps_gridded_work_in_this_process(
    no_shared_client: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gridded, "LARGE_EVALUATION_BYTES", 0)
    assert scale_cluster.shared_client(_settings("off")) is None
    monkeypatch.setenv("ORACLE_DASK_SCHEDULER", "off")
    assert gridded.zonal_steps_for(object(), []) is gridded.local_zonal_steps  # type: ignore[arg-type]


def test_an_unreachable_scheduler_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    monkeypatch.setattr(scale_cluster, "CONNECT_TIMEOUT_S", 2.0)
    with pytest.raises(
        ConfigError, match=f"ORACLE_DASK_SCHEDULER: no Dask scheduler answers at tcp://127.0.0.1:{port}"
    ):
        scale_cluster.client_for(_settings(f"tcp://127.0.0.1:{port}"))


def test_local_workers_keep_raster_sized_arrays_on_the_heap(cluster: Client) -> None:
    """distributed's default MALLOC_TRIM_THRESHOLD_=65536 would pin glibc's mmap threshold at 128 KiB,
    so every day's raster would be a fresh mmap faulted in page by page: the local workers start with
    the thresholds of WORKER_MALLOC_ENV instead."""
    assert scale_cluster.WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"] >= 32 << 20  # a 1500x1600 float64 day
    for name, value in scale_cluster.WORKER_MALLOC_ENV.items():
        seen = cluster.run(os.environ.get, name)
        assert len(seen) == 2
        assert set(seen.values()) == {str(value)}
