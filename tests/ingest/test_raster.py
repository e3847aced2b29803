"""read_raster on real GeoTIFF, COG and NetCDF files, and every refusal reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import rasterio
from affine import Affine

from ingest.raster import OUT_OF_RANGE_LIMIT, read_raster
from oracle.errors import ValidationError
from tests.fixtures.rasters import write_cog, write_geotiff, write_netcdf
from tests.ingest.conftest import COLS, ROWS, cell_centres

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _ndvi_tif(path: Path, raw: npt.NDArray[np.int16], transform: Affine, **kw: object) -> bytes:
    opts: dict[str, object] = {"nodata": -3000, "scale": 0.0001, "units": "1", "time": "2024-03-01T00:00:00Z"}
    opts.update(kw)
    return write_geotiff(path, raw, transform=transform, **opts).read_bytes()  # type: ignore[arg-type]


def _reason(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ValidationError) as err:
        read_raster(data, now=NOW, **kwargs)  # type: ignore[arg-type]
    return err.value.reason


def test_geotiff_ndvi_is_scaled_masked_and_time_stamped(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    data = _ndvi_tif(tmp_path / "ndvi.tif", ndvi_raw, grid_transform)
    grid = read_raster(data, variable="ndvi", name="modis", now=NOW)
    assert grid.shape == (ROWS, COLS)
    assert grid.crs == "EPSG:4326"
    assert grid.transform == grid_transform
    assert grid.time == datetime(2024, 3, 1, tzinfo=UTC)
    assert grid.nodata_count == 12
    assert np.isnan(grid.values[:3, :4]).all()
    np.testing.assert_allclose(grid.values[5:], ndvi_raw[5:] * 0.0001)
    assert grid.units == "1"
    assert grid.valid_count == ROWS * COLS - 12


def test_cog_reads_the_same_as_the_plain_geotiff(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    big = np.tile(ndvi_raw, (8, 8))  # 320 × 480: large enough for 256-pixel tiles and an overview
    transform = grid_transform
    cog = write_cog(
        tmp_path / "ndvi_cog.tif",
        big,
        transform=transform,
        nodata=-3000,
        scale=0.0001,
        units="1",
        time="2024-03-01",
    )
    with rasterio.open(cog) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1)
    plain = _ndvi_tif(tmp_path / "plain.tif", big, transform)
    a = read_raster(cog.read_bytes(), variable="ndvi", now=NOW)
    b = read_raster(plain, variable="ndvi", now=NOW)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.grid == b.grid


def test_netcdf_packed_ndvi_with_ascending_latitudes_matches_the_geotiff(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    lat, lon = cell_centres()
    physical = np.where(ndvi_raw == -3000, np.nan, ndvi_raw * 0.0001)
    # Store south → north, as many NetCDF producers do; the reader must flip it back.
    nc = write_netcdf(
        tmp_path / "ndvi.nc",
        physical[::-1][None],
        var_name="NDVI",
        lat=lat[::-1],
        lon=lon,
        times=[np.datetime64("2024-03-01")],
        units="1",
        scale=0.0001,
        fill=-3000,
        dtype="int16",
    )
    from_nc = read_raster(nc.read_bytes(), variable="ndvi", now=NOW)
    from_tif = read_raster(_ndvi_tif(tmp_path / "n.tif", ndvi_raw, grid_transform), variable="ndvi", now=NOW)
    assert from_nc.grid == from_tif.grid
    assert from_nc.time == from_tif.time
    assert from_nc.nodata_count == 12
    np.testing.assert_allclose(from_nc.values, from_tif.values, equal_nan=True)


def test_lst_kelvin_counts_become_celsius(tmp_path: Path, grid_transform: Affine) -> None:
    kelvin = np.full((ROWS, COLS), 300.0)
    raw = np.round(kelvin / 0.02).astype(np.uint16)  # MODIS LST: K × 0.02, fill 0
    raw[0, 0] = 0
    path = write_geotiff(tmp_path / "lst.tif", raw, transform=grid_transform, nodata=0, scale=0.02, units="K")
    grid = read_raster(path.read_bytes(), variable="lst", now=NOW)
    assert grid.units == "degC"
    assert grid.source_units == "K"
    assert np.nanmax(np.abs(grid.values - 26.85)) < 1e-9
    assert grid.nodata_count == 1
    assert grid.time is None


def test_soil_moisture_percent_and_projected_crs(tmp_path: Path) -> None:
    utm = Affine(5000.0, 0.0, 200_000.0, 0.0, -5000.0, 100_000.0)  # UTM 37N, 5 km cells
    values = np.full((20, 30), 25.0, dtype=np.float32)
    path = write_geotiff(tmp_path / "sm.tif", values, transform=utm, crs="EPSG:32637", nodata=-1.0, units="%")
    grid = read_raster(path.read_bytes(), variable="soil_moisture", now=NOW)
    assert grid.crs == "EPSG:32637"
    assert not grid.grid.is_geographic
    np.testing.assert_allclose(grid.values, 0.25)


def test_chirps_like_precip_without_unit_metadata_needs_units(tmp_path: Path, grid_transform: Affine) -> None:
    values = np.random.default_rng(1).gamma(0.6, 6.0, size=(ROWS, COLS)).astype(np.float32)
    values[10, 10] = -9999.0
    data = write_geotiff(
        tmp_path / "chirps.tif", values, transform=grid_transform, nodata=-9999.0
    ).read_bytes()
    assert _reason(data, variable="precip") == "unknown_units"
    grid = read_raster(data, variable="precip", units="mm", now=NOW)
    assert grid.nodata_count == 1
    np.testing.assert_allclose(np.nansum(grid.values), values[values >= 0].astype(np.float64).sum())


def test_a_few_out_of_range_pixels_are_masked_and_counted(tmp_path: Path, grid_transform: Affine) -> None:
    values = np.full((ROWS, COLS), 5.0, dtype=np.float32)
    values[0, :3] = -7.0  # negative rain: a sensor artefact, masked and counted
    data = write_geotiff(
        tmp_path / "p.tif", values, transform=grid_transform, nodata=-9999.0, units="mm"
    ).read_bytes()
    grid = read_raster(data, variable="precip", now=NOW)
    assert grid.out_of_range_count == 3
    assert np.isnan(grid.values[0, :3]).all()
    assert grid.valid_count == ROWS * COLS - 3


def test_many_out_of_range_pixels_refuse_the_raster(tmp_path: Path, grid_transform: Affine) -> None:
    values = np.full((ROWS, COLS), 5.0, dtype=np.float32)
    bad_rows = int(ROWS * (OUT_OF_RANGE_LIMIT * 2))
    values[:bad_rows] = 5000.0
    data = write_geotiff(tmp_path / "p.tif", values, transform=grid_transform, units="mm").read_bytes()
    assert _reason(data, variable="precip") == "out_of_range"


def test_file_valid_range_tags_mask_raw_counts(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    raw = ndvi_raw.copy()
    raw[20, 20] = 12000  # outside MODIS valid_range −2000…10000, but not the nodata value
    data = _ndvi_tif(tmp_path / "n.tif", raw, grid_transform, tags={"valid_range": "-2000,10000"})
    grid = read_raster(data, variable="ndvi", now=NOW)
    assert np.isnan(grid.values[20, 20])
    assert grid.out_of_range_count == 1


def test_truncated_and_garbage_files_are_corrupt(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    tif = _ndvi_tif(tmp_path / "n.tif", ndvi_raw, grid_transform)
    big = np.tile(ndvi_raw, (8, 8))
    cog = write_cog(tmp_path / "c.tif", big, transform=grid_transform, nodata=-3000, scale=0.0001, units="1")
    cog_bytes = cog.read_bytes()
    lat, lon = cell_centres()
    nc = write_netcdf(
        tmp_path / "x.nc", np.ones((ROWS, COLS)), var_name="ndvi", lat=lat, lon=lon
    ).read_bytes()
    for bad in (
        tif[: len(tif) // 2],  # IFD at the end of a plain GeoTIFF is lost
        cog_bytes[: len(cog_bytes) // 2],  # COG header intact, tiles missing
        nc[: len(nc) // 2],
        b"",
        b"definitely not a raster",
        b"II*\x00" + b"\x00" * 64,
    ):
        assert _reason(bad, variable="ndvi") == "corrupt_file"


def test_missing_crs_in_geotiff_and_netcdf(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    assert (
        _reason(_ndvi_tif(tmp_path / "n.tif", ndvi_raw, grid_transform, crs=None), variable="ndvi")
        == "missing_crs"
    )
    xs = 500_000.0 + 1000.0 * np.arange(COLS)
    ys = 9_000_000.0 - 1000.0 * np.arange(ROWS)
    nc = write_netcdf(
        tmp_path / "xy.nc", np.ones((ROWS, COLS)) * 0.5, var_name="ndvi", lat=ys, lon=xs, dims=("y", "x")
    )
    assert _reason(nc.read_bytes(), variable="ndvi") == "missing_crs"


def test_netcdf_grid_mapping_gives_the_crs(tmp_path: Path) -> None:
    from pyproj import CRS

    xs = 500_000.0 + 1000.0 * np.arange(COLS)
    ys = 9_000_000.0 - 1000.0 * np.arange(ROWS)
    nc = write_netcdf(
        tmp_path / "xy.nc",
        np.ones((ROWS, COLS)) * 0.5,
        var_name="ndvi",
        lat=ys,
        lon=xs,
        dims=("y", "x"),
        grid_mapping_wkt=CRS.from_epsg(32737).to_wkt(),
    )
    grid = read_raster(nc.read_bytes(), variable="ndvi", now=NOW)
    assert grid.crs == "EPSG:32737"
    assert grid.transform == Affine(1000.0, 0.0, 499_500.0, 0.0, -1000.0, 9_000_500.0)


def test_all_nodata_is_refused(tmp_path: Path, grid_transform: Affine) -> None:
    raw = np.full((ROWS, COLS), -3000, dtype=np.int16)
    assert _reason(_ndvi_tif(tmp_path / "n.tif", raw, grid_transform), variable="ndvi") == "all_nodata"


def test_future_and_unparseable_dates(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    future = _ndvi_tif(tmp_path / "f.tif", ndvi_raw, grid_transform, time="2025-06-01")
    assert _reason(future, variable="ndvi") == "future_date"
    garbled = _ndvi_tif(tmp_path / "g.tif", ndvi_raw, grid_transform, time="first of March")
    assert _reason(garbled, variable="ndvi") == "bad_date"
    tiff_style = _ndvi_tif(
        tmp_path / "t.tif",
        ndvi_raw,
        grid_transform,
        time=None,
        tags={"TIFFTAG_DATETIME": "2024:03:01 12:00:00"},
    )
    assert read_raster(tiff_style, variable="ndvi", now=NOW).time == datetime(2024, 3, 1, 12, tzinfo=UTC)


def test_unknown_variable_and_units(
    tmp_path: Path, ndvi_raw: npt.NDArray[np.int16], grid_transform: Affine
) -> None:
    data = _ndvi_tif(tmp_path / "n.tif", ndvi_raw, grid_transform)
    assert _reason(data, variable="evi") == "unknown_variable"
    odd = _ndvi_tif(tmp_path / "u.tif", ndvi_raw, grid_transform, units="furlongs")
    assert _reason(odd, variable="ndvi") == "unknown_units"


def test_netcdf_without_the_variable_or_with_many_steps(tmp_path: Path) -> None:
    lat, lon = cell_centres()
    other = write_netcdf(tmp_path / "o.nc", np.ones((ROWS, COLS)), var_name="evi", lat=lat, lon=lon)
    assert _reason(other.read_bytes(), variable="ndvi") == "missing_variable"
    times = [np.datetime64("2024-03-01"), np.datetime64("2024-03-02")]
    two = write_netcdf(
        tmp_path / "t.nc", np.ones((2, ROWS, COLS)), var_name="tp", lat=lat, lon=lon, times=times, units="m"
    )
    assert _reason(two.read_bytes(), variable="precip") == "multiple_times"
