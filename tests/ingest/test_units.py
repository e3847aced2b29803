"""Unit normalisation: every accepted spelling converts right; unknown spellings are refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.units import (
    Quantity,
    normalise_unit,
    precipitation_to_mm,
    soil_moisture_to_fraction,
    temperature_to_celsius,
    to_canonical,
)
from oracle.errors import ValidationError


def test_precipitation_depths_and_rates_become_mm_over_the_step() -> None:
    assert precipitation_to_mm(np.array([3.5]), "mm")[0] == 3.5
    assert precipitation_to_mm(np.array([0.0042]), "m")[0] == pytest.approx(4.2)
    # 1 kg m-2 s-1 of water is 1 mm per second: a day of 1e-4 kg m-2 s-1 is 8.64 mm.
    assert precipitation_to_mm(np.array([1e-4]), "kg m-2 s-1", step_seconds=86_400)[0] == pytest.approx(8.64)
    assert precipitation_to_mm(np.array([1e-4]), "kg m**-2 s**-1", step_seconds=31 * 86_400)[
        0
    ] == pytest.approx(267.84)


def test_a_rate_without_a_step_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        precipitation_to_mm(np.array([1e-4]), "kg m-2 s-1")
    assert err.value.reason == "missing_step"


def test_temperature_kelvin_and_celsius() -> None:
    assert temperature_to_celsius(np.array([273.15]), "K")[0] == pytest.approx(0.0)
    assert temperature_to_celsius(np.array([300.0]), "kelvin")[0] == pytest.approx(26.85)
    assert temperature_to_celsius(np.array([21.5]), "°C")[0] == 21.5
    assert temperature_to_celsius(np.array([21.5]), "degC")[0] == 21.5


def test_soil_moisture_percent_becomes_fraction() -> None:
    assert soil_moisture_to_fraction(np.array([35.0]), "%")[0] == pytest.approx(0.35)
    assert soil_moisture_to_fraction(np.array([0.35]), "m3 m-3")[0] == 0.35


@pytest.mark.parametrize(
    ("quantity", "units"),
    [
        (Quantity.PRECIPITATION, "inches"),
        (Quantity.PRECIPITATION, None),
        (Quantity.TEMPERATURE, "degF"),
        (Quantity.SOIL_MOISTURE, "kg/m2"),
        (Quantity.NDVI, "mm"),
    ],
)
def test_unknown_or_missing_units_are_refused(quantity: Quantity, units: str | None) -> None:
    with pytest.raises(ValidationError) as err:
        to_canonical(quantity, np.array([1.0]), units)
    assert err.value.reason == "unknown_units"


def test_ndvi_needs_no_unit_and_spellings_are_case_and_space_insensitive() -> None:
    assert normalise_unit(Quantity.NDVI, None) == "1"
    assert normalise_unit(Quantity.PRECIPITATION, "  KG  m-2 S-1 ") == "kg m-2 s-1"


@given(st.floats(min_value=-100.0, max_value=100.0, allow_nan=False))
def test_kelvin_round_trip(celsius: float) -> None:
    kelvin = celsius + 273.15
    assert temperature_to_celsius(np.array([kelvin]), "K")[0] == pytest.approx(celsius, abs=1e-9)
