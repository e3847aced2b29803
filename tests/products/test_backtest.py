"""Burn analysis on series small enough to compute by hand, and the report files."""

from __future__ import annotations

from pathlib import Path

import pytest

from oracle.errors import ValidationError
from oracle.products.backtest import backtest
from oracle.products.evaluate import evaluation_payout, run_product
from oracle.products.report import write_report
from oracle.products.series import read_monthly_series
from oracle.products.terms import parse_terms, product_hash
from tests.products.helpers import januaries, january_terms, write_series

# Trigger 100 mm, exit 50 mm, limit 1000: a January total v pays floor(1000 * (100 - v) / 50).
# 40 -> 1000 (below the exit), 55 -> 900, 70 -> 600, 85 -> 300, 95 -> 100, 150 -> 0.
TWENTY_JANUARIES = [40, 55, 70, 85, 95] + [150] * 15


def test_figures_on_twenty_hand_computed_seasons(tmp_path: Path) -> None:
    terms = parse_terms(january_terms())
    series = read_monthly_series(januaries(tmp_path / "s.csv", 2000, TWENTY_JANUARIES))
    fig = backtest(run_product(terms, series))
    assert fig.seasons == 20
    assert (fig.first_season, fig.last_season) == (2000, 2019)
    assert [fig.payouts[y] for y in range(2000, 2005)] == [1000, 900, 600, 300, 100]
    assert fig.payout_frequency == 5 / 20
    # Total 2,900 over 20 seasons: mean 145, burn cost 145 / 1000, loaded 145 * 1.5 = 217.5 -> 218.
    assert fig.pure_premium == 145
    assert fig.burn_cost == 0.145
    assert fig.loaded_premium == 217.5
    assert fig.loaded_premium_base_units == 218
    # Ascending payouts: fifteen 0, 100, 300, 600, 900, 1000. 1-in-10 = the 18th (ceil(0.9 * 20)) = 600;
    # 1-in-20 = the 19th (ceil(0.95 * 20)) = 900.
    assert fig.payout_1_in_10 == 600
    assert fig.payout_1_in_20 == 900
    assert [w["season"] for w in fig.worst_years] == [2000, 2001, 2002, 2003, 2004]
    assert fig.worst_years[1]["windows"] == {"jan": {"value": 55.0, "payout": 900}}
    assert fig.product_hash == product_hash(terms)


def test_deductible_comes_off_each_window_payout(tmp_path: Path) -> None:
    terms = parse_terms(january_terms(deductible=150))
    fig = backtest(
        run_product(terms, read_monthly_series(januaries(tmp_path / "s.csv", 2000, TWENTY_JANUARIES)))
    )
    # 1000 - 150, 900 - 150, 600 - 150, 300 - 150, max(0, 100 - 150): 850, 750, 450, 150, 0.
    assert [fig.payouts[y] for y in range(2000, 2005)] == [850, 750, 450, 150, 0]
    assert fig.payout_frequency == 4 / 20
    assert fig.pure_premium == (850 + 750 + 450 + 150) / 20


def test_windows_share_the_limit_by_weight_and_seasons_cross_the_new_year(tmp_path: Path) -> None:
    terms = parse_terms(
        january_terms(
            coverage={"start_month": 12, "months": 2},
            windows=[
                {"name": "dec", "first_month": 12, "last_month": 12, "weight": 0.3},
                {"name": "jan", "first_month": 1, "last_month": 1, "weight": 0.7},
            ],
        )
    )
    months: list[float | None] = [150.0] * 24
    months[11] = 75.0  # December 2000: 300 * (100 - 75) / 50 = 150
    months[12] = 50.0  # January 2001: at the exit, the whole 700
    run = run_product(terms, read_monthly_series(write_series(tmp_path / "s.csv", 2000, months)))
    # Only season 2000 (Dec 2000 + Jan 2001) lies inside the two years; season 1999 lacks December 1999.
    assert [(s.season, s.payout) for s in run.seasons] == [(2000, 150 + 700)]
    assert [w.gross for w in run.seasons[0].windows] == [150, 700]


def test_a_missing_month_skips_its_season_only(tmp_path: Path) -> None:
    values: list[float | None] = []
    for v in [40.0, None, 150.0]:
        values += [v] + [0.0] * 11
    run = run_product(
        parse_terms(january_terms()), read_monthly_series(write_series(tmp_path / "s.csv", 2000, values))
    )
    assert [s.season for s in run.seasons] == [2000, 2002]
    assert run.skipped == (2001,)
    with pytest.raises(ValidationError, match="covers no complete season"):
        backtest(
            run_product(
                parse_terms(january_terms()),
                read_monthly_series(write_series(tmp_path / "e.csv", 2000, [None] * 12)),
            )
        )


