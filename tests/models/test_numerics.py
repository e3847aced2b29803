"""The deterministic elementary functions: accurate against libm, exact on special values, and the
canonical quantisation's contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import numerics as nm


def ulps(got: float, want: float) -> float:
    if got == want:
        return 0.0
    return abs(got - want) / math.ulp(want)


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-745.0, max_value=709.0))
def test_exp_within_two_ulp(x: float) -> None:
    want = math.exp(x)
    if want < 2.2250738585072014e-308:  # subnormal results lose relative precision by nature
        assert abs(nm.exp(x) - want) <= 2 * 5e-324
    else:
        assert ulps(nm.exp(x), want) <= 2


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=5e-324, max_value=1.7e308))
def test_log_within_two_ulp(x: float) -> None:
    assert ulps(nm.log(x), math.log(x)) <= 2 or abs(nm.log(x) - math.log(x)) <= 1e-300


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-1.0e5, max_value=1.0e5))
def test_sin_cos_within_two_ulp_or_tiny_absolute(x: float) -> None:
    # Near a zero of sin/cos the result is tiny and the reduction's absolute error (~1e-22 for |x| ≤ 1e5)
    # dominates; elsewhere the relative bound holds.
    for ours, theirs in ((nm.sin, math.sin), (nm.cos, math.cos)):
        got, want = ours(x), theirs(x)
        assert ulps(got, want) <= 2 or abs(got - want) <= 1e-20


def test_special_values() -> None:
    assert nm.exp(0.0) == 1.0
    assert nm.log(1.0) == 0.0
    assert nm.sin(0.0) == 0.0
    assert nm.cos(0.0) == 1.0
    assert list(nm.exp(np.array([710.0, -746.0, np.inf, -np.inf]))) == [np.inf, 0.0, np.inf, 0.0]
    assert np.isnan(nm.exp(np.nan))
    assert np.isnan(nm.log(-1.0))
    assert np.isnan(nm.sin(np.inf))
    assert nm.log(0.0) == -np.inf
    assert nm.log(np.inf) == np.inf
    assert nm.power(0.5, 2.0) == 0.25
    assert nm.power(0.0, 3.0) == 0.0
    assert nm.power(0.0, 0.0) == 1.0
    with pytest.raises(ValueError, match="within"):
        nm.sin(1e7)


def test_array_and_scalar_agree_and_keep_shape() -> None:
    x = np.linspace(-20.0, 20.0, 24).reshape(4, 6)
    for f in (nm.exp, nm.sin, nm.cos):
        out = f(x)
        assert out.shape == (4, 6)
        assert [f(float(v)) for v in x.ravel()] == list(out.ravel())
    assert nm.log(np.abs(x) + 1).shape == (4, 6)


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=-1e250, max_value=1e250, allow_subnormal=False))
def test_quantise_keeps_nine_significant_digits(x: float) -> None:
    q = nm.quantise(x)
    if abs(x) < 1e-280:
        assert q == x
        return
    assert abs(q - x) <= 5.1e-9 * abs(x)
    assert float(f"{q:.10g}") == pytest.approx(q, rel=1e-15)  # at most 10 digits carry information


def test_quantise_walks_structures_and_leaves_non_floats() -> None:
    value = {"a": [1 / 3, 2, "x", None, True], "b": (float("nan"), np.float64(2 / 3)), "c": np.array([1 / 7])}
    q = nm.quantise(value)
    assert q["a"] == [0.333333333, 2, "x", None, True]
    assert math.isnan(q["b"][0])
    assert q["b"][1] == 0.666666667
    assert q["c"][0] == 0.142857143
    assert nm.quantise(np.array([1, 2])).dtype.kind == "i"
