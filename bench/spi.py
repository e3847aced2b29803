"""Benchmark: gridded SPI-3 with models.drought.spi.spi_cube against climate_indices 3.1.0 per pixel.

Generates a (480 months × 200 × 200) precipitation cube in which a quarter of the pixels are arid
(many exact-zero months), runs ``spi_cube`` on the whole cube, and runs
``climate_indices.indices.spi`` pixel by pixel (its classic per-series use): first on a random
sample of pixels; when that predicts more than ``FULL_GRID_BUDGET_S`` for the whole grid, the
per-pixel time is extrapolated (the table says so), otherwise every pixel is run. Also times
climate_indices' own spatial mode on the full cube for reference. Ends with one JSON line.

Run alone: ``python bench/spi.py [--size 200] [--months 480] [--sample 400]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("CLIMATE_INDICES_LOG_LEVEL", "ERROR")  # its structlog output would flood the table
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.drought.spi import spi_cube

START_YEAR = 1981
FULL_GRID_BUDGET_S = 180.0


def make_cube(size: int, months: int, seed: int = 0) -> np.ndarray:
    """Seasonal gamma rainfall (mm/month), (months, size, size); 25 % arid pixels with many zero months."""
    rng = np.random.default_rng(seed)
    month = np.arange(months) % 12
    base = rng.uniform(20.0, 150.0, (size, size))
    arid = rng.random((size, size)) < 0.25
    base = np.where(arid, rng.uniform(2.0, 15.0, (size, size)), base)
    season = 1.0 + 0.6 * np.cos(2 * np.pi * (month[:, None, None] - rng.integers(0, 12, (size, size))) / 12)
    shape = np.where(arid, 0.7, 2.0)
    cube = rng.gamma(shape, base * season / shape)
    zero_share = np.where(arid, 0.55, 0.02)
    cube[rng.random(cube.shape) < zero_share] = 0.0
    return cube.round(1)


def run(
    size: int = 200, months: int = 480, sample: int = 400, scale: int = 3, seed: int = 0, full: bool = True
) -> dict[str, Any]:
    """Time both implementations and compare them; returns the figures (see the JSON line).

    ``full=False`` never runs climate_indices on every pixel (extrapolates from ``sample`` pixels).
    """
    from climate_indices import compute, indices

    warnings.filterwarnings("ignore")
    cube = make_cube(size, months, seed)
    end_year = START_YEAR + months // 12 - 1

    started = time.perf_counter()
    ours = spi_cube(cube, scale=scale, calibration=(START_YEAR, end_year), start_year=START_YEAR)
    ours_s = time.perf_counter() - started

    rng = np.random.default_rng(seed + 1)
    n_pixels = size * size
    order = rng.permutation(n_pixels)
    flat = cube.reshape(months, -1)
    ours_flat = ours.reshape(months, -1)

    def per_pixel(pixels: np.ndarray) -> tuple[list[np.ndarray], float]:
        began = time.perf_counter()
        series = [
            indices.spi(
                flat[:, pixel].copy(),
                scale,
                indices.Distribution.gamma,
                START_YEAR,
                START_YEAR,
                end_year,
                compute.Periodicity.monthly,
            )
            for pixel in pixels
        ]
        return series, time.perf_counter() - began

    picked = order[: min(sample, n_pixels)]
    theirs_cols, sample_s = per_pixel(picked)
    estimate_s = sample_s / picked.size * n_pixels
    extrapolated = not (full and estimate_s <= FULL_GRID_BUDGET_S)
    if extrapolated:
        ci_full_s = estimate_s
    else:
        rest, rest_s = per_pixel(order[picked.size :])
        theirs_cols += rest
        picked = order
        ci_full_s = sample_s + rest_s
    max_diff = 0.0
    compared = 0
    for pixel, theirs in zip(picked, theirs_cols, strict=True):
        mine = ours_flat[:, pixel]
        inside = (np.abs(theirs) < 3.0) & (np.abs(mine) < 3.0)
        if np.any(np.isnan(theirs) != np.isnan(mine)):
            max_diff = float("inf")
        if inside.any():
            max_diff = max(max_diff, float(np.max(np.abs(theirs[inside] - mine[inside]))))
            compared += int(inside.sum())

    started = time.perf_counter()
    spatial = indices.spi(
        cube,
        scale,
        indices.Distribution.gamma,
        START_YEAR,
        START_YEAR,
        end_year,
        compute.Periodicity.monthly,
        spatial_time_major=True,
    )
    spatial_s = time.perf_counter() - started
    inside = (np.abs(spatial) < 3.0) & (np.abs(ours) < 3.0)
    spatial_diff = float(np.max(np.abs(spatial[inside] - ours[inside])))

    return {
        "grid": f"{months}x{size}x{size}",
        "scale": scale,
        "ours_s": round(ours_s, 3),
        "climate_indices_per_pixel_ms": round(ci_full_s / n_pixels * 1000, 3),
        "climate_indices_pixels_run": int(picked.size),
        "climate_indices_full_grid_s": round(ci_full_s, 1),
        "climate_indices_full_grid_extrapolated": extrapolated,
        "climate_indices_spatial_mode_s": round(spatial_s, 3),
        "spi_max_abs_diff": max_diff,
        "spi_values_compared": compared,
        "spi_max_abs_diff_vs_spatial_mode_full_grid": spatial_diff,
        "spi_speedup_vs_climate_indices": round(ci_full_s / ours_s, 1),
        "spi_speedup_vs_climate_indices_spatial_mode": round(spatial_s / ours_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--months", type=int, default=480)
    parser.add_argument("--sample", type=int, default=400, help="pixels first timed with climate_indices")
    parser.add_argument("--extrapolate", action="store_true", help="never run climate_indices on every pixel")
    args = parser.parse_args()
    figures = run(size=args.size, months=args.months, sample=args.sample, full=not args.extrapolate)
    how = (
        f"extrapolated from {figures['climate_indices_pixels_run']} random pixels"
        if figures["climate_indices_full_grid_extrapolated"]
        else f"measured on all {figures['climate_indices_pixels_run']} pixels"
    )
    rows = [
        ("models.drought.spi_cube, full grid", f"{figures['ours_s']:.3f} s", "measured"),
        (
            "climate_indices.spi per pixel, full grid",
            f"{figures['climate_indices_full_grid_s']:.1f} s",
            f"{how} ({figures['climate_indices_per_pixel_ms']:.3f} ms/pixel)",
        ),
        (
            "climate_indices.spi spatial_time_major, full grid",
            f"{figures['climate_indices_spatial_mode_s']:.3f} s",
            "measured",
        ),
        ("speed-up vs per-pixel climate_indices", f"{figures['spi_speedup_vs_climate_indices']:.1f}x", ""),
        (
            "max |ΔSPI| where |SPI| < 3 (per-pixel runs)",
            f"{figures['spi_max_abs_diff']:.2e}",
            f"{figures['spi_values_compared']} values",
        ),
        (
            "max |ΔSPI| vs spatial mode (full grid)",
            f"{figures['spi_max_abs_diff_vs_spatial_mode_full_grid']:.2e}",
            "",
        ),
    ]
    print(f"SPI-{figures['scale']} on a {figures['grid']} (months × y × x) cube")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>12}  {note}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
