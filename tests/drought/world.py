"""A small synthetic drought world written as real GeoTIFFs: two regions side by side, ten years of
monthly rainfall, and June NDVI, land-surface temperature and soil moisture for six years. The "dry"
region's rains fail from January 2026 on and its vegetation browns; the "wet" region stays normal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from shapely.geometry import box

from ingest.observations import add_regions, ingest_raster
from oracle.storage.blobs import BlobStore
from tests.fixtures.rasters import geotiff_bytes, region_feature_collection

TRANSFORM = Affine(0.05, 0, 36.0, 0, -0.05, 0.0)  # 20 × 20 cells over 36–37 °E, 1 °S–0
SHAPE = (20, 20)
PERIOD = "2026-06"
REGIONS = {"dry": box(36.02, -0.98, 36.48, -0.02), "wet": box(36.52, -0.98, 36.98, -0.02)}


def _field(rng: np.random.Generator, west: float, east: float, noise: float) -> np.ndarray:
    values = np.empty(SHAPE, dtype=np.float32)
    values[:, :10] = west
    values[:, 10:] = east
    return values + rng.normal(0, noise, SHAPE).astype(np.float32)


def build(sessions: object, blobs: BlobStore, tmp: Path, *, seed: int = 3) -> dict[str, list[str]]:
    import json

    rng = np.random.default_rng(seed)
    add_regions(sessions, blobs, json.dumps(region_feature_collection(REGIONS)).encode())  # type: ignore[arg-type]
    cids: dict[str, list[str]] = {"precip": [], "june": []}
    climatology = [120, 110, 140, 160, 90, 40, 20, 25, 50, 100, 140, 130]
    for year in range(2016, 2027):
        for month in range(1, 13):
            if (year, month) > (2026, 6):
                break
            normal = climatology[month - 1] * float(rng.gamma(8, 1 / 8))
            failing = year == 2026
            west = normal * (0.08 if failing else 1.0)
            values = np.clip(_field(rng, west, normal, 2.0), 0, None)
            data = geotiff_bytes(
                values, transform=TRANSFORM, tmp_dir=tmp, units="mm", time=f"{year}-{month:02d}-01T00:00:00Z"
            )
            out = ingest_raster(
                sessions, blobs, data, variable="precip", cadence="monthly", name=f"chirps-{year}-{month:02d}"
            )  # type: ignore[arg-type]
            assert out.accepted, out.message
            cids["precip"].append(out.cid)
    for year in range(2021, 2027):
        dry_now = year == 2026
        # Year-to-year variability, shared by both regions, so the climatology has a real spread.
        ndvi, lst, sm = 6000 + rng.normal(0, 500), 303.0 + rng.normal(0, 1.5), 0.28 + rng.normal(0, 0.03)
        layers = {
            "ndvi": (np.int16, 0.0001, _field(rng, 2500 if dry_now else ndvi, ndvi, 150), "1"),
            "lst": (np.float32, 1.0, _field(rng, 312.0 if dry_now else lst, lst, 0.5), "K"),
            "soil_moisture": (np.float32, 1.0, _field(rng, 0.06 if dry_now else sm, sm, 0.01), "m3 m-3"),
        }
        for variable, (dtype, scale, values, units) in layers.items():
            data = geotiff_bytes(
                values.astype(dtype),
                transform=TRANSFORM,
                tmp_dir=tmp,
                scale=scale,
                units=None if variable == "ndvi" else units,
                time=f"{year}-06-15T00:00:00Z",
                nodata=-9999,
            )
            out = ingest_raster(sessions, blobs, data, variable=variable, name=f"{variable}-{year}")  # type: ignore[arg-type]
            assert out.accepted, (variable, out.message)
            cids["june"].append(out.cid)
    return cids


def build_data_dir(root: Path) -> Path:
    """A data dir under ``root`` (SQLite + blobs) holding this world; returns it."""
    from oracle.config import Settings
    from oracle.context import open_context

    c = open_context(Settings(env="dev", data_dir=root / "data", _env_file=None))  # type: ignore[call-arg]
    try:
        build(c.sessions, c.blobs, root)
    finally:
        c.close()
    return root / "data"
