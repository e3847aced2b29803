"""Digests of the Dask path's results on a LocalCluster of two workers, as one JSON line.

Run as ``python -m tests.scale.probe`` in a fresh interpreter whose environment sets e.g.
``NPY_DISABLE_CPU_FEATURES``: its two workers are threads of that interpreter, so they compute under its
numpy settings. ``test_gridded.py`` compares the digests with its own single-process ones.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ingest.raster import RasterGrid, read_raster
from ingest.zonal import ZonalWeights
from oracle.scale.cluster import local_client
from oracle.scale.gridded import spi_grid, zonal_means_stack
from tests.fixtures.rasters import write_geotiff
from tests.scale.grids import GRID, TRANSFORM, rain_cube, rain_stack, regions

SPI_ARGS: dict[str, Any] = {"scale": 3, "calibration": (1991, 2010), "start_year": 1991}


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def zonal_inputs() -> tuple[xr.DataArray, ZonalWeights]:
    stack = xr.DataArray(rain_stack(40, seed=5), dims=("time", "y", "x"))
    return stack, ZonalWeights.build(regions(), GRID)


def packed_rasters(workdir: Path) -> list[RasterGrid]:
    """Four days of rain written as CHIRPS-like packed GeoTIFFs (int16 counts of 0.1 mm, nodata -9999)
    and read back: rasters whose zonal means are read from their counts."""
    stack = rain_stack(4, seed=8)
    rasters = []
    for day, rain in enumerate(stack):
        counts = np.where(np.isnan(rain), -9999, np.round(rain * 10.0)).astype(np.int16)
        path = write_geotiff(
            workdir / f"d{day}.tif", counts, transform=TRANSFORM, nodata=-9999, scale=0.1, units="mm"
        )
        rasters.append(read_raster(path.read_bytes(), variable="precip"))
    return rasters


def packed_means_digest(*, from_counts: bool) -> str:
    """The digest of :func:`packed_rasters`' zonal means, read from their counts or from their values."""
    weights = ZonalWeights.build(regions(), GRID)
    with tempfile.TemporaryDirectory() as workdir:
        rasters = packed_rasters(Path(workdir))
        assert all(r.packed is not None for r in rasters)
        assert weights.order is not None  # else raster_means would take the float64 path too
        means = [weights.raster_means(r) if from_counts else weights.means(r.values) for r in rasters]
        assert all(r.values_made != from_counts for r in rasters)  # read from the counts, or not
    return digest(*(a for pair in means for a in pair))


def spi_input() -> xr.DataArray:
    return xr.DataArray(rain_cube(360, 40, 30, seed=6), dims=("time", "y", "x"))


def main() -> None:
    stack, weights = zonal_inputs()
    cube = spi_input()
    with local_client(2, processes=False) as client:  # two workers, threads of this interpreter
        client.wait_for_workers(2, timeout=60)
        zonal = digest(*zonal_means_stack(stack, weights, client=client))
        spi = digest(spi_grid(cube, client=client, block_rows=7, **SPI_ARGS).values)
    import numba

    # what the compiled loops were built for: NUMBA_CPU_NAME, or None for this host's CPU
    packed = packed_means_digest(from_counts=True)
    print(json.dumps({"zonal": zonal, "spi": spi, "packed": packed, "numba_cpu": numba.config.CPU_NAME}))


if __name__ == "__main__":
    main()
