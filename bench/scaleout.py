"""Benchmark: gridded work on dask.distributed (oracle.scale) against the single-process path, side by side.

All data is SYNTHETIC: bench/drought.py's CHIRPS-like daily GeoTIFFs (0.05°, ``--rows`` × ``--cols`` px,
int16 × 0.1 mm, nodata over a sea strip, deflate + predictor, 256 px tiles) and Voronoi districts, and
bench/spi.py's monthly rain cube (a quarter of the pixels arid). ``--distinct-days`` rasters are written
(generation is not timed) and hard-linked in turn as ``--days`` daily files, so a year of days costs
neither the disk nor the minutes of writing 365 distinct files; every day is still opened, decoded and
validated on its own.

1. ``zonal_over_read``: bench/drought.py's measurement, single-threaded and interleaved day by day over
   all ``--days``: validated read (``ingest.raster.read_raster``) + zonal means of every region + the
   one-off weight build, over a plain rasterio read of the same files (goal ≤ 1.5). The plain read is
   ``rasterio.open(path).read(1)`` of the same bytes, no validation; the validated side reads them with
   ``read_raster`` (checks, canonical float64, NaN for nodata) and takes the means. Its compiled loops
   (``ingest._kernels``) are loaded once, untimed, as the plain side's reads are warmed up; the load is
   reported apart (``jit_load_s``, ``zonal_over_read_with_jit_load``). The figure depends on the CPU far
   more than on the code's last change:
   - 2026-12-01, a quiet 2-core AMD EPYC with AVX-512 (Zen 4 class), means stored as runs and read
     region by region with prefetching: 1.498 and 1.518 (plain read 4.38 / 4.46 s, validated read
     4.72 / 4.84 s, means 1.53 / 1.59 s, weight build 0.31 / 0.33 s); 1.71 and 1.86 there under load 6-17.
   - 2026-12-02, a quiet 2-core AMD EPYC without AVX-512 (family 25 model 1, Zen 3), the same code:
     2.077 and 2.12 (plain read 7.09 s, validated read 8.88 s, means 4.88 s, build 0.96 s). The means
     were compute-bound there (a day's means took as long with the raster in cache), so they now run in
     raster order (``ingest._kernels.ordered_means``) and the float64 conversion is vectorised: 1.743
     (load 1.2-1.9: plain read 7.20 s, validated read 8.87 s, means 3.07 s, build 0.62 s); in A/B runs
     of this measurement alone, 2.004 / 2.081 -> 1.720 / 1.734 (raster order) -> 1.644 / 1.666
     (vectorised conversion). Not under 1.5 on that CPU.
   - 2026-12-02, a quiet 2-core AMD EPYC with AVX-512 (family 25 model 17), the code above: 1.60, 1.61
     and 1.59 (plain read 4.75 s, validated read 5.24 s, means 1.91 s, build 0.45 s; load 0.07 before).
     Its plain read is 8 % slower than the Zen 4 machine of 2026-12-01's. Per day on this CPU, in one
     process, interleaved: raster-order means 6.04 ms against 6.60 region by region; of the raster-order
     loop's 5.4 ms, its 231,000 one-cell runs take 3.4 ms alone and its 57,600 longer runs (2.05 million
     cells) 3.4 ms alone. Prefetching the raster-order loop's cells 4-32 runs ahead made it slower (5.4-5.8
     ms against 4.7 right after ``read_raster``), and so did a branch-free term (6.2 against 5.5 ms), both
     with the same bits. Not under 1.5 on this CPU either.
   - Later on 2026-12-02, the same model-17 machine, each run packed into one 64-bit word beside its
     weight (``ingest._kernels.cell_order``; A/B of the means alone, in one process: 0.888 and 0.913 of
     before): 1.576, 1.576 and 1.591 (plain read 4.82-5.03 s, validated read 5.33-5.55 s, means
     1.85-2.00 s, build 0.34-0.42 s; load 0.35-1.2 before). Tried there and dropped, both with the same
     bits: two regions' long runs added in lockstep, to interleave two chains of additions (5.3 against
     4.3 ms a day), and the counts converted block by block inside the means loop, so each cell is read
     while in cache (read + means 23.6 against 21.0 ms a day). Not under 1.5.
   - 2026-12-02 evening, a 2-core AMD EPYC without AVX-512 (family 25 model 1, Zen 3, like the second
     machine above), after the validated read stopped copying the packed counts to float64 (the zonal
     means read the int16 counts through a table of their values, ``ZonalWeights.raster_means``; the
     same bits): 1.564, 1.586 and 1.516 (plain read 6.17-6.95 s, validated read 6.66-7.40 s, means
     2.21-2.86 s, build 0.49-0.80 s). Side by side with the code before it, in one session, alternating
     (``--dask-days 8 --spi-size 40``): before 1.669 and 1.591, after 1.583 and 1.550; the validated
     read's cost over the plain read fell from 1.02 / 0.86 s to 0.47 / 0.44 s a year, and the weight
     build alone varied from 0.52 to 0.91 s between runs. Keeping a region's sums in registers across
     its consecutive runs did not help (5.05 against 4.84 ms a day). Not under 1.5 as a median.
   What is left is mostly the means' own floor: each region's sum is one chain of additions in a fixed
   order (the bits are part of every step's CID), 2.28 million a day, and the conversion's writes.
2. The Dask path (``oracle.scale.gridded.zonal_means_stack`` over ``read_stack``: a lazily read, labelled
   (time, y, x) DataArray, one chunk per file, read and reduced on the workers) over ``--dask-days`` days
   on LocalClusters of 1 and 2 worker processes (one thread each), interleaved over ``--repeats``
   rounds (medians, after an untimed warm-up): ``workers_1_s``, ``workers_2_s``, ``speedup_2_workers``;
   beside them the same days in this process (read + ``means_stack``), and the bare read of those days
   on the 2 workers. The weights are built once beforehand (same for every side). Results are compared
   bit for bit with this process's.
3. Gridded SPI-3 on a ``--spi-months`` × ``--spi-size``² cube: ``models.drought.spi.spi_cube`` in this
   process and ``oracle.scale.gridded.spi_grid`` on the 2-worker cluster, interleaved with
   climate_indices' ``indices.spi`` run pixel by pixel on a random sample of pixels, extrapolated to the
   grid (bench/spi.py's ``time_per_pixel``): ``spi_speedup_vs_per_pixel`` (goal ≥ 10) and the max |ΔSPI|
   (where both |SPI| < 3; must be ≤ 1e-3).

The host's load average is printed with the figures: the machine is shared. Ends with ONE JSON line.
Run alone: ``python bench/scaleout.py`` (defaults take about 3 minutes on 2 cores);
``--days 48 --dask-days 24 --spi-size 80`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("CLIMATE_INDICES_LOG_LEVEL", "ERROR")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import drought as drought_bench  # bench/drought.py: the rasters, the regions, the zonal-over-read timing
import spi as spi_bench  # bench/spi.py: the rain cube and climate_indices pixel by pixel

from ingest._kernels import warm_up
from ingest.raster import read_raster
from ingest.zonal import ZonalWeights
from models.drought.spi import spi_cube
from oracle.scale.cluster import local_client
from oracle.scale.gridded import read_stack, spi_grid, zonal_means_stack

SPI_SCALE = 3


def write_days(
    workdir: Path, *, days: int, distinct: int, rows: int, cols: int, seed: int
) -> tuple[list[Path], Any]:
    """``days`` daily files: ``distinct`` synthetic rasters hard-linked in turn (copied if links fail)."""
    (workdir / "distinct").mkdir()
    sources, grid = drought_bench.write_rasters(workdir / "distinct", min(distinct, days), rows, cols, seed)
    (workdir / "days").mkdir()
    paths = []
    for day in range(days):
        path = workdir / "days" / f"chirps_{day:03d}.tif"
        try:
            os.link(sources[day % len(sources)], path)
        except OSError:
            shutil.copyfile(sources[day % len(sources)], path)
        paths.append(path)
    return paths, grid


def _plain_checksum(path: str) -> int:
    import rasterio

    with rasterio.open(path) as ds:
        return int(ds.read(1)[::97, ::89].sum())


def dask_zonal(
    clients: dict[int, Any],
    paths: list[Path],
    weights: ZonalWeights,
    grid_shape: tuple[int, int],
    repeats: int,
) -> dict[str, Any]:
    """Median seconds of the Dask path per worker count, this process's figure, and the bit check."""
    times = list(range(len(paths)))
    started = time.perf_counter()
    days = [weights.means_stack(read_raster(p.read_bytes(), variable="precip").values[None]) for p in paths]
    reference = (np.concatenate([d[0] for d in days], axis=1), np.concatenate([d[1] for d in days], axis=1))
    single_s = time.perf_counter() - started
    for client in clients.values():  # untimed: the workers import rasterio, scipy and friends once
        warm = read_stack(paths[:2], variable="precip", times=times[:2], grid_shape=grid_shape)
        zonal_means_stack(warm, weights, client=client)
    seconds: dict[int, list[float]] = {n: [] for n in clients}
    same_bits = True
    for round_ in range(repeats):
        order = sorted(clients) if round_ % 2 == 0 else sorted(clients, reverse=True)
        for n in order:
            began = time.perf_counter()
            lazy = read_stack(paths, variable="precip", times=times, grid_shape=grid_shape)
            means, fraction = zonal_means_stack(lazy, weights, client=clients[n])
            seconds[n].append(time.perf_counter() - began)
            same_bits &= (
                means.tobytes() == reference[0].tobytes() and fraction.tobytes() == reference[1].tobytes()
            )
    two = clients[max(clients)]
    began = time.perf_counter()
    two.gather(two.map(_plain_checksum, [str(p) for p in paths], pure=False))
    read_two_s = time.perf_counter() - began
    return {
        "single_s": single_s,
        "median": {n: statistics.median(v) for n, v in seconds.items()},
        "same_bits": same_bits,
        "read_on_2_workers_s": read_two_s,
    }


