"""Small synthetic grids for the scale-out tests: rain stacks with nodata, regions, rain cubes."""

from __future__ import annotations

import numpy as np
from affine import Affine
from shapely.geometry import Polygon, box

from ingest.raster import GridSpec
from ingest.regions import Region, parse_regions
from tests.fixtures.rasters import region_feature_collection

TRANSFORM = Affine(0.05, 0.0, 36.0, 0.0, -0.05, 0.0)
SHAPE = (40, 60)
GRID = GridSpec("EPSG:4326", TRANSFORM, SHAPE)


def regions() -> tuple[Region, ...]:
    """Seven regions: boxes, a triangle cutting cells, one half off the grid, one in the nodata strip."""
    shapes = {
        "a": box(36.01, -0.99, 36.73, -0.02),
        "b": box(36.74, -1.51, 37.48, -0.61),
        "c": Polygon([(36.2, -1.9), (37.9, -1.2), (37.1, -0.1)]),
        "d": box(37.5, -1.99, 39.5, -1.0),  # reaches past the eastern edge
        "e": box(38.62, -1.8, 38.98, -0.3),  # over the nodata strip only
        "f": box(36.0, -2.0, 39.0, 0.0),  # the whole grid
        "g": box(36.333, -1.777, 36.351, -1.759),  # smaller than a cell
    }
    return parse_regions(region_feature_collection(shapes))


def rain_stack(days: int, seed: int) -> np.ndarray:
    """Daily rain (mm), (days, 40, 60); an eastern strip of nodata (NaN) and scattered missing cells."""
    rng = np.random.default_rng(seed)
    stack = rng.gamma(0.8, 6.0, (days, *SHAPE))
    stack[rng.random(stack.shape) < 0.4] = 0.0
    stack[:, :, 52:] = np.nan
    stack[rng.random(stack.shape) < 0.02] = np.nan
    return stack


def rain_cube(months: int, rows: int, cols: int, seed: int) -> np.ndarray:
    """Monthly rain (mm), (months, rows, cols), rounded to 0.1 mm; a third of the pixels arid with many
    dry months, a few missing months."""
    rng = np.random.default_rng(seed)
    month = np.arange(months) % 12
    base = rng.uniform(10.0, 150.0, (rows, cols))
    arid = rng.random((rows, cols)) < 0.33
    season = 1.0 + 0.6 * np.cos(2 * np.pi * (month[:, None, None] - 6) / 12)
    shape = np.where(arid, 0.7, 2.0)
    cube = rng.gamma(shape, base * season / shape)
    cube[(rng.random(cube.shape) < 0.5) & arid] = 0.0
    cube[rng.random(cube.shape) < 0.003] = np.nan
    return np.asarray(cube.round(1))
