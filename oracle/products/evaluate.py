"""Run a product's terms over a monthly series: the index per evaluation, the payout per window and season.

The payout of one evaluation is the pool's rule (:func:`models.payout.drought_payout`, in the report's
fixed point, 6 decimals) on the window's share of the limit. For an index where lower is worse
(rainfall total, SPI, VHI) the rule is applied to the negated value, trigger and exit, which reads::

    payout = 0                                             value >= trigger
           = floor(L * (trigger - value) / (trigger - exit))  exit < value < trigger
           = L                                             value <= exit

A window pays once per season: on the seasonal grid its one evaluation; on the monthly grid the largest
payout among its months. With hysteresis a month's payout is a *candidate* and pays only when the next
month's evaluation (of the same window's terms) also pays; it then pays the smaller of the two. The
next month may fall after the window, or after the coverage inside the grace period; past the grace
period the candidate lapses. The deductible is taken off each window's payout, never below zero; the
season pays the sum over its windows (at most the limit, as the windows' shares sum to at most it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from models.payout import drought_payout
from oracle.products.series import MonthlySeries
from oracle.products.terms import IndexKind, PeriodGrid, ProductTerms, Window

#: The report's fixed point (``oracle.reports.VALUE_SCALE``): index values go on-chain with 6 decimals.
VALUE_SCALE = 10**6


def to_fixed(x: float) -> int:
    """``x`` in the report's fixed point, rounded half to even through its shortest decimal repr."""
    return int((Decimal(repr(x)) * VALUE_SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


def evaluation_payout(*, value: float, trigger: float, exit: float, limit: int, higher_is_worse: bool) -> int:
    """One evaluation's payout under the pool's rule (see the module docstring for the direction)."""
    v, t, e = to_fixed(value), to_fixed(trigger), to_fixed(exit)
    if higher_is_worse:
        return drought_payout(value=v, trigger=t, exit=e, limit=limit)
    return drought_payout(value=-v, trigger=-t, exit=-e, limit=limit)


@dataclass(frozen=True)
class WindowResult:
    name: str
    #: The deciding index value: the window's value (seasonal) or its worst month's (monthly).
    value: float
    gross: int
    net: int


@dataclass(frozen=True)
class SeasonResult:
    season: int
    payout: int
    windows: tuple[WindowResult, ...]


@dataclass(frozen=True)
class Run:
    terms: ProductTerms
    seasons: tuple[SeasonResult, ...]
    #: Seasons in the series' span that could not be evaluated (a value they need is missing).
    skipped: tuple[int, ...]


class _Index:
    """The product's index at absolute month numbers (``year * 12 + month - 1``)."""

    def __init__(self, terms: ProductTerms, series: MonthlySeries) -> None:
        self.kind = terms.index.kind
        self.k = terms.index.months
        self.base = series.start[0] * 12 + series.start[1] - 1
        values = list(series.values)
        if self.kind is IndexKind.SPI:
            from models.drought.spi import spi

            values = [float(x) for x in spi(values, scale=self.k, start_month=series.start[1])]
        self.values = values

    def raw(self, a: int) -> float | None:
        i = a - self.base
        if not 0 <= i < len(self.values) or math.isnan(self.values[i]):
            return None
        return self.values[i]

    def monthly(self, a: int) -> float | None:
        if self.kind is IndexKind.RAINFALL_TOTAL:
            parts = [self.raw(m) for m in range(a - self.k + 1, a + 1)]
            return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
        return self.raw(a)

    def window(self, first: int, last: int) -> float | None:
        if self.kind is IndexKind.SPI:
            return self.raw(last)
        parts = [self.raw(m) for m in range(first, last + 1)]
        if any(p is None for p in parts):
            return None
        total = sum(p for p in parts if p is not None)
        return total if self.kind is IndexKind.RAINFALL_TOTAL else total / len(parts)


class _Incomplete(Exception):
    pass


def _window(terms: ProductTerms, index: _Index, window: Window, season: int) -> WindowResult:
    start = season * 12 + terms.coverage.start_month - 1
    first = start + (terms.offset(window.first_month) or 0)
    last = start + (terms.offset(window.last_month) or 0)
    trigger, exit_ = terms.window_trigger_exit(window)
    if trigger is None or exit_ is None:  # the terms' validator refuses this
        raise ValueError(f"window {window.name} has no trigger/exit")
    limit = terms.window_limit(window)
    worse = terms.index.kind.higher_is_worse

    def pay(value: float) -> int:
        return evaluation_payout(value=value, trigger=trigger, exit=exit_, limit=limit, higher_is_worse=worse)

    if terms.period_grid is PeriodGrid.SEASONAL:
        value = index.window(first, last)
        if value is None:
            raise _Incomplete
        gross = pay(value)
    else:
        grace_end = start + terms.coverage.months - 1 + terms.grace_months
        gross, worst = 0, None
        for a in range(first, last + 1):
            v = index.monthly(a)
            if v is None:
                raise _Incomplete
            worst = v if worst is None or (v > worst if worse else v < worst) else worst
            paid = pay(v)
            if terms.hysteresis and paid > 0:
                if a + 1 > grace_end:
                    paid = 0  # no confirming evaluation within coverage + grace: the candidate lapses
                else:
                    nxt = index.monthly(a + 1)
                    if nxt is None:
                        raise _Incomplete
                    paid = min(paid, pay(nxt))
            gross = max(gross, paid)
        assert worst is not None
        value = worst
    return WindowResult(name=window.name, value=value, gross=gross, net=max(0, gross - terms.deductible))


def run_product(terms: ProductTerms, series: MonthlySeries) -> Run:
    """Evaluate every season whose months the series covers, oldest first."""
    index = _Index(terms, series)
    first_abs = index.base
    last_abs = index.base + len(series.values) - 1
    cs = terms.coverage.start_month - 1
    seasons: list[SeasonResult] = []
    skipped: list[int] = []
    for season in range(first_abs // 12 - 1, last_abs // 12 + 1):
        start = season * 12 + cs
        end = start + terms.coverage.months - 1
        if start < first_abs or end > last_abs:
            continue  # outside the series' span: neither evaluated nor counted as skipped
        try:
            windows = tuple(_window(terms, index, w, season) for w in terms.windows)
        except _Incomplete:
            skipped.append(season)
            continue
        seasons.append(SeasonResult(season=season, payout=sum(w.net for w in windows), windows=windows))
    return Run(terms=terms, seasons=tuple(seasons), skipped=tuple(skipped))
