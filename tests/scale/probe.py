"""Digests of the Dask path's results on a LocalCluster of two workers, as one JSON line.

Run as ``python -m tests.scale.probe`` in a fresh interpreter whose environment sets e.g.
``NPY_DISABLE_CPU_FEATURES``: its two workers are threads of that interpreter, so they compute under its
numpy settings. ``test_gridded.py`` compares the digests with its own single-process ones.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import xarray as xr

from ingest.zonal import ZonalWeights
from oracle.scale.cluster import local_client
from oracle.scale.gridded import spi_grid, zonal_means_stack
from tests.scale.grids import GRID, rain_cube, rain_stack, regions

SPI_ARGS: dict[str, Any] = {"scale": 3, "calibration": (1991, 2010), "start_year": 1991}


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def zonal_inputs() -> tuple[xr.DataArray, ZonalWeights]:
    stack = xr.DataArray(rain_stack(40, seed=5), dims=("time", "y", "x"))
    return stack, ZonalWeights.build(regions(), GRID)


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
    print(json.dumps({"zonal": zonal, "spi": spi, "numba_cpu": numba.config.CPU_NAME}))


if __name__ == "__main__":
    main()
