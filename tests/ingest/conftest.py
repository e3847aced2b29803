"""Small real grids shared by the ingest tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from affine import Affine

NOW = np.datetime64("2025-01-01T00:00:00")

# A 0.05° grid over part of Kenya, 40 rows × 60 columns (CHIRPS resolution).
WEST, NORTH, RES = 36.0, 1.0, 0.05
ROWS, COLS = 40, 60


@pytest.fixture
def grid_transform() -> Affine:
    return Affine(RES, 0.0, WEST, 0.0, -RES, NORTH)


@pytest.fixture
def ndvi_raw() -> npt.NDArray[np.int16]:
    """MODIS-like NDVI counts (× 0.0001), with a block of fill (−3000) in the top-left corner."""
    rng = np.random.default_rng(7)
    raw = rng.integers(500, 9000, size=(ROWS, COLS)).astype(np.int16)
    raw[:3, :4] = -3000
    return raw


def cell_centres() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(lat descending, lon ascending) centres of the test grid."""
    lat = NORTH - RES / 2 - RES * np.arange(ROWS)
    lon = WEST + RES / 2 + RES * np.arange(COLS)
    return lat, lon
