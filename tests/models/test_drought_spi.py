"""SPI agrees with climate_indices 3.1.0 (the reference implementation) to 1e-3 where |SPI| < 3."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("CLIMATE_INDICES_LOG_LEVEL", "ERROR")

from climate_indices import compute, indices

from models.drought.spi import SPI_LIMIT, spi, spi_cube
from oracle.errors import ValidationError

TOLERANCE = 1e-3


def reference(precip: np.ndarray, scale: int, start_year: int, first: int, last: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result: np.ndarray = indices.spi(
            precip.copy(),
            scale,
            indices.Distribution.gamma,
            start_year,
            first,
            last,
            compute.Periodicity.monthly,
        )
    return result


def assert_agrees(ours: np.ndarray, theirs: np.ndarray) -> int:
    """Same NaN pattern; equal to TOLERANCE where either is inside ±3; returns values compared."""
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    inside = (np.abs(ours) < 3.0) | (np.abs(theirs) < 3.0)
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=TOLERANCE, rtol=0)
    return int(inside.sum())


def seasonal_rain(rng: np.random.Generator, years: int, base: float, shape: float) -> np.ndarray:
    month = np.arange(12 * years) % 12
    mean = base * (1.0 + 0.6 * np.cos(2 * np.pi * (month - 6) / 12))
    return np.round(rng.gamma(shape, mean / shape), 1)


@pytest.mark.parametrize("scale", [1, 3, 6])
def test_humid_series_agrees(scale: int) -> None:
    precip = seasonal_rain(np.random.default_rng(1), 40, 80.0, 2.5)
    ours = spi(precip, scale=scale, calibration=(1981, 2010), start_year=1981)
    assert assert_agrees(ours, reference(precip, scale, 1981, 1981, 2010)) > 400
    assert np.all(np.isnan(ours[: scale - 1]))


@pytest.mark.parametrize("scale", [1, 3, 6])
def test_arid_series_with_many_zero_months_agrees(scale: int) -> None:
    rng = np.random.default_rng(2)
    precip = seasonal_rain(rng, 35, 8.0, 0.6)
    precip[rng.random(precip.size) < 0.6] = 0.0
    precip[6::12] = 0.0  # a calendar month that never rains: zeros score -3.09, not +inf
    assert np.mean(precip == 0.0) > 0.55
    ours = spi(precip, scale=scale, calibration=(1990, 2019), start_year=1985)
    assert_agrees(ours, reference(precip, scale, 1985, 1990, 2019))
    if scale == 1:
        assert np.all(ours[6::12] == -SPI_LIMIT)


@pytest.mark.parametrize("scale", [1, 3, 6])
def test_short_calibration_and_missing_months_agree(scale: int) -> None:
    rng = np.random.default_rng(3)
    precip = seasonal_rain(rng, 20, 50.0, 1.5)
    precip[rng.random(precip.size) < 0.1] = 0.0
    precip[[17, 100, 101, 230]] = np.nan
    ours = spi(precip, scale=scale, calibration=(2003, 2006), start_year=2000)
    assert_agrees(ours, reference(precip, scale, 2000, 2003, 2006))
    assert np.isnan(ours[100 + scale - 1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    years=st.integers(3, 30),
    zero_share=st.floats(0.0, 0.9),
    shape=st.floats(0.3, 5.0),
    scale=st.sampled_from([1, 3, 6]),
)
def test_generated_series_agree(seed: int, years: int, zero_share: float, shape: float, scale: int) -> None:
    rng = np.random.default_rng(seed)
    precip = np.round(rng.gamma(shape, 40.0 / shape, 12 * years), 1)
    precip[rng.random(precip.size) < zero_share] = 0.0
    first = 2000 + int(rng.integers(0, years))
    last = int(rng.integers(first, 2000 + years))
    ours = spi(precip, scale=scale, calibration=(first, last), start_year=2000)
    assert_agrees(ours, reference(precip, scale, 2000, first, last))


def test_cube_equals_series_by_series() -> None:
    rng = np.random.default_rng(4)
    cube = np.stack([seasonal_rain(rng, 15, b, 1.2) for b in (5.0, 30.0, 90.0, 150.0, 12.0, 60.0)], axis=1)
    cube[rng.random(cube.shape) < 0.3] = 0.0
    cube = cube.reshape(cube.shape[0], 2, 3)
    result = spi_cube(cube, scale=3)
    assert result.shape == cube.shape
    for y in range(2):
        for x in range(3):
            np.testing.assert_allclose(result[:, y, x], spi(cube[:, y, x], scale=3), atol=1e-12, rtol=0)


def test_start_month_shifts_calendar_months() -> None:
    precip = seasonal_rain(np.random.default_rng(5), 12, 60.0, 2.0)
    full = spi(precip, scale=1)
    # The same data starting in April: calendar months and fits unchanged except the first year's
    # January–March are not there, so compare with a January start on data that also lacks them.
    trimmed = precip.copy()
    trimmed[:3] = np.nan
    np.testing.assert_allclose(spi(precip[3:], scale=1, start_month=4), spi(trimmed, scale=1)[3:], atol=1e-12)
    assert not np.allclose(spi(precip[3:], scale=1), full[3:], equal_nan=True)


def test_drought_months_score_negative() -> None:
    precip = seasonal_rain(np.random.default_rng(6), 30, 70.0, 3.0)
    precip[-6:] *= 0.1
    assert np.all(spi(precip, scale=3)[-4:] < -1.5)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"scale": 0}, "scale"),
        ({"scale": 3, "start_month": 13}, "month"),
        ({"scale": 3, "calibration": (2001, 2005)}, "calibration"),
        ({"scale": 3, "calibration": (2030, 2040), "start_year": 2000}, "calibration"),
        ({"scale": 3, "calibration": (2005, 2001), "start_year": 2000}, "calibration"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError) as error:
        spi(np.ones(48), **kwargs)  # type: ignore[arg-type]
    assert error.value.reason == reason


def test_negative_precipitation_is_refused() -> None:
    with pytest.raises(ValidationError, match="negative") as error:
        spi(np.array([1.0, -2.0, 3.0] * 12), scale=1)
    assert error.value.reason == "negative_precip"
