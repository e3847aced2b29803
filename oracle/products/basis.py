"""Basis risk: how a product's payouts line up with the losses they are meant to cover.

Losses are compared season by season (a monthly loss counts in the season whose coverage contains its
month), over the seasons present in both the backtest and the loss file. A season *has a loss* when
its loss is > 0 and *pays* when the product's payout is > 0. With ``n`` compared seasons:

- ``false_negative_rate`` = seasons with a loss and no payout ÷ seasons with a loss (the miss rate);
- ``false_positive_rate`` = seasons with a payout and no loss ÷ seasons without a loss;
- ``false_payout_share`` = seasons with a payout and no loss ÷ seasons with a payout;
- ``correlation``: Pearson's r between season payout and season loss;
- ``share_of_losses_covered`` = Σ min(payout, loss) ÷ Σ loss: a payout above the loss covers nothing else.

A rate whose denominator is zero is ``null`` (and so is r when either series is constant). Losses are
in the same unit as payouts (the pool token's base units).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from oracle.errors import ValidationError
from oracle.products.evaluate import Run
from oracle.products.terms import ProductTerms


def season_of(terms: ProductTerms, period: str) -> int:
    """The season a loss period belongs to. :raises ValidationError: a month outside the coverage."""
    if re.fullmatch(r"\d{4}", period):
        return int(period)
    year, month = int(period[:4]), int(period[5:7])
    offset = terms.offset(month)
    if offset is None:
        raise ValidationError(
            f"loss period {period} is outside the coverage of {terms.id} "
            f"({terms.coverage.months} months from month {terms.coverage.start_month})",
            reason="outside_coverage",
        )
    return year if month >= terms.coverage.start_month else year - 1


def _ratio(num: int | float, den: int | float) -> float | None:
    return None if den == 0 else num / den


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


@dataclass(frozen=True)
class BasisRisk:
    product_id: str
    seasons: int
    loss_seasons: int
    payout_seasons: int
    false_negatives: int
    false_positives: int
    false_negative_rate: float | None
    false_positive_rate: float | None
    false_payout_share: float | None
    correlation: float | None
    share_of_losses_covered: float | None
    #: Seasons in the loss file that the backtest could not evaluate (left out of every figure).
    seasons_without_payout: list[int]

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def basis_risk(run: Run, losses: dict[str, float]) -> BasisRisk:
    """Compare a run's season payouts with ``losses`` (period → loss, see :func:`season_of`).

    :raises ValidationError: a loss month outside the coverage, or no season in common.
    """
    terms = run.terms
    by_season: dict[int, float] = {}
    for period, amount in losses.items():
        s = season_of(terms, period)
        by_season[s] = by_season.get(s, 0.0) + amount
    paid = {s.season: s.payout for s in run.seasons}
    common = sorted(set(by_season) & set(paid))
    if not common:
        raise ValidationError(
            f"the losses share no season with the backtest of {terms.id} "
            f"(losses {min(by_season)}..{max(by_season)}, payouts "
            f"{min(paid, default=0)}..{max(paid, default=0)})",
            reason="no_common_seasons",
        )
    loss = [by_season[s] for s in common]
    pay = [float(paid[s]) for s in common]
    has_loss = [x > 0 for x in loss]
    pays = [p > 0 for p in pay]
    fn = sum(1 for lo, p in zip(has_loss, pays, strict=True) if lo and not p)
    fp = sum(1 for lo, p in zip(has_loss, pays, strict=True) if p and not lo)
    n_loss, n_pay = sum(has_loss), sum(pays)
    return BasisRisk(
        product_id=terms.id,
        seasons=len(common),
        loss_seasons=n_loss,
        payout_seasons=n_pay,
        false_negatives=fn,
        false_positives=fp,
        false_negative_rate=_ratio(fn, n_loss),
        false_positive_rate=_ratio(fp, len(common) - n_loss),
        false_payout_share=_ratio(fp, n_pay),
        correlation=_pearson(pay, loss),
        share_of_losses_covered=_ratio(sum(min(p, x) for p, x in zip(pay, loss, strict=True)), sum(loss)),
        seasons_without_payout=sorted(set(by_season) - set(paid)),
    )