def spi_side_by_side(
    client: Any, *, size: int, months: int, sample: int, repeats: int, seed: int
) -> dict[str, Any]:
    """spi_cube here, spi_grid on the cluster, climate_indices per pixel (sampled), interleaved."""
    import xarray as xr

    cube = spi_bench.make_cube(size, months, seed)
    labelled = xr.DataArray(cube, dims=("time", "y", "x"))
    end_year = spi_bench.START_YEAR + months // 12 - 1
    args: dict[str, Any] = {
        "scale": SPI_SCALE,
        "calibration": (spi_bench.START_YEAR, end_year),
        "start_year": spi_bench.START_YEAR,
    }
    runs: dict[str, Callable[[], np.ndarray]] = {
        "single": lambda: spi_cube(cube, **args),
        "dask_2": lambda: np.asarray(spi_grid(labelled, client=client, **args).values),
    }
    seconds: dict[str, list[float]] = {"single": [], "dask_2": [], "per_pixel_full": []}
    results: dict[str, np.ndarray] = {}
    diffs: list[float] = []
    pixels = 0
    for round_ in range(repeats):
        for name, fn in runs.items():
            began = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - began)
        per_pixel = spi_bench.time_per_pixel(
            cube,
            results["single"],
            scale=SPI_SCALE,
            end_year=end_year,
            sample=max(1, sample // repeats),
            seed=seed + 100 * round_,
            full=False,
        )
        seconds["per_pixel_full"].append(per_pixel["full_s"])
        diffs.append(per_pixel["max_abs_diff"])
        pixels += per_pixel["pixels"]
    median = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "grid": f"{months}x{size}x{size}",
        "median": median,
        "max_abs_diff": max(diffs),
        "pixels_sampled": pixels,
        "same_bits": results["single"].tobytes() == results["dask_2"].tobytes(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-"))
    try:
        paths, grid = write_days(
            workdir,
            days=args.days,
            distinct=args.distinct_days,
            rows=args.rows,
            cols=args.cols,
            seed=args.seed,
        )
        regions = drought_bench.make_regions(args.regions, grid, args.seed)
        # The validated read's compiled loops are loaded (or, the first time, compiled) once per process,
        # as time_zonal warms the plain read up with three untimed reads; reported apart as jit_load_s.
        jit_s = warm_up()
        zonal = drought_bench.time_zonal(paths, regions)
        weights: ZonalWeights = zonal["weights"]
        began = time.perf_counter()
        with local_client(1) as one, local_client(2) as two:
            one.wait_for_workers(1)
            two.wait_for_workers(2)
            start_s = time.perf_counter() - began
            scale = dask_zonal({1: one, 2: two}, paths[: args.dask_days], weights, grid.shape, args.repeats)
            spi = spi_side_by_side(
                two,
                size=args.spi_size,
                months=args.spi_months,
                sample=args.sample,
                repeats=args.repeats,
                seed=args.seed,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    w1, w2 = scale["median"][1], scale["median"][2]
    spi_median = spi["median"]
    return {
        "synthetic": True,
        "days": args.days,
        "distinct_days": min(args.distinct_days, args.days),
        "grid": f"{args.rows}x{args.cols}",
        "regions": len(regions),
        "plain_read_s": round(zonal["plain_read_s"], 3),
        "zonal_total_s": round(zonal["total_s"], 3),
        "weight_build_s": round(zonal["build_s"], 3),
        "validated_read_s": round(zonal["validated_read_s"], 3),
        "means_s": round(zonal["means_s"], 3),
        "zonal_over_read": round(zonal["total_s"] / zonal["plain_read_s"], 3),
        "zonal_over_read_goal": 1.5,
        "jit_load_s": round(jit_s, 3),
        "zonal_over_read_with_jit_load": round((zonal["total_s"] + jit_s) / zonal["plain_read_s"], 3),
        "dask_days": len(paths[: args.dask_days]),
        "cluster_start_s": round(start_s, 2),
        "single_process_s": round(scale["single_s"], 3),
        "workers_1_s": round(w1, 3),
        "workers_2_s": round(w2, 3),
        "speedup_2_workers": round(w1 / w2, 2),
        "speedup_2_workers_vs_single_process": round(scale["single_s"] / w2, 2),
        "read_on_2_workers_s": round(scale["read_on_2_workers_s"], 3),
        "zonal_over_read_on_2_workers": round(w2 / scale["read_on_2_workers_s"], 3),
        "zonal_dask_same_bits": scale["same_bits"],
        "spi_grid": spi["grid"],
        "spi_single_s": round(spi_median["single"], 3),
        "spi_dask_2_workers_s": round(spi_median["dask_2"], 3),
        "spi_per_pixel_full_grid_s": round(spi_median["per_pixel_full"], 2),
        "spi_per_pixel_pixels_sampled": spi["pixels_sampled"],
        "spi_speedup_vs_per_pixel": round(spi_median["per_pixel_full"] / spi_median["single"], 2),
        "spi_speedup_vs_per_pixel_dask_2_workers": round(
            spi_median["per_pixel_full"] / spi_median["dask_2"], 2
        ),
        "spi_speedup_vs_per_pixel_goal": 10,
        "spi_max_abs_diff_vs_per_pixel": spi["max_abs_diff"],
        "spi_dask_same_bits": spi["same_bits"],
        "repeats": args.repeats,
        "cores": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def print_table(f: dict[str, Any]) -> None:
    print(
        f"SYNTHETIC data. Zonal means: {f['regions']} districts on a {f['grid']} px grid, {f['days']} daily "
        f"GeoTIFFs ({f['distinct_days']} distinct, hard-linked); {f['cores']} cores, load average "
        f"{f['load_average_before']} before / {f['load_average_after']} after"
    )
    rows = [
        ("plain rasterio read, every day", f"{f['plain_read_s']:.2f} s", "1.00x"),
        (
            "read_raster + zonal means + one weight build",
            f"{f['zonal_total_s']:.2f} s",
            f"{f['zonal_over_read']:.2f}x  (goal <= 1.5; build {f['weight_build_s']:.2f} s)",
        ),
        (
            "  + the compiled loops' one-off load (untimed above)",
            f"{f['jit_load_s']:.2f} s",
            f"{f['zonal_over_read_with_jit_load']:.2f}x with it",
        ),
        (f"  -- Dask path over {f['dask_days']} days (weights built once) --", "", ""),
        ("this process: read_raster + means_stack", f"{f['single_process_s']:.2f} s", ""),
        ("LocalCluster, 1 worker", f"{f['workers_1_s']:.2f} s", "1.00x"),
        (
            "LocalCluster, 2 workers",
            f"{f['workers_2_s']:.2f} s",
            f"{f['speedup_2_workers']:.2f}x  (same bits: {f['zonal_dask_same_bits']})",
        ),
        (
            "plain read on the 2 workers",
            f"{f['read_on_2_workers_s']:.2f} s",
            f"zonal/read on 2 workers {f['zonal_over_read_on_2_workers']:.2f}x",
        ),
        (f"  -- gridded SPI-{SPI_SCALE} on a {f['spi_grid']} cube --", "", ""),
        (
            "climate_indices per pixel (sampled, extrapolated)",
            f"{f['spi_per_pixel_full_grid_s']:.1f} s",
            f"({f['spi_per_pixel_pixels_sampled']} pixels run)",
        ),
        (
            "spi_cube, this process",
            f"{f['spi_single_s']:.2f} s",
            f"{f['spi_speedup_vs_per_pixel']:.1f}x faster  (goal >= 10; max |dSPI| "
            f"{f['spi_max_abs_diff_vs_per_pixel']:.1e})",
        ),
        (
            "spi_grid, LocalCluster of 2 workers",
            f"{f['spi_dask_2_workers_s']:.2f} s",
            f"{f['spi_speedup_vs_per_pixel_dask_2_workers']:.1f}x faster  "
            f"(same bits: {f['spi_dask_same_bits']})",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument(
        "--distinct-days", type=int, default=16, help="synthetic rasters written, linked in turn"
    )
    parser.add_argument("--regions", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--cols", type=int, default=1600)
    parser.add_argument("--dask-days", type=int, default=48, help="days of the Dask comparison")
    parser.add_argument("--spi-size", type=int, default=150)
    parser.add_argument("--spi-months", type=int, default=480)
    parser.add_argument("--sample", type=int, default=240, help="pixels run with climate_indices per pixel")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are quoted")
    parser.add_argument("--seed", type=int, default=0)
    figures = run(parser.parse_args())
    print_table(figures)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
