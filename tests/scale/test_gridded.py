"""Zonal means and gridded SPI on a LocalCluster of two workers give the single-process bits, on this CPU
and with numpy's SIMD extensions turned off in a fresh interpreter (workers included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import xarray as xr

from ingest.raster import read_raster
from ingest.zonal import ZonalWeights
from models.drought.spi import spi_cube
from oracle.scale.gridded import read_stack, spi_grid, zonal_means_stack
from tests.fixtures.rasters import write_geotiff
from tests.scale.grids import GRID, TRANSFORM, rain_cube, rain_stack, regions
from tests.scale.probe import SPI_ARGS, digest, packed_means_digest, spi_input, zonal_inputs

if TYPE_CHECKING:
    from distributed import Client

ROOT = Path(__file__).resolve().parents[2]
REDUCED_SIMD = "AVX512_ICL X86_V4 X86_V3"


def assert_same_bits(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    assert ours.dtype == reference.dtype
    assert ours.tobytes() == reference.tobytes()


@pytest.mark.parametrize("days_per_chunk", [None, 1, 7, 40])
def test_zonal_means_of_a_chunked_stack_equal_the_single_process_bits(
    cluster: Client, days_per_chunk: int | None
) -> None:
    stack = xr.DataArray(rain_stack(40, seed=1), dims=("time", "y", "x"))
    if days_per_chunk is not None:  # None: an in-memory stack, sent in pieces
        stack = stack.chunk({"time": days_per_chunk})
    weights = ZonalWeights.build(regions(), GRID)
    means, fraction = zonal_means_stack(stack, weights, client=cluster)
    ref_means, ref_fraction = weights.means_stack(stack.values)
    assert means.shape == (7, 40)
    assert np.isnan(means[4]).all()  # region "e" covers only nodata: NaN, never 0
    assert np.all(fraction[4] == 0.0)
    assert_same_bits(means, ref_means)
    assert_same_bits(fraction, ref_fraction)


def test_files_read_on_the_workers_give_the_single_process_means(cluster: Client, tmp_path: Path) -> None:
    stack = rain_stack(6, seed=2)
    paths = [
        write_geotiff(
            tmp_path / f"rain_{d}.tif",
            np.where(np.isnan(stack[d]), -9999.0, stack[d]).astype(np.float32),
            transform=TRANSFORM,
            nodata=-9999,
            units="mm",
            time=f"2024-01-{d + 1:02d}T00:00:00Z",
        )
        for d in range(6)
    ]
    lazy = read_stack(paths, variable="precip", times=range(6), grid_shape=GRID.shape)
    weights = ZonalWeights.build(regions(), GRID)
    means, fraction = zonal_means_stack(lazy, weights, client=cluster)
    one_by_one = np.stack([read_raster(p.read_bytes(), variable="precip").values for p in paths])
    ref_means, ref_fraction = weights.means_stack(one_by_one)
    assert not np.isnan(ref_means[0]).all()
    assert_same_bits(means, ref_means)
    assert_same_bits(fraction, ref_fraction)


@pytest.mark.parametrize(("block_rows", "lazy"), [(1, False), (4, False), (16, False), (3, True)])
def test_gridded_spi_on_the_cluster_equals_spi_cube_bit_for_bit(
    cluster: Client, block_rows: int, lazy: bool
) -> None:
    cube = xr.DataArray(rain_cube(360, 16, 9, seed=3), dims=("time", "y", "x"))
    if lazy:  # a Dask-backed cube, chunked otherwise: rechunked to row blocks
        cube = cube.chunk({"time": 100, "y": 5})
    args = {"scale": 3, "calibration": (1991, 2010), "start_year": 1991}
    ours = spi_grid(cube, client=cluster, block_rows=block_rows, **args)  # type: ignore[arg-type]
    reference = spi_cube(cube.values, **args)  # type: ignore[arg-type]
    assert ours.dims == ("time", "y", "x")
    assert np.isfinite(reference[24:]).mean() > 0.9  # mostly defined: the comparison is not of NaNs
    assert_same_bits(ours.values, reference)


@pytest.mark.parametrize("target", ["numpy-simd-off", "numba-generic-cpu"])
def test_the_dask_path_gives_the_same_bits_with_simd_turned_off(target: str, tmp_path: Path) -> None:
    """A fresh interpreter with SIMD turned off runs the Dask path on a LocalCluster of its own (two
    worker threads under its settings): its digests are this process's, single-process.

    ``numpy-simd-off``: numpy's dispatched SIMD extensions off (the SPI check fails if a SIMD-dispatched
    numpy log is used in the gamma fit). ``numba-generic-cpu``: the compiled loops (``ingest._kernels``)
    compiled afresh, into an empty cache, for the baseline x86-64 instead of this CPU (no AVX), so the
    loops' bits do not depend on the instructions LLVM picks for the host. ``packed``: the zonal means of
    packed int16 GeoTIFFs, read there from their counts, here from their float64 values."""
    stack, weights = zonal_inputs()
    native = {
        "zonal": digest(*weights.means_stack(stack.values)),
        "spi": digest(spi_cube(spi_input().values, **SPI_ARGS)),
        "packed": packed_means_digest(from_counts=False),  # here from the float64 values
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NPY_DISABLE", "NUMBA_"))}
    if target == "numpy-simd-off":
        env["NPY_DISABLE_CPU_FEATURES"] = REDUCED_SIMD
    else:
        env["NUMBA_CPU_NAME"] = "generic"
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")
    done = subprocess.run(
        [sys.executable, "-m", "tests.scale.probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probed = json.loads(done.stdout.strip().splitlines()[-1])
    assert probed.pop("numba_cpu") == ("generic" if target == "numba-generic-cpu" else None)
    assert probed == native
