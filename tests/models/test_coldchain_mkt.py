"""Mean kinetic temperature: the reference example, weighting, properties and refused input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.coldchain.mkt import mean_kinetic_temperature
from oracle.errors import ValidationError


def test_reference_example_18h_at_5_and_6h_at_14() -> None:
    ts = np.arange(24) * 3600
    temps = np.r_[np.full(18, 5.0), np.full(6, 14.0)]
    assert round(mean_kinetic_temperature(ts, temps), 2) == 8.29


def test_uneven_sampling_is_weighted_by_time() -> None:
    # 5 °C held 18 h, 14 °C held 6 h, then 5 °C for two hourly readings: same as 26 hourly readings.
    ts = np.array([0, 18 * 3600, 24 * 3600, 25 * 3600])
    temps = np.array([5.0, 14.0, 5.0, 5.0])
    even_ts = np.arange(26) * 3600
    even = np.r_[np.full(18, 5.0), np.full(6, 14.0), [5.0, 5.0]]
    assert mean_kinetic_temperature(ts, temps) == pytest.approx(mean_kinetic_temperature(even_ts, even))
    # Equal weights would have given 14 °C a quarter of the weight instead of 6/26.
    assert mean_kinetic_temperature(ts, temps) < mean_kinetic_temperature(np.arange(4) * 3600, temps)


def test_even_sampling_equals_equal_weight_formula() -> None:
    temps = np.array([2.0, 4.5, 8.0, 11.0, 6.0])
    kelvin = temps + 273.15
    textbook = 10000.0 / -math.log(float(np.mean(np.exp(-10000.0 / kelvin)))) - 273.15
    assert mean_kinetic_temperature(np.arange(5) * 600, temps) == pytest.approx(textbook, abs=1e-9)


def test_ultra_cold_keeps_precision() -> None:
    assert mean_kinetic_temperature(np.arange(3) * 600, [-80.0, -80.0, -80.0]) == pytest.approx(-80.0)


temps_strategy = st.lists(
    st.floats(min_value=-100.0, max_value=60.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    temps=temps_strategy, steps=st.lists(st.integers(min_value=1, max_value=7200), min_size=40, max_size=40)
)
def test_mkt_between_mean_and_max(temps: list[float], steps: list[int]) -> None:
    ts = np.concatenate(([0], np.cumsum(steps[: len(temps) - 1]))).astype(np.int64)
    arr = np.array(temps)
    value = mean_kinetic_temperature(ts, arr)
    weights = np.r_[np.diff(ts), np.diff(ts)[-1:]] if len(temps) > 1 else np.ones(1)
    weighted_mean = float(np.sum(weights * arr) / np.sum(weights))
    assert arr.min() - 1e-6 <= value <= arr.max() + 1e-6
    assert value >= weighted_mean - 1e-6


@settings(max_examples=50, deadline=None)
@given(value=st.floats(min_value=-95.0, max_value=50.0), n=st.integers(min_value=1, max_value=30))
def test_constant_series_is_that_constant(value: float, n: int) -> None:
    assert mean_kinetic_temperature(np.arange(n) * 600, np.full(n, value)) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize(
    ("ts", "temps", "reason"),
    [
        ([], [], "empty"),
        ([0, 600, 600], [5.0, 5.0, 5.0], "timestamps"),
        ([0, 600, 300], [5.0, 5.0, 5.0], "timestamps"),
        ([0, 600], [5.0, float("nan")], "non_finite"),
        ([0, 600], [5.0, float("inf")], "non_finite"),
        ([0, 600], [5.0, -274.0], "below_absolute_zero"),
        ([0, 600], [5.0], "shape"),
    ],
)
def test_bad_input_is_refused(ts: list[int], temps: list[float], reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        mean_kinetic_temperature(np.array(ts), np.array(temps))
    assert info.value.reason == reason
