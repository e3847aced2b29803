"""Benchmark: gridded SPI-3 with models.drought.spi.spi_cube against climate_indices 3.1.0 at its best.

Generates a (480 months × 200 × 200) precipitation cube in which a quarter of the pixels are arid
(many exact-zero months) and times, interleaved over ``--repeats`` rounds (medians quoted, as the
host is shared and noisy):

* ``spi_cube`` on the whole cube (one thread);
* climate_indices' genuine spatial mode, ``indices.spi(cube, …, spatial_time_major=True)``, which
  fits every cell of a (time, cells) block in one pass (no Python loop over pixels), twice:
  under NumPy's default error state, where it runs its Python/SciPy kernels, and inside
  ``np.errstate(all="ignore")``, the only state in which it dispatches to its optional Rust
  extension (``climate_indices._native``; see ``compute._native_policy_allows``);
* its xarray entry point ``climate_indices.spi(DataArray)`` on a Dask array chunked over rows, with
  the threaded scheduler (one chunk per core, Rust kernels engaged): the package's documented route
  for big grids, and the only one that uses both cores (ours uses one).

The headline ``spi_speedup_vs_climate_indices`` is the fastest of those three medians over ours.
For reference only, ``indices.spi`` is also run pixel by pixel (its classic 1-D use, the slowest) on
a random sample of pixels and extrapolated to the grid (``--per-pixel-full`` runs every pixel).
Every climate_indices result is compared with ours (max |ΔSPI| where both |SPI| < 3, and NaN
positions). Ends with one JSON line.

Run alone: ``python bench/spi.py [--size 200] [--months 480] [--sample 400] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("CLIMATE_INDICES_LOG_LEVEL", "ERROR")  # its structlog output would flood the table
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.drought.spi import spi_cube

START_YEAR = 1981
FULL_GRID_BUDGET_S = 180.0
PEER_MODES = {
    "spatial_python": "indices.spi spatial_time_major, default np error state (Python kernels)",
    "spatial_rust": 'indices.spi spatial_time_major in np.errstate(all="ignore") (Rust kernels)',
    "xarray_dask": "climate_indices.spi(DataArray) on Dask, threads, Rust kernels",
}


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


def max_abs_diff(theirs: np.ndarray, ours: np.ndarray) -> float:
    """Max |ΔSPI| where both are inside ±3 (the clip edge is not compared); inf if NaN positions differ."""
    if np.any(np.isnan(theirs) != np.isnan(ours)):
        return float("inf")
    inside = (np.abs(theirs) < 3.0) & (np.abs(ours) < 3.0)
    return float(np.max(np.abs(theirs[inside] - ours[inside]))) if inside.any() else 0.0


def peer_modes(cube: np.ndarray, scale: int, end_year: int) -> dict[str, Callable[[], np.ndarray]]:
    """climate_indices' vectorised uses on the whole cube, each returning a (time, y, x) array."""
    import climate_indices
    import pandas as pd
    import xarray as xr
    from climate_indices import compute, indices

    args = (scale, indices.Distribution.gamma, START_YEAR, START_YEAR, end_year, compute.Periodicity.monthly)
    months, rows, _ = cube.shape
    time_axis = pd.date_range(f"{START_YEAR}-01-01", periods=months, freq="MS")
    cores = os.cpu_count() or 1
    chunked = xr.DataArray(cube, dims=("time", "y", "x"), coords={"time": time_axis}).chunk(
        {"time": -1, "y": -(-rows // cores)}
    )

    def spatial_python() -> np.ndarray:
        with np.errstate(divide="warn", over="warn", under="ignore", invalid="warn"):  # NumPy's default
            result: np.ndarray = indices.spi(cube, *args, spatial_time_major=True)
        return result

    def spatial_rust() -> np.ndarray:
        with np.errstate(all="ignore"):
            result: np.ndarray = indices.spi(cube, *args, spatial_time_major=True)
        return result

    def xarray_dask() -> np.ndarray:
        with np.errstate(all="ignore"):
            result: np.ndarray = climate_indices.spi(chunked, *args).compute(scheduler="threads").values
        return result

    return {"spatial_python": spatial_python, "spatial_rust": spatial_rust, "xarray_dask": xarray_dask}


def time_per_pixel(
    cube: np.ndarray, ours: np.ndarray, *, scale: int, end_year: int, sample: int, seed: int, full: bool
) -> dict[str, Any]:
    """climate_indices pixel by pixel (its slowest use, kept for reference): sampled, or every pixel."""
    from climate_indices import compute, indices

    months = cube.shape[0]
    flat = cube.reshape(months, -1)
    ours_flat = ours.reshape(months, -1)
    n_pixels = flat.shape[1]
    order = np.random.default_rng(seed + 1).permutation(n_pixels)

    def run(pixels: np.ndarray) -> tuple[list[np.ndarray], float]:
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
    theirs, sample_s = run(picked)
    estimate_s = sample_s / picked.size * n_pixels
    extrapolated = not (full and estimate_s <= FULL_GRID_BUDGET_S)
    if extrapolated:
        full_s = estimate_s
    else:
        rest, rest_s = run(order[picked.size :])
        theirs += rest
        picked = order
        full_s = sample_s + rest_s
    diff = max(max_abs_diff(t, ours_flat[:, p]) for p, t in zip(picked, theirs, strict=True))
    return {"full_s": full_s, "pixels": int(picked.size), "extrapolated": extrapolated, "max_abs_diff": diff}


def run(
    size: int = 200,
    months: int = 480,
    sample: int = 400,
    scale: int = 3,
    seed: int = 0,
    repeats: int = 3,
    full: bool = False,
) -> dict[str, Any]:
    """Time ours and climate_indices' vectorised modes interleaved; returns the figures (the JSON line).

    ``full=True`` runs climate_indices per pixel on every pixel when that fits ``FULL_GRID_BUDGET_S``,
    else it is extrapolated from ``sample`` pixels.
    """
    warnings.filterwarnings("ignore")
    cube = make_cube(size, months, seed)
    end_year = START_YEAR + months // 12 - 1
    modes = peer_modes(cube, scale, end_year)

    def ours_run() -> np.ndarray:
        return spi_cube(cube, scale=scale, calibration=(START_YEAR, end_year), start_year=START_YEAR)

    seconds: dict[str, list[float]] = {"ours": [], **{name: [] for name in modes}}
    results: dict[str, np.ndarray] = {}
    for _ in range(repeats):  # interleaved, so a burst of load on the shared host hits every side alike
        for name, fn in (("ours", ours_run), *modes.items()):
            started = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ours = results["ours"]
    best = min(modes, key=lambda name: median[name])
    per_pixel = time_per_pixel(
        cube, ours, scale=scale, end_year=end_year, sample=sample, seed=seed, full=full
    )
    n_pixels = size * size

    figures: dict[str, Any] = {
        "grid": f"{months}x{size}x{size}",
        "scale": scale,
        "repeats": repeats,
        "ours_s": round(median["ours"], 3),
        **{f"climate_indices_{name}_s": round(median[name], 3) for name in modes},
        "climate_indices_best_mode": best,
        "climate_indices_best_s": round(median[best], 3),
        "spi_speedup_vs_climate_indices": round(median[best] / median["ours"], 2),
        **{
            f"spi_speedup_vs_climate_indices_{name}": round(median[name] / median["ours"], 2)
            for name in modes
        },
        **{f"spi_max_abs_diff_vs_{name}": max_abs_diff(results[name], ours) for name in modes},
        "climate_indices_per_pixel_ms": round(per_pixel["full_s"] / n_pixels * 1000, 3),
        "climate_indices_per_pixel_pixels_run": per_pixel["pixels"],
        "climate_indices_per_pixel_full_grid_s": round(per_pixel["full_s"], 1),
        "climate_indices_per_pixel_extrapolated": per_pixel["extrapolated"],
        "spi_max_abs_diff_vs_per_pixel": per_pixel["max_abs_diff"],
        "spi_speedup_vs_climate_indices_per_pixel": round(per_pixel["full_s"] / median["ours"], 1),
        "cores": os.cpu_count(),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--months", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are quoted")
    parser.add_argument("--sample", type=int, default=400, help="pixels timed with climate_indices per pixel")
    parser.add_argument(
        "--per-pixel-full", action="store_true", help="run climate_indices per pixel on every pixel (slow)"
    )
    args = parser.parse_args()
    figures = run(
        size=args.size,
        months=args.months,
        sample=args.sample,
        repeats=args.repeats,
        full=args.per_pixel_full,
    )
    how = (
        f"extrapolated from {figures['climate_indices_per_pixel_pixels_run']} random pixels"
        if figures["climate_indices_per_pixel_extrapolated"]
        else f"measured on all {figures['climate_indices_per_pixel_pixels_run']} pixels"
    )
    rows = [("models.drought.spi_cube (1 thread)", f"{figures['ours_s']:.3f} s", "1.00x", "")]
    for name, label in PEER_MODES.items():
        best = " <- best" if name == figures["climate_indices_best_mode"] else ""
        rows.append(
            (
                label,
                f"{figures[f'climate_indices_{name}_s']:.3f} s",
                f"{figures[f'spi_speedup_vs_climate_indices_{name}']:.2f}x",
                f"max |ΔSPI| {figures[f'spi_max_abs_diff_vs_{name}']:.1e}{best}",
            )
        )
    rows.append(
        (
            "indices.spi per pixel (slowest use, reference only)",
            f"{figures['climate_indices_per_pixel_full_grid_s']:.1f} s",
            f"{figures['spi_speedup_vs_climate_indices_per_pixel']:.1f}x",
            f"max |ΔSPI| {figures['spi_max_abs_diff_vs_per_pixel']:.1e}; {how}",
        )
    )
    print(
        f"SPI-{figures['scale']} on a {figures['grid']} (months × y × x) cube; "
        f"median of {figures['repeats']} interleaved runs; ratio = their time / ours; "
        "|ΔSPI| where both |SPI| < 3"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, ratio, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {ratio:>7}  {note}")
    print(
        f"  headline: {figures['spi_speedup_vs_climate_indices']:.2f}x vs climate_indices at its best "
        f"({figures['climate_indices_best_mode']}); the Dask run uses {figures['cores']} threads, ours one"
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
