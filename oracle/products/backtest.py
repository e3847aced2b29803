"""Burn analysis: what a product would have paid, season by season, over a long index history.

Figures over the ``n`` evaluated seasons (payouts in the pool token's base units):

- ``payout_frequency``: seasons with a payout ÷ n;
- ``burn_cost``: mean season payout ÷ limit (a season is a policy year);
- ``pure_premium``: the mean season payout (burn cost × limit);
- ``loaded_premium``: ``pure_premium * (1 + loading)``; the pool charges it rounded up to a base unit
  (``loaded_premium_base_units``);
- ``payout_1_in_10`` / ``payout_1_in_20``: the season payout reached or exceeded once in 10 / 20 seasons,
  the empirical quantile at 0.9 / 0.95 by the inverted CDF (Hyndman–Fan type 1: the smallest
  payout P with at least 90 % / 95 % of seasons paying P or less);
- ``worst_years``: the (up to) five largest paying seasons, largest first, with each window's index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from oracle.errors import ValidationError
from oracle.products.evaluate import Run
from oracle.products.terms import product_hash

WORST_YEARS = 5


def _quantile_inverted_cdf(sorted_values: list[int], q: float) -> int:
    """Smallest value whose empirical CDF is at least ``q`` (no interpolation)."""
    n = len(sorted_values)
    rank = max(1, math.ceil(q * n - 1e-12))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class BacktestFigures:
    product_id: str
    product_hash: str
    seasons: int
    first_season: int
    last_season: int
    seasons_skipped: list[int]
    limit: int
    loading: float
    payout_frequency: float
    burn_cost: float
    pure_premium: float
    loaded_premium: float
    loaded_premium_base_units: int
    payout_1_in_10: int
    payout_1_in_20: int
    worst_years: list[dict[str, Any]]
    payouts: dict[int, int]

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["payouts"] = {str(k): v for k, v in self.payouts.items()}
        return out


def backtest(run: Run) -> BacktestFigures:
    """The figures of a run. :raises ValidationError: when no season could be evaluated."""
    terms = run.terms
    if not run.seasons:
        raise ValidationError(
            f"product {terms.id}: the series covers no complete season "
            f"({len(run.skipped)} seasons lack a value they need)",
            reason="no_seasons",
        )
    payouts = [s.payout for s in run.seasons]
    n = len(payouts)
    mean = sum(payouts) / n
    loaded = mean * (1 + terms.pricing.loading)
    ranked = sorted(run.seasons, key=lambda s: (-s.payout, s.season))
    worst = [
        {
            "season": s.season,
            "payout": s.payout,
            "windows": {w.name: {"value": round(w.value, 6), "payout": w.net} for w in s.windows},
        }
        for s in ranked[:WORST_YEARS]
        if s.payout > 0
    ]
    ordered = sorted(payouts)
    return BacktestFigures(
        product_id=terms.id,
        product_hash=product_hash(terms),
        seasons=n,
        first_season=run.seasons[0].season,
        last_season=run.seasons[-1].season,
        seasons_skipped=list(run.skipped),
        limit=terms.limit,
        loading=terms.pricing.loading,
        payout_frequency=sum(1 for p in payouts if p > 0) / n,
        burn_cost=mean / terms.limit,
        pure_premium=mean,
        loaded_premium=loaded,
        loaded_premium_base_units=math.ceil(
            Fraction(sum(payouts), n) * (1 + Fraction(Decimal(repr(terms.pricing.loading))))
        ),
        payout_1_in_10=_quantile_inverted_cdf(ordered, 0.9),
        payout_1_in_20=_quantile_inverted_cdf(ordered, 0.95),
        worst_years=worst,
        payouts={s.season: s.payout for s in run.seasons},
    )
