"""Weather feeds: CSV/JSON station series and ERA5-like gridded NetCDF, with unit normalisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from ingest.regions import parse_regions
from ingest.weather import read_weather_csv, read_weather_json, read_weather_netcdf
from ingest.zonal import WeightCache
from oracle.errors import ValidationError
from tests.fixtures.rasters import region_feature_collection, write_netcdf

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _csv_reason(text: str, **kwargs: object) -> str:
    with pytest.raises(ValidationError) as err:
        read_weather_csv(text.encode(), now=NOW, **kwargs)  # type: ignore[arg-type]
    return err.value.reason


def test_long_csv_daily_precip_in_metres() -> None:
    text = (
        "date,station_id,value,units\n"
        "2024-03-01,KE01,0.0042,m\n2024-03-02,KE01,0,m\n2024-03-01,KE02,,m\n2024-03-02,KE02,0.010,m\n"
    )
    table = read_weather_csv(text.encode(), variable="precip", now=NOW)
    assert table.frequency == "daily"
    assert table.units == "mm"
    assert list(table.data.columns) == ["KE01", "KE02"]
    assert table.series("KE01").tolist() == pytest.approx([4.2, 0.0])
    assert np.isnan(table.data.loc["2024-03-01", "KE02"])
    assert table.data.loc["2024-03-02", "KE02"] == pytest.approx(10.0)
    assert table.data.index[0] == pd.Timestamp("2024-03-01")


def test_wide_csv_monthly_rate_uses_days_in_each_month() -> None:
    # Monthly mean rates (kg m-2 s-1): February 2024 has 29 days, March 31.
    text = "date,R1,R2\n2024-02-01,1e-5,2e-5\n2024-03-01,1e-5,0\n"
    table = read_weather_csv(text.encode(), variable="precip", units="kg m-2 s-1", now=NOW)
    assert table.frequency == "monthly"
    assert table.series("R1").tolist() == pytest.approx([1e-5 * 29 * 86400, 1e-5 * 31 * 86400])
    assert table.series("R2").tolist() == pytest.approx([2e-5 * 29 * 86400, 0.0])


def test_json_temperature_in_kelvin() -> None:
    doc = {
        "units": "K",
        "records": [
            {"date": "2024-03-01", "station_id": "A", "value": 300.15},
            {"date": "2024-03-02", "station_id": "A", "value": 298.15},
        ],
    }
    table = read_weather_json(json.dumps(doc).encode(), variable="air_temperature", now=NOW)
    assert table.units == "degC"
    assert table.series("A").tolist() == pytest.approx([27.0, 25.0])


def test_csv_refusals() -> None:
    ok = "date,station_id,value\n2024-03-01,A,1\n2024-03-02,A,2\n"
    assert _csv_reason(ok, variable="precip", units="inches") == "unknown_units"
    assert _csv_reason(ok, variable="precip") == "unknown_units"
    assert _csv_reason(ok, variable="snow", units="mm") == "unknown_variable"
    assert _csv_reason("when,value\n2024-03-01,1\n", variable="precip", units="mm") == "bad_format"
    assert _csv_reason("date,station_id,value\n", variable="precip", units="mm") == "empty_feed"
    assert _csv_reason("date,station_id,value\nyesterday,A,1\n", variable="precip", units="mm") == "bad_date"
    future = "date,station_id,value\n2024-12-31,A,1\n2025-01-02,A,1\n"
    assert _csv_reason(future, variable="precip", units="mm") == "future_date"
    dup = "date,station_id,value\n2024-03-01,A,1\n2024-03-01,A,2\n"
    assert _csv_reason(dup, variable="precip", units="mm") == "duplicate_date"
    assert (
        _csv_reason(
            "date,station_id,value\n2024-03-01,A,lots\n2024-03-02,A,1\n", variable="precip", units="mm"
        )
        == "bad_value"
    )
    weekly = "date,station_id,value\n2024-03-01,A,1\n2024-03-08,A,2\n"
    assert _csv_reason(weekly, variable="precip", units="mm") == "bad_frequency"
    assert (
        _csv_reason("date,station_id,value\n2024-03-01,A,1\n", variable="precip", units="mm")
        == "bad_frequency"
    )
    negative = "date,station_id,value\n2024-03-01,A,-5\n2024-03-02,A,-1\n"
    assert _csv_reason(negative, variable="precip", units="mm") == "out_of_range"
    mixed = "date,station_id,value,units\n2024-03-01,A,1,mm\n2024-03-02,A,1,m\n"
    assert _csv_reason(mixed, variable="precip") == "unknown_units"


def test_one_odd_value_among_many_is_masked_and_counted() -> None:
    rows = "".join(f"2024-03-{d:02d},A,{d}\n" for d in range(1, 31))
    text = "date,station_id,value\n" + rows + "2024-03-31,A,-3\n"
    table = read_weather_csv(text.encode(), variable="precip", units="mm", now=NOW)
    assert table.out_of_range_count == 1
    assert np.isnan(table.series("A").iloc[-1])


def test_json_refusals() -> None:
    with pytest.raises(ValidationError) as err:
        read_weather_json(b"[1, 2]", variable="precip")
    assert err.value.reason == "bad_format"
    with pytest.raises(ValidationError) as err:
        read_weather_json(
            json.dumps({"units": "mm", "records": [{"date": "2024-03-01"}]}).encode(), variable="precip"
        )
    assert err.value.reason == "bad_format"


def test_era5_like_netcdf_in_metres_on_0_360_longitudes(tmp_path: Path) -> None:
    # 0.25° grid over 36…40° E, 2° S…2° N written with ERA5's conventions: latitudes descending,
    # longitudes 0…360 (here all < 180 except none), tp in metres per day.
    lat = np.arange(2.0 - 0.125, -2.0, -0.25)
    lon = np.arange(36.125, 40.0, 0.25)
    days = pd.date_range("2024-03-01", periods=4, freq="D")
    tp = np.zeros((4, lat.size, lon.size))
    tp[:, :, lon < 38.0] = 0.002  # 2 mm/day in the west
    tp[:, :, lon >= 38.0] = 0.010  # 10 mm/day in the east
    tp[2, :, :] = np.nan  # a missing day
    path = write_netcdf(
        tmp_path / "era5.nc", tp, var_name="tp", lat=lat, lon=lon, times=list(days.values), units="m"
    )
    regions = parse_regions(
        region_feature_collection({"west": box(36.2, -1.0, 37.5, 1.0), "east": box(38.5, -1.0, 39.5, 1.0)})
    )
    cache = WeightCache()
    table = read_weather_netcdf(path.read_bytes(), variable="precip", regions=regions, now=NOW, cache=cache)
    assert table.frequency == "daily"
    assert table.series("west").iloc[[0, 1, 3]].tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert table.series("east").iloc[[0, 1, 3]].tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert table.series("east").isna().iloc[2]
    assert table.valid_fraction is not None
    assert table.valid_fraction.iloc[2].tolist() == [0.0, 0.0]
    assert cache.builds == 1


def test_netcdf_longitudes_past_180_are_wrapped(tmp_path: Path) -> None:
    lat = np.arange(1.875, -2.0, -0.25)
    lon = np.arange(0.125, 360.0, 0.25)
    days = pd.date_range("2024-03-01", periods=2, freq="D")
    t2m = np.full((2, lat.size, lon.size), 290.15)
    t2m[:, :, lon > 180.0] = 300.15  # the western hemisphere is hotter
    path = write_netcdf(
        tmp_path / "t2m.nc", t2m, var_name="t2m", lat=lat, lon=lon, times=list(days.values), units="K"
    )
    regions = parse_regions(
        region_feature_collection({"east": box(36.0, -1.0, 37.0, 1.0), "west": box(-60.0, -1.0, -59.0, 1.0)})
    )
    table = read_weather_netcdf(
        path.read_bytes(), variable="air_temperature", regions=regions, now=NOW, cache=WeightCache()
    )
    assert table.series("east").tolist() == pytest.approx([17.0, 17.0])
    assert table.series("west").tolist() == pytest.approx([27.0, 27.0])
