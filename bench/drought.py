"""Benchmark: daily zonal means for many insured regions over a year of real compressed GeoTIFFs.

Writes ``--days`` CHIRPS-like daily precipitation rasters (0.05°, ``--cols`` × ``--rows`` px, int16 ×
0.1 mm, nodata −9999 over a fixed "ocean" strip, deflate + predictor, 256 px tiles) into a temp dir
(generation is not timed), and ``--regions`` random districts (a Voronoi tessellation of random seeds
over the land part of the grid). Then measures, in the same run and with a warm page cache:

(b) ``read_s``      opening and reading every raster with plain rasterio (``ds.read(1)``);
(a) ``zonal_s``     ``ingest.raster.read_raster`` (validation, scale, nodata, range checks) + the
                    cached sparse-weight zonal means of every region, plus the one weight build;
    ``zonal_over_read`` = (a) / (b)   (goal ≤ 2.0), both single-threaded and timed day by day
                    interleaved; ``zonal_over_read_pipelined`` is (a) with one thread prefetching the
                    next day (uses the second core) over a plain sequential read loop;
(c) ``rasterstats`` ``rasterstats.zonal_stats(mean)`` region by region and day by day on a subset
    (``--rs-regions`` × ``--rs-days``), extrapolated per region-day → ``speedup_vs_rasterstats``.

Also runs ``bench/spi.py``'s ``run()`` when that file exists and merges its figures. Ends with ONE
JSON line. Run alone: ``python bench/drought.py [--days 365 --regions 1000]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from affine import Affine

from ingest.raster import GridSpec, read_raster
from ingest.regions import Region, parse_regions
from ingest.zonal import WeightCache

RES = 0.05
WEST, NORTH = 20.0, 25.0  # East Africa and its surroundings, CHIRPS' 0.05° resolution
NODATA = -9999
SCALE = 0.1


def write_rasters(workdir: Path, days: int, rows: int, cols: int, seed: int) -> tuple[list[Path], GridSpec]:
    """Daily int16 rain (× 0.1 mm) with smooth storms, dry pixels and an ocean strip of nodata."""
    import rasterio

    transform = Affine(RES, 0.0, WEST, 0.0, -RES, NORTH)
    rng = np.random.default_rng(seed)
    ocean = np.zeros((rows, cols), dtype=bool)
    ocean[:, int(cols * 0.85) :] = True  # the eastern 15 % is sea, as CHIRPS has no data there
    coarse = (max(rows // 20, 1), max(cols // 20, 1))
    climate = np.kron(rng.gamma(2.0, 2.0, coarse), np.ones((20, 20)))[:rows, :cols]
    climate = np.pad(climate, ((0, rows - climate.shape[0]), (0, cols - climate.shape[1])), mode="edge")
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": "int16",
        "crs": "EPSG:4326",
        "transform": transform,
        "nodata": NODATA,
        "compress": "deflate",
        "predictor": 2,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    paths = []
    start = np.datetime64("2023-01-01")
    for day in range(days):
        storms = np.kron(rng.random(coarse), np.ones((20, 20)))[:rows, :cols]
        storms = np.pad(storms, ((0, rows - storms.shape[0]), (0, cols - storms.shape[1])), mode="edge")
        wet = storms > 0.55
        rain = np.where(wet, climate * storms * rng.gamma(1.5, 1.0, (rows, cols)), 0.0)
        counts = np.clip(np.round(rain / SCALE), 0, 32000).astype(np.int16)
        counts[ocean] = NODATA
        path = workdir / f"chirps_{day:03d}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(counts, 1)
            dst.scales = (SCALE,)
            dst.units = ("mm",)
            dst.update_tags(time=str(start + np.timedelta64(day, "D")))
        paths.append(path)
    return paths, GridSpec("EPSG:4326", transform, (rows, cols))


def make_regions(n: int, grid: GridSpec, seed: int) -> tuple[Region, ...]:
    """``n`` districts: Voronoi cells of random seeds, clipped to the grid's land (the west 90 %)."""
    import shapely
    from shapely.geometry import MultiPoint, box, mapping

    xmin, ymin, xmax, ymax = grid.bounds
    land = box(xmin, ymin, xmin + (xmax - xmin) * 0.9, ymax)  # some districts reach the sea strip
    rng = np.random.default_rng(seed)
    seeds = MultiPoint(
        np.column_stack([rng.uniform(land.bounds[0], land.bounds[2], n), rng.uniform(ymin, ymax, n)])
    )
    cells = [c.intersection(land) for c in shapely.voronoi_polygons(seeds, extend_to=land).geoms]
    features = [
        {"type": "Feature", "properties": {"region_id": f"D{i:04d}"}, "geometry": mapping(cell)}
        for i, cell in enumerate(cells)
        if not cell.is_empty
    ]
    return parse_regions({"type": "FeatureCollection", "features": features})


