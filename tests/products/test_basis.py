"""Basis risk on cases whose answers are worked out by hand below."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from oracle.errors import ValidationError
from oracle.products.basis import basis_risk
from oracle.products.evaluate import Run, run_product
from oracle.products.series import read_losses, read_monthly_series
from oracle.products.terms import parse_terms
from tests.products.helpers import januaries, january_terms


def _run(tmp_path: Path, januaries_mm: list[float]) -> Run:
    series = read_monthly_series(januaries(tmp_path / "s.csv", 2000, januaries_mm))
    return run_product(parse_terms(january_terms()), series)


def _losses(tmp_path: Path, rows: list[tuple[str, float]]) -> dict[str, float]:
    path = tmp_path / "losses.csv"
    path.write_text("period,loss\n" + "".join(f"{p},{x}\n" for p, x in rows), encoding="utf-8")
    return read_losses(path)


def test_a_miss_a_partial_cover_and_the_correlation(tmp_path: Path) -> None:
    # Januaries 150, 90, 75, 150 mm pay 0, 200, 500, 0; the losses are 0, 100, 800, 300.
    run = _run(tmp_path, [150, 90, 75, 150])
    result = basis_risk(run, _losses(tmp_path, [("2000", 0), ("2001", 100), ("2002", 800), ("2003", 300)]))
    assert (result.seasons, result.loss_seasons, result.payout_seasons) == (4, 3, 2)
    # 2003 lost 300 and was paid nothing: 1 miss among 3 loss seasons.
    assert result.false_negatives == 1
    assert result.false_negative_rate == 1 / 3
    # Nothing paid without a loss: 0 of the 1 no-loss season, 0 of the 2 payouts.
    assert result.false_positives == 0
    assert result.false_positive_rate == 0.0
    assert result.false_payout_share == 0.0
    # Covered: min(200, 100) + min(500, 800) = 600 of 1,200 lost.
    assert result.share_of_losses_covered == 0.5
    # Means 175 and 300; deviations (-175, 25, 325, -175) and (-300, -200, 500, 0):
    # sum of products 52,500 - 5,000 + 162,500 = 210,000; sums of squares 167,500 and 380,000.
    assert result.correlation == pytest.approx(210_000 / math.sqrt(167_500 * 380_000))


def test_payouts_without_losses_are_false_positives(tmp_path: Path) -> None:
    run = _run(tmp_path, [40, 150, 150])  # pays 1000, 0, 0
    result = basis_risk(run, _losses(tmp_path, [("2000", 0), ("2001", 0), ("2002", 0)]))
    assert result.false_positives == 1
    assert result.false_positive_rate == 1 / 3
    assert result.false_payout_share == 1.0
    # No season had a loss: the miss rate, the share covered and r (constant losses) are undefined.
    assert result.false_negative_rate is None
    assert result.share_of_losses_covered is None
    assert result.correlation is None


def test_a_perfect_match_and_monthly_losses_summed_into_seasons(tmp_path: Path) -> None:
    run = _run(tmp_path, [75, 150, 50])  # pays 500, 0, 1000
    losses = _losses(tmp_path, [("2000-01", 300), ("2000", 200), ("2002-01", 1000), ("2001", 0)])
    result = basis_risk(run, losses)
    assert result.false_negative_rate == 0.0
    assert result.false_positive_rate == 0.0
    assert result.share_of_losses_covered == 1.0
    assert result.correlation == pytest.approx(1.0)


def test_losses_outside_coverage_or_without_common_seasons_are_refused(tmp_path: Path) -> None:
    run = _run(tmp_path, [75, 150])
    with pytest.raises(ValidationError, match="loss period 2000-06 is outside the coverage"):
        basis_risk(run, _losses(tmp_path, [("2000-06", 10)]))
    with pytest.raises(ValidationError, match="share no season"):
        basis_risk(run, _losses(tmp_path, [("1990", 10)]))
    bad = tmp_path / "neg.csv"
    bad.write_text("period,loss\n2000,-5\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"neg\.csv:2: loss -5 is negative"):
        read_losses(bad)
