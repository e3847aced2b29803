"""Zonal means: against exactextract's own weighted mean, a brute-force check, nodata, cache, CRS."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from affine import Affine
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from shapely.geometry import Polygon, box

from ingest.raster import GridSpec, RasterGrid, read_raster
from ingest.regions import Region, parse_regions
from ingest.zonal import WeightCache, ZonalWeights, zonal_means
from oracle.errors import ValidationError
from tests.fixtures.rasters import region_feature_collection, write_geotiff
from tests.ingest.conftest import COLS, ROWS

POLYGONS = {
    "triangle": Polygon([(36.12, 0.93), (36.71, 0.31), (37.2, -0.8)]),
    "square": box(37.01, -0.52, 37.88, 0.27),
    "sliver": Polygon([(36.0, -0.9), (38.9, -0.95), (38.9, -0.93)]),
    "edge": box(38.7, 0.6, 39.4, 1.3),  # half outside the grid
}


def _regions(polys: dict[str, Polygon] = POLYGONS) -> tuple[Region, ...]:
    return parse_regions(region_feature_collection(polys))


def _ndvi_file(tmp_path: Path, raw: npt.NDArray[np.int16], transform: Affine) -> Path:
    return write_geotiff(
        tmp_path / "ndvi.tif", raw, transform=transform, nodata=-3000, scale=0.0001, units="1"
    )


def test_matches_exactextract_weighted_mean_on_the_real_file(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    path = _ndvi_file(tmp_path, ndvi_raw, grid_transform)
    grid = read_raster(path.read_bytes(), variable="ndvi")
    stats = zonal_means(grid, _regions(), cache=WeightCache())
    # exactextract reads the file through GDAL itself (nodata and scale honoured there too).
    expected = exact_extract(
        str(path),
        region_feature_collection(POLYGONS)["features"],
        ["mean(coverage_weight=area_spherical_m2)"],
        output="geojson",
    )
    for rid, feat in zip(stats.region_ids, expected, strict=True):
        assert stats.as_dict()[rid] == pytest.approx(feat["properties"]["mean"], abs=1e-9), rid
    # Only the triangle reaches the fill block in the top-left corner.
    assert 0.95 < stats.valid_fraction[0] < 1.0
    assert stats.valid_fraction[1:] == pytest.approx(1.0)


def test_matches_exactextract_with_nodata_holes(grid_transform: Affine) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(20.0, 5.0, size=(ROWS, COLS))
    values[rng.random((ROWS, COLS)) < 0.3] = np.nan
    grid = GridSpec("EPSG:4326", grid_transform, (ROWS, COLS))
    weights = ZonalWeights.build(_regions(), grid)
    means, fraction = weights.means(values)
    xmin, ymin, xmax, ymax = grid.bounds
    source = NumPyRasterSource(values, xmin, ymin, xmax, ymax, srs_wkt="EPSG:4326")
    expected = exact_extract(
        source, region_feature_collection(POLYGONS)["features"], ["mean(coverage_weight=area_spherical_m2)"]
    )
    np.testing.assert_allclose(means, [f["properties"]["mean"] for f in expected], rtol=0, atol=1e-9)
    assert ((fraction > 0.5) & (fraction < 0.9)).all()


def test_brute_force_on_a_tiny_grid() -> None:
    # 3 × 4 cells of 1°; weights are covered-area fraction × spherical cell area. The sphere radius
    # cancels in the mean, so the cell area is taken as Δλ·(sin φ_top − sin φ_bottom).
    transform = Affine(1.0, 0.0, 10.0, 0.0, -1.0, 33.0)
    values = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, np.nan, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])
    poly = Polygon([(10.3, 30.2), (13.6, 30.5), (12.1, 32.8)])
    weights = ZonalWeights.build(_regions({"r": poly}), GridSpec("EPSG:4326", transform, (3, 4)))
    num = den = total = 0.0
    for row in range(3):
        for col in range(4):
            cell = box(10 + col, 32 - row, 11 + col, 33 - row)
            frac = poly.intersection(cell).area
            area = math.sin(math.radians(33 - row)) - math.sin(math.radians(32 - row))
            total += frac * area
            if not np.isnan(values[row, col]):
                num += frac * area * values[row, col]
                den += frac * area
    means, fraction = weights.means(values)
    # exactextract keeps coverage fractions in single precision: agreement is ~1e-8 relative, not 1e-15.
    assert means[0] == pytest.approx(num / den, rel=1e-7)
    assert fraction[0] == pytest.approx(den / total, rel=1e-7)


def test_no_valid_pixel_is_no_data_never_zero(grid_transform: Affine) -> None:
    values = np.full((ROWS, COLS), 3.0)
    values[:, :20] = np.nan  # the western third is all nodata
    polys = {
        "dry_west": box(36.1, -0.5, 36.8, 0.5),
        "outside": box(20.0, 5.0, 21.0, 6.0),
        "east": box(38, 0, 38.5, 0.5),
    }
    grid = GridSpec("EPSG:4326", grid_transform, (ROWS, COLS))
    weights = ZonalWeights.build(_regions(polys), grid)
    means, fraction = weights.means(values)
    assert np.isnan(means[0])
    assert fraction[0] == 0.0
    assert np.isnan(means[1])
    assert fraction[1] == 0.0
    assert means[2] == pytest.approx(3.0)
    assert fraction[2] == pytest.approx(1.0)


def test_weights_are_built_once_per_region_set_and_grid(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    cache = WeightCache()
    regions = _regions()
    days = []
    for day in range(5):
        path = write_geotiff(
            tmp_path / f"d{day}.tif",
            ndvi_raw + day,
            transform=grid_transform,
            nodata=-3000,
            scale=0.0001,
            units="1",
        )
        days.append(read_raster(path.read_bytes(), variable="ndvi"))
    results = [zonal_means(g, regions, cache=cache) for g in days]
    assert (cache.builds, cache.hits) == (1, 4)
    # An equal region set in another container is the same key (the fingerprint is by content).
    zonal_means(days[0], list(_regions()), cache=cache)
    assert (cache.builds, cache.hits) == (1, 5)
    # +1 count per day is +0.0001 NDVI everywhere that is valid.
    assert results[4].means - results[0].means == pytest.approx(np.full(len(regions), 0.0004), abs=1e-12)
    shifted = GridSpec("EPSG:4326", Affine(0.05, 0.0, 37.0, 0.0, -0.05, 1.0), (ROWS, COLS))
    cache.weights(regions, shifted)
    cache.weights(_regions({"square": POLYGONS["square"]}), days[0].grid)
    assert cache.builds == 3


def test_stack_equals_day_by_day(grid_transform: Affine) -> None:
    rng = np.random.default_rng(5)
    stack = rng.gamma(0.7, 5.0, size=(6, ROWS, COLS))
    stack[rng.random(stack.shape) < 0.1] = np.nan
    weights = ZonalWeights.build(_regions(), GridSpec("EPSG:4326", grid_transform, (ROWS, COLS)))
    means, fraction = weights.means_stack(stack)
    for day in range(6):
        m, f = weights.means(stack[day])
        np.testing.assert_allclose(means[:, day], m, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(fraction[:, day], f, atol=1e-12)


def test_south_up_grid_gives_the_same_means(grid_transform: Affine) -> None:
    values = np.random.default_rng(9).random((ROWS, COLS))
    north_up = ZonalWeights.build(_regions(), GridSpec("EPSG:4326", grid_transform, (ROWS, COLS)))
    south_up_transform = Affine(0.05, 0.0, 36.0, 0.0, 0.05, 1.0 - ROWS * 0.05)
    south_up = ZonalWeights.build(_regions(), GridSpec("EPSG:4326", south_up_transform, (ROWS, COLS)))
    np.testing.assert_allclose(south_up.means(values[::-1])[0], north_up.means(values)[0], atol=1e-12)


def test_regions_are_reprojected_to_a_projected_raster() -> None:
    from pyproj import Transformer

    # UTM 37N, 1 km cells; the value of each cell is its centre's easting in km: a linear field, so a
    # region's exact mean is its projected centroid's easting (to well under one cell).
    transform = Affine(1000.0, 0.0, 200_000.0, 0.0, -1000.0, 150_000.0)
    cols = np.arange(300)
    values = np.tile((200_500.0 + 1000.0 * cols) / 1000.0, (200, 1)).astype(np.float32)
    grid = GridSpec("EPSG:32637", transform, (200, 300))
    region = box(36.5, 0.3, 37.0, 0.9)
    weights = ZonalWeights.build(_regions({"r": region}), grid)
    assert weights.coverage_weight == "fraction"
    means, fraction = weights.means(values.astype(np.float64))
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32637", always_xy=True)
    projected = shapely.transform(
        region.segmentize(0.01), lambda xy: np.column_stack(to_utm.transform(*xy.T))
    )
    centroid = projected.centroid
    assert means[0] == pytest.approx(centroid.x / 1000.0, abs=0.05)
    assert fraction[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("variable", "dtype", "nodata", "scale", "offset", "units"),
    [
        ("precip", np.int16, -9999, 0.1, 0.0, "mm"),  # CHIRPS-like: counts of 0.1 mm
        ("lst", np.uint16, 0, 0.02, 0.0, "K"),  # MODIS LST: K x 0.02, read in degC (an added offset)
        ("ndvi", np.uint8, 255, 0.004, -0.1, "1"),  # an 8-bit product with scale and offset
    ],
)
def test_a_packed_rasters_means_come_from_its_counts_with_the_float64_bits(
    tmp_path: Path,
    grid_transform: Affine,
    variable: str,
    dtype: type,
    nodata: int,
    scale: float,
    offset: float,
    units: str,
) -> None:
    """A packed 8- or 16-bit raster masked by its nodata value is read without a float64 copy: its
    checks ran on the counts, ``values`` are made on first use, and its zonal means, read from the counts,
    have the bits of the means of ``values``; so do the means of every other region set."""
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    counts = rng.integers(max(int(info.min), 0) + 1, int(info.max) - 1, size=(ROWS, COLS)).astype(dtype)
    if variable == "lst":
        counts = rng.integers(12000, 18000, size=(ROWS, COLS)).astype(dtype)  # -33 to 87 degC
        counts[5, 5:9] = 18500  # 97 degC: out of the physical range
    elif variable == "precip":
        counts = rng.integers(0, 5000, size=(ROWS, COLS)).astype(dtype)  # 0 to 500 mm
        counts[5, 5:9] = -3  # negative rain: out of range
    else:
        counts[5, 5:9] = 0  # NDVI -0.1 + 0 = -0.1: in range; the range is tested on precip and LST
    counts[:3, :4] = nodata
    counts[rng.random(counts.shape) < 0.05] = nodata

    def read(name: str, stored: npt.NDArray[Any]) -> RasterGrid:
        kwargs: dict[str, Any] = {"nodata": nodata, "scale": scale, "offset": offset, "units": units}
        path = write_geotiff(tmp_path / name, stored, transform=grid_transform, **kwargs)
        return read_raster(path.read_bytes(), variable=variable)

    raster = read("packed.tif", counts)
    assert raster.packed is not None
    assert not raster.values_made  # not converted by the read
    assert raster.nodata_count == int((counts == nodata).sum())
    assert raster.out_of_range_count == (4 if variable != "ndvi" else 0)
    assert raster.valid_count == ROWS * COLS - raster.nodata_count - raster.out_of_range_count
    cache = WeightCache()
    regions = _regions()
    stats = zonal_means(raster, regions, cache=cache)
    assert not raster.values_made  # the means did not need them either
    weights = cache.weights(regions, raster.grid)
    want_means, want_fraction = weights.means(raster.values)
    assert stats.means.tobytes() == want_means.tobytes()
    assert stats.valid_fraction.tobytes() == want_fraction.tobytes()
    assert raster.values_made
    assert np.isnan(raster.values).sum() == raster.nodata_count + raster.out_of_range_count
    assert np.isfinite(stats.means).all()
    # Without the scattered nodata, most regions meet none: their denominator is the stored total
    # (fraction exactly 1), the other branch of the means.
    whole = np.where((counts == nodata) & (np.arange(ROWS)[:, None] > 3), counts[0, 10], counts).astype(dtype)
    complete = read("whole.tif", whole)
    got = zonal_means(complete, regions, cache=cache)
    want = weights.means(complete.values)
    assert got.means.tobytes() == want[0].tobytes()
    assert got.valid_fraction.tobytes() == want[1].tobytes()
    assert (got.valid_fraction == 1.0).sum() >= 2
    # The values made on first use are the conversion the read made before: float(c)*mult (+ add).
    packed = raster.packed
    assert packed.mult == pytest.approx(scale, rel=1e-12)
    assert packed.add == pytest.approx({"lst": -273.15, "ndvi": offset}.get(variable, 0.0), abs=1e-12)
    valid = ~np.isnan(raster.values)
    expected = counts.astype(np.float64) * packed.mult
    if packed.add != 0.0:
        expected = expected + packed.add
    assert raster.values[valid].tobytes() == expected[valid].tobytes()


def test_raster_means_refuses_a_raster_on_another_grid(tmp_path: Path, grid_transform: Affine) -> None:
    counts = np.full((ROWS, COLS), 50, dtype=np.int16)
    path = write_geotiff(tmp_path / "r.tif", counts, transform=grid_transform, nodata=-9999, scale=0.1)
    raster = read_raster(path.read_bytes(), variable="precip", units="mm")
    assert raster.packed is not None
    taller = GridSpec("EPSG:4326", grid_transform, (ROWS + 1, COLS))
    t = grid_transform
    shifted = GridSpec("EPSG:4326", Affine(t.a, 0.0, t.c + 1.0, 0.0, t.e, t.f), (ROWS, COLS))
    for other in (taller, shifted):  # another shape, and the same shape somewhere else
        weights = ZonalWeights.build(_regions(), other)
        with pytest.raises(ValidationError, match="is not the weights' grid") as err:
            weights.raster_means(raster)
        assert err.value.reason == "grid_mismatch"