def plain_read(path: Path) -> None:
    import rasterio

    with rasterio.open(path) as ds:
        ds.read(1)


def time_zonal(paths: list[Path], regions: tuple[Region, ...]) -> dict[str, Any]:
    """Per day, time (b) a plain rasterio read and (a) read_raster + zonal means, interleaved.

    Interleaving puts both under the same machine load (the benchmark host is shared), so their
    ratio is not skewed by another process waking up during one of two long separate loops.
    """
    cache = WeightCache()
    for path in paths[: min(3, len(paths))]:  # warm GDAL's driver and the page cache for both sides
        plain_read(path)
    started = time.perf_counter()
    first = read_raster(paths[0].read_bytes(), variable="precip")
    build_started = time.perf_counter()
    weights = cache.weights(regions, first.grid)
    build_s = time.perf_counter() - build_started
    first_read_s = build_started - started
    means = np.empty((len(regions), len(paths)))
    plain_s = read_s = means_s = 0.0
    for day, path in enumerate(paths):
        t0 = time.perf_counter()
        plain_read(path)
        t1 = time.perf_counter()
        raster = first if day == 0 else read_raster(path.read_bytes(), variable="precip")
        t2 = time.perf_counter()
        means[:, day], _ = cache.weights(regions, raster.grid).means(raster.values)
        t3 = time.perf_counter()
        plain_s += t1 - t0
        read_s += (t2 - t1) if day else first_read_s
        means_s += t3 - t2
    return {
        "plain_read_s": plain_s,
        "total_s": read_s + means_s + build_s,
        "build_s": build_s,
        "validated_read_s": read_s,
        "means_s": means_s,
        "cache_builds": cache.builds,
        "cache_hits": cache.hits,
        "nnz": int(weights.matrix.nnz),
        "means": means,
        "weights": weights,
    }


def time_pipelined(paths: list[Path], weights: Any) -> tuple[float, float]:
    """(pipelined read + zonal seconds, plain read seconds) with one thread prefetching the next day.

    GDAL decoding and the sparse product both release the GIL, so the prefetch uses the second core.
    """
    from concurrent.futures import ThreadPoolExecutor

    def load(path: Path) -> Any:
        return read_raster(path.read_bytes(), variable="precip")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, paths[0])
        for day in range(len(paths)):
            raster = pending.result()
            if day + 1 < len(paths):
                pending = pool.submit(load, paths[day + 1])
            weights.means(raster.values)
    pipelined = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        plain_read(path)
    return pipelined, time.perf_counter() - started


