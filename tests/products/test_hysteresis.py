"""Candidate → confirm: a crossing pays only when the next month's evaluation crosses too."""

from __future__ import annotations

from pathlib import Path

from oracle.products.evaluate import run_product
from oracle.products.series import read_monthly_series
from oracle.products.terms import parse_terms
from tests.products.helpers import january_terms, write_series


def _terms(*, hysteresis: bool, grace: int = 1) -> dict[str, object]:
    # Severity (higher is worse), trigger 1, exit 3, limit 1000: s pays floor(1000 * (s - 1) / 2).
    return january_terms(
        index={"kind": "severity"},
        period_grid="monthly",
        coverage={"start_month": 1, "months": 3},
        windows=[{"name": "q1", "first_month": 1, "last_month": 3, "weight": 1}],
        trigger=1,
        exit=3,
        grace_months=grace,
        hysteresis=hysteresis,
    )


def _year(jan: float, feb: float, mar: float, apr: float) -> list[float]:
    return [jan, feb, mar, apr] + [0.0] * 8


#: 2000: Jan 2 (500) confirmed by Feb 2.5 (750) -> min 500; Feb's 750 is not confirmed by Mar 0.
#: 2001: Jan 3 (1000) followed by 0: never confirmed.
#: 2002: only Mar 2 (500), confirmed in the grace month by Apr 2.2 (600) -> 500.
YEARS = _year(2, 2.5, 0, 0) + _year(3, 0, 0, 0) + _year(0, 0, 2, 2.2)


def _payouts(tmp_path: Path, terms: dict[str, object]) -> dict[int, int]:
    series = read_monthly_series(write_series(tmp_path / "s.csv", 2000, YEARS))
    return {s.season: s.payout for s in run_product(parse_terms(terms), series).seasons}


def test_without_hysteresis_every_crossing_pays_its_largest_month(tmp_path: Path) -> None:
    assert _payouts(tmp_path, _terms(hysteresis=False)) == {2000: 750, 2001: 1000, 2002: 500}


def test_a_candidate_pays_only_when_the_next_evaluation_confirms_it(tmp_path: Path) -> None:
    assert _payouts(tmp_path, _terms(hysteresis=True)) == {2000: 500, 2001: 0, 2002: 500}


def test_past_the_grace_period_a_candidate_lapses(tmp_path: Path) -> None:
    # With no grace month, March 2002's candidate has no confirming evaluation inside the terms.
    assert _payouts(tmp_path, _terms(hysteresis=True, grace=0)) == {2000: 500, 2001: 0, 2002: 0}
