"""Region-mean checks: climatology outliers, coverage, and duplicates claiming to be new."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.quality import InputParams, InputReason, duplicate_flags, find_duplicates, flag_region_means
from oracle.errors import ValidationError


def row(date: str, mean: float | None, *, region: str = "r1", variable: str = "ndvi", vf: float = 1.0) -> Any:
    return {"region_id": region, "variable": variable, "date": date, "mean": mean, "valid_fraction": vf}


def july_history(values: list[float], **kw: Any) -> list[Any]:
    return [row(f"{2010 + i}-07-01", v, **kw) for i, v in enumerate(values)]


HISTORY = july_history([0.61, 0.58, 0.64, 0.60, 0.57, 0.63, 0.59, 0.62])
NOISE = [  # other months, regions and variables must not enter July's climatology of r1/ndvi
    row("2015-06-01", 0.1),
    row("2015-07-01", 0.1, region="r2"),
    row("2015-07-01", 40.0, variable="lst"),
    row("2030-07-01", 0.1),
]


def test_plausible_values_including_a_severe_drought_are_not_flagged() -> None:
    for mean in (0.60, 0.66, 0.45, 0.40):  # 0.40, a severe drought, has robust z ≈ -6.9 here
        assert flag_region_means(row("2024-07-01", mean), HISTORY + NOISE) == [], mean


def test_implausible_values_are_flagged_with_their_z() -> None:
    for mean in (0.95, 0.05, -0.6):
        (flag,) = flag_region_means(row("2024-07-01", mean), HISTORY + NOISE)
        assert flag.reason is InputReason.CLIMATOLOGY
        assert flag.measured > flag.threshold == 8.0
        assert flag.key == ("r1", "ndvi", "2024-07-01")
        assert "earlier years" in flag.detail


def test_scale_floor_keeps_a_flat_history_from_flagging_noise() -> None:
    flat = july_history([0.60] * 6)
    assert flag_region_means(row("2024-07-01", 0.65), flat) == []  # 0.05 / 0.02 floor = z 2.5
    (flag,) = flag_region_means(row("2024-07-01", 0.90), flat)
    assert flag.measured == pytest.approx(15.0)


def test_short_history_is_a_note_not_a_verdict() -> None:
    (flag,) = flag_region_means(row("2024-07-01", 0.95), HISTORY[:3])
    assert flag.reason is InputReason.SHORT_HISTORY
    assert (flag.measured, flag.threshold) == (3.0, 5.0)


def test_coverage_and_missing_values() -> None:
    flags = flag_region_means(row("2024-07-01", None, vf=0.0), HISTORY)
    assert [f.reason for f in flags] == [InputReason.LOW_COVERAGE, InputReason.MISSING]
    assert flag_region_means(row("2024-07-01", 0.6, vf=0.5), HISTORY) == []


def test_bad_inputs_get_reasons() -> None:
    with pytest.raises(ValidationError) as e:
        flag_region_means(row("July 2024", 0.5), HISTORY)
    assert e.value.reason == "bad_input"
    with pytest.raises(ValidationError):
        flag_region_means({"region_id": "r1", "variable": "ndvi", "date": "2024-07"}, HISTORY)
    with pytest.raises(ValidationError):
        flag_region_means(row("2024-07-01", "high"), HISTORY)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as e:
        InputParams(min_history=1)
    assert e.value.reason == "params"
    with pytest.raises(ValidationError):
        find_duplicates({"2024-01": "abc"})


def test_resent_raster_with_a_new_date_is_a_duplicate() -> None:
    rng = np.random.default_rng(0)
    rasters = {f"2024-{m:02d}-01": rng.uniform(0.1, 0.8, (20, 30)) for m in range(1, 7)}
    rasters["2023-07-01"] = rasters["2024-03-01"].copy()  # March 2024 re-sends July 2023
    rasters["2024-07-01"] = rasters["2024-03-01"].copy()
    rasters["2024-07-01"][0, 0] = np.nan  # NaN where the original had data: not the same field
    (dup,) = find_duplicates(rasters)
    assert (dup.date, dup.same_as, dup.max_abs_diff) == ("2024-03-01", "2023-07-01", 0.0)
    rasters["2024-08-01"] = rasters["2024-05-01"] + 1e-9  # re-encoded copy
    assert [d.date for d in find_duplicates(rasters)] == ["2024-03-01"]
    tolerant = find_duplicates(rasters, atol=1e-6)
    assert [(d.date, d.same_as) for d in tolerant] == [
        ("2024-03-01", "2023-07-01"),
        ("2024-08-01", "2024-05-01"),
    ]
    assert tolerant[1].max_abs_diff == pytest.approx(1e-9)


def test_fields_without_a_fingerprint_are_never_duplicates() -> None:
    dry = {"2024-01": np.zeros(10), "2024-02": np.zeros(10), "2024-03": np.full(10, np.nan)}
    assert find_duplicates(dry) == []
    assert [d.date for d in find_duplicates({"2024-01": 0.4, "2024-02": 0.4})] == ["2024-02"]


def test_duplicate_flags_over_region_mean_rows() -> None:
    rows = [
        row(f"2024-{m:02d}-01", 0.1 * m + 0.01 * i, region=f"r{i}") for m in range(1, 5) for i in range(3)
    ]
    rows += [row("2024-05-01", r["mean"], region=r["region_id"]) for r in rows if r["date"] == "2024-02-01"]
    rows += [row("2024-05-01", 9.9, region="r-new")]  # a region only on the new date does not hide the copy
    flags = duplicate_flags(rows)
    assert {f.key for f in flags} == {(f"r{i}", "ndvi", "2024-05-01") for i in range(3)}
    assert {f.same_as for f in flags} == {"2024-02-01"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30, unique=True))
def test_distinct_values_never_duplicate_and_order_does_not_matter(values: list[float]) -> None:
    by_date = {f"2024-01-{i + 1:02d}": v for i, v in enumerate(values)}
    assert find_duplicates(by_date) == []
    repeated = dict(by_date, **{"2025-01-01": values[0]})
    reordered = dict(reversed(list(repeated.items())))
    assert find_duplicates(repeated) == find_duplicates(reordered)
    assert [(d.date, d.same_as) for d in find_duplicates(repeated)] == [("2025-01-01", "2024-01-01")]