def time_rasterstats(
    paths: list[Path], regions: tuple[Region, ...], n_regions: int, n_days: int, ours: np.ndarray
) -> dict[str, Any]:
    from rasterstats import zonal_stats

    picked = regions[:n_regions]
    started = time.perf_counter()
    diffs = []
    for day, path in enumerate(paths[:n_days]):
        for i, region in enumerate(picked):
            stats = zonal_stats(region.geometry, str(path), stats=["mean"])
            if stats[0]["mean"] is not None and not np.isnan(ours[i, day]):
                diffs.append(abs(stats[0]["mean"] * SCALE - ours[i, day]))
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "region_days": len(picked) * min(n_days, len(paths)),
        # rasterstats counts whole cells by centre (no coverage fractions, no area weights): this is how
        # far a non-exact method lands from the exact mean, not an error of either.
        "median_abs_diff_mm": float(np.median(diffs)) if diffs else None,
    }


def run_spi(quick: bool) -> dict[str, Any] | None:
    path = Path(__file__).resolve().parent / "spi.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("bench_spi", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures: dict[str, Any] = module.run(size=60, months=240, sample=100) if quick else module.run()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--regions", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--cols", type=int, default=1600)
    parser.add_argument("--rs-regions", type=int, default=20)
    parser.add_argument("--rs-days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-spi", action="store_true", help="skip bench/spi.py")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the rasters here instead of a temp dir"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drought-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        paths, grid = write_rasters(workdir, args.days, args.rows, args.cols, args.seed)
        regions = make_regions(args.regions, grid, args.seed)
        gen_s = time.perf_counter() - started
        disk_mb = sum(p.stat().st_size for p in paths) / 1e6

        zonal = time_zonal(paths, regions)
        read_s = zonal["plain_read_s"]
        pipelined_s, pipelined_plain_s = time_pipelined(paths, zonal["weights"])
        rs = time_rasterstats(paths, regions, args.rs_regions, args.rs_days, zonal["means"])
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    region_days = len(regions) * len(paths)
    ours_per_rd = zonal["total_s"] / region_days
    rs_per_rd = rs["seconds"] / rs["region_days"]
    figures: dict[str, Any] = {
        "days": len(paths),
        "regions": len(regions),
        "grid": f"{args.cols}x{args.rows}@{RES}deg",
        "rasters_mb": round(disk_mb, 1),
        "generate_s_untimed": round(gen_s, 1),
        "read_s": round(read_s, 3),
        "zonal_s": round(zonal["total_s"], 3),
        "zonal_validated_read_s": round(zonal["validated_read_s"], 3),
        "zonal_means_s": round(zonal["means_s"], 3),
        "weights_build_s": round(zonal["build_s"], 3),
        "weights_nnz": zonal["nnz"],
        "weights_cache_builds": zonal["cache_builds"],
        "weights_cache_hits": zonal["cache_hits"],
        "zonal_over_read": round(zonal["total_s"] / read_s, 3),
        "zonal_over_read_without_build": round((zonal["total_s"] - zonal["build_s"]) / read_s, 3),
        "pipelined_s": round(pipelined_s, 3),
        "zonal_over_read_pipelined": round(pipelined_s / pipelined_plain_s, 3),
        "ms_per_day_read_plus_zonal": round(zonal["total_s"] / len(paths) * 1000, 2),
        "rasterstats_region_days": rs["region_days"],
        "rasterstats_ms_per_region_day": round(rs_per_rd * 1000, 3),
        "ours_ms_per_region_day": round(ours_per_rd * 1000, 5),
        "speedup_vs_rasterstats": round(rs_per_rd / ours_per_rd, 1),
        "rasterstats_median_abs_diff_mm": rs["median_abs_diff_mm"],
    }
    spi = None if args.no_spi else run_spi(quick=args.days < 365)
    figures["spi_bench"] = "absent" if spi is None else "run"
    if spi:
        figures.update({k if k.startswith("spi") else f"spi_{k}": v for k, v in spi.items()})

    print(f"{'figure':<40} value")
    print("-" * 64)
    for key, value in figures.items():
        print(f"{key:<40} {value}")
    print(
        f"\n(c) rasterstats ran {rs['region_days']} region-days "
        f"({args.rs_regions} regions × {args.rs_days} days) and is extrapolated per region-day."
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
