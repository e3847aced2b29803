"""VCI/TCI/VHI, NDVI anomaly, dry spell and soil-moisture percentile on values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.drought.dry_spell import longest_dry_spell
from models.drought.soil_moisture import soil_moisture_percentile
from models.drought.vegetation import (
    ndvi_anomaly,
    temperature_condition_index,
    vegetation_condition_index,
    vegetation_health_index,
)
from oracle.errors import ValidationError


def test_vci_tci_vhi_known_values() -> None:
    # NDVI 0.45 in a 0.2…0.7 range is half way: VCI 50. BT 305 K in 295…315 K: TCI 50.
    assert vegetation_condition_index(0.45, 0.2, 0.7) == pytest.approx(50.0)
    assert vegetation_condition_index(0.2, 0.2, 0.7) == pytest.approx(0.0)
    assert temperature_condition_index(305.0, 295.0, 315.0) == pytest.approx(50.0)
    assert temperature_condition_index(315.0, 295.0, 315.0) == pytest.approx(0.0)  # hottest = worst
    vci = vegetation_condition_index(np.array([0.3, 0.6]), 0.2, 0.7)
    tci = temperature_condition_index(np.array([311.0, 297.0]), 295.0, 315.0)
    np.testing.assert_allclose(vci, [20.0, 80.0])
    np.testing.assert_allclose(tci, [20.0, 90.0])
    np.testing.assert_allclose(vegetation_health_index(vci, tci), [20.0, 85.0])
    np.testing.assert_allclose(vegetation_health_index(vci, tci, weight=0.25), [20.0, 87.5])


def test_condition_indices_undefined_and_refused() -> None:
    assert np.isnan(vegetation_condition_index(0.4, 0.4, 0.4))
    with pytest.raises(ValidationError, match="min > max"):
        vegetation_condition_index(0.4, 0.7, 0.2)
    with pytest.raises(ValidationError, match="min > max"):
        temperature_condition_index(300.0, 310.0, 290.0)
    with pytest.raises(ValidationError, match="weight"):
        vegetation_health_index(50.0, 50.0, weight=1.5)


def test_ndvi_anomaly_per_pixel() -> None:
    # Pixel 0: past 0.4, 0.5, 0.6 → mean 0.5, sd 0.1; 0.3 is z = -2. Pixel 1 has a gap and sd 0.
    past = np.array([[0.4, 0.2], [0.5, np.nan], [0.6, 0.2]])
    z = ndvi_anomaly(np.array([0.3, 0.25]), past)
    assert z[0] == pytest.approx(-2.0)
    assert np.isnan(z[1])


def test_longest_dry_spell() -> None:
    days = np.array([5.0, 0.0, 0.2, 0.9, 3.0, 0.0, 0.0, 1.0, 0.0])
    assert int(longest_dry_spell(days)) == 3
    assert int(longest_dry_spell(days, threshold_mm=5.0)) == 8  # everything after the first day is < 5 mm
    # A missing day breaks the run: unknown is not dry.
    assert int(longest_dry_spell(np.array([0.0, 0.0, np.nan, 0.0]))) == 2
    grid = np.stack([days, np.full(9, 10.0)], axis=1)
    np.testing.assert_array_equal(longest_dry_spell(grid), [3, 0])
    with pytest.raises(ValidationError, match="negative"):
        longest_dry_spell(np.array([1.0, -1.0]))


def test_soil_moisture_percentile() -> None:
    past = np.array([10.0, 20.0, 30.0, 40.0])
    assert soil_moisture_percentile(25.0, past) == pytest.approx(50.0)
    assert soil_moisture_percentile(5.0, past) == pytest.approx(0.0)
    assert soil_moisture_percentile(20.0, past) == pytest.approx(37.5)  # mid-rank: 1 below + ½ tie
    grid = soil_moisture_percentile(np.array([15.0, 50.0]), np.stack([past, past], axis=1))
    np.testing.assert_allclose(grid, [25.0, 100.0])
    assert np.isnan(soil_moisture_percentile(np.nan, past))


def test_region_features_feed_the_shipped_model() -> None:
    from models.drought.region_features import RegionObservations, region_features
    from models.drought.severity import load_shipped

    rng = np.random.default_rng(9)
    rain = rng.gamma(2.0, 30.0, 12 * 20)
    common = {
        "start_year": 2000,
        "start_month": 1,
        "ndvi_history": rng.normal(0.55, 0.05, 19),
        "lst_history_c": rng.normal(30.0, 1.5, 19),
        "soil_moisture_history": rng.normal(0.3, 0.05, 19),
    }
    wet = RegionObservations(
        monthly_precip_mm=rain,
        daily_precip_mm=np.full(31, 4.0),
        ndvi=0.6,
        lst_c=29.0,
        soil_moisture=0.35,
        **common,
    )
    parched = rain.copy()
    parched[-6:] = 0.5
    dry = RegionObservations(
        monthly_precip_mm=parched,
        daily_precip_mm=np.zeros(31),
        ndvi=0.4,
        lst_c=34.0,
        soil_moisture=0.18,
        **common,
    )
    wet_row, dry_row = region_features(wet), region_features(dry)
    assert dry_row.loc[0, "month"] == 12.0
    assert dry_row.loc[0, "dry_spell_days"] == 31.0
    assert dry_row.loc[0, "spi_3"] < -2.0 < wet_row.loc[0, "spi_3"]
    assert dry_row.loc[0, "sm_percentile"] < 10.0 < wet_row.loc[0, "sm_percentile"]
    model, _ = load_shipped()
    wet_score, dry_score = model.predict(wet_row)[0], model.predict(dry_row)[0]
    assert dry_score.score > 3.0 > 1.0 > wet_score.score