def test_payout_direction_and_rounding_follow_the_pool_rule() -> None:
    # Lower is worse (rainfall): nothing at the trigger, everything at the exit, floor in between.
    assert evaluation_payout(value=100, trigger=100, exit=50, limit=1000, higher_is_worse=False) == 0
    assert evaluation_payout(value=50, trigger=100, exit=50, limit=1000, higher_is_worse=False) == 1000
    assert evaluation_payout(value=66.7, trigger=100, exit=50, limit=1000, higher_is_worse=False) == 666
    # Higher is worse (severity): the pool's own orientation.
    assert evaluation_payout(value=2.5, trigger=1, exit=4, limit=999, higher_is_worse=True) == 499
    assert evaluation_payout(value=1, trigger=1, exit=4, limit=999, higher_is_worse=True) == 0


def test_spi_index_uses_the_models_spi(tmp_path: Path) -> None:
    from models.drought.spi import spi

    rain = [float(30 + (i * 37) % 90) for i in range(12 * 30)]
    series = read_monthly_series(write_series(tmp_path / "s.csv", 1990, rain))
    terms = parse_terms(
        january_terms(index={"kind": "spi", "months": 3}, trigger=-0.5, exit=-1.5, limit=10**6)
    )
    run = run_product(terms, series)
    expected = spi(rain, scale=3)
    for s in run.seasons:
        january = (s.season - 1990) * 12
        assert s.windows[0].value == pytest.approx(expected[january])


def test_report_writes_a_png_and_an_html_page(tmp_path: Path) -> None:
    terms = parse_terms(january_terms(name="Rain <b>cover</b>"))
    run = run_product(terms, read_monthly_series(januaries(tmp_path / "s.csv", 2000, TWENTY_JANUARIES)))
    fig = backtest(run)
    chart, page = write_report(run, fig, tmp_path / "out")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text(encoding="utf-8")
    assert f'<img src="{chart.name}"' in html
    assert "Rain &lt;b&gt;cover&lt;/b&gt;" in html  # names are escaped
    assert "<td>0.2500</td>" in html  # payout frequency
    assert "<script" not in html


def test_series_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("period,value\n2000-01,1\n2000-03,2\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"bad\.csv:3: period 2000-03 breaks the monthly sequence"):
        read_monthly_series(bad)
    bad.write_text("period,value\n2000-01,lots\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"bad\.csv:2: value 'lots' is not a number"):
        read_monthly_series(bad)
    bad.write_text("date,precip\n2000-01,1\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="header must be period,value"):
        read_monthly_series(bad)


def test_monthly_grid_rolling_rainfall_total_and_seasonal_vhi_mean(tmp_path: Path) -> None:
    # Rolling 2-month totals at January and February: Dec+Jan and Jan+Feb. Trigger 100, exit 50.
    rolling = parse_terms(
        january_terms(
            index={"kind": "rainfall_total", "months": 2},
            period_grid="monthly",
            coverage={"start_month": 1, "months": 2},
            windows=[{"name": "jf", "first_month": 1, "last_month": 2, "weight": 1}],
        )
    )
    months: list[float | None] = [60.0] * 24
    months[11], months[12], months[13] = 50.0, 30.0, 10.0  # Dec 2000, Jan 2001, Feb 2001
    run = run_product(rolling, read_monthly_series(write_series(tmp_path / "s.csv", 2000, months)))
    # 2000 is skipped (its January needs December 1999). 2001: Dec+Jan = 80 pays 400, Jan+Feb = 40 pays
    # the whole 1000; the window pays the larger.
    assert run.skipped == (2000,)
    assert [(s.season, s.payout) for s in run.seasons] == [(2001, 1000)]
    assert run.seasons[0].windows[0].value == 40.0

    # VHI on the seasonal grid: the mean of the window's months. Trigger 40, exit 10, limit 1000.
    vhi = parse_terms(
        january_terms(
            index={"kind": "vhi"},
            coverage={"start_month": 1, "months": 3},
            windows=[{"name": "q1", "first_month": 1, "last_month": 3, "weight": 1}],
            trigger=40,
            exit=10,
        )
    )
    # Mean of 30, 20, 25 = 25: floor(1000 * (40 - 25) / 30) = 500.
    run = run_product(
        vhi, read_monthly_series(write_series(tmp_path / "v.csv", 2000, [30, 20, 25] + [50] * 9))
    )
    assert [(s.season, s.payout) for s in run.seasons] == [(2000, 500)]
