"""The deterministic cold-chain rule engine: readings + profile → verdict and the list of breaches.

Every rule uses the sample-and-hold convention of :mod:`models.coldchain.readings`: a reading stands for
the time until the next one; the last reading stands until ``now`` when given (a live evaluation), else
for one more sampling interval (a closed record). Each breach carries ``at_s``, the instant its limit was
reached, so a live evaluator running on every reading fires at the same moments as a full re-evaluation.

Rule semantics (limits come from :class:`models.coldchain.profiles.ProductProfile`):

========================  =====================================================================
kind                      fires when
========================  =====================================================================
hard_limit                one reading ``<= hard_min_c`` or ``>= hard_max_c``
consecutive_duration      one unbroken run of readings matching ``op threshold`` lasts ``>= limit_s``
cumulative_duration       all readings matching ``op threshold`` together last ``>= limit_s``
mkt_window                MKT over a full trailing window (or the whole record, once delivered, when
                          it is shorter than the window) is ``> max_c``
budget_exhausted          Arrhenius-equivalent time at the reference reaches ``allowed_s``
data_gap                  a gap between readings, or from the last reading to ``now``, is ``>= gap_limit_s``
========================  =====================================================================

Verdict values mirror ``oracle.reports.Verdict`` (NO_DECISION=0, BREACH=1, DELIVERED=2); ``models/`` may
not import ``oracle.reports``, so the integers are repeated here and a test checks they agree.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models import numerics as nm
from models.errors import ValidationError

from .mkt import KELVIN_OFFSET, weighted_mkt
from .profiles import DurationLimit, ProductProfile
from .readings import FloatArray, IntArray, Readings, hold_durations


class Verdict(enum.IntEnum):
    """Mirror of ``oracle.reports.Verdict``."""

    NO_DECISION = 0
    BREACH = 1
    DELIVERED = 2


class BreachKind(enum.StrEnum):
    HARD_LIMIT = "hard_limit"
    CONSECUTIVE_DURATION = "consecutive_duration"
    CUMULATIVE_DURATION = "cumulative_duration"
    MKT_WINDOW = "mkt_window"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DATA_GAP = "data_gap"


@dataclass(frozen=True)
class Breach:
    """One rule violation. Times are UNIX seconds; ``measured`` and ``limit`` share ``unit``.

    ``start_s``/``end_s`` bound the offending readings (or the window/gap); ``at_s`` is when the limit
    was reached, i.e. when a live evaluator fires.
    """

    kind: BreachKind
    rule: str
    start_s: int
    end_s: int
    at_s: int
    measured: float
    limit: float
    unit: str


@dataclass(frozen=True)
class RuleVerdict:
    """The rule engine's answer for one shipment.

    ``time_out_of_range_s``: seconds outside the profile's band. ``mkt_c``: MKT over the whole record
    (profile ΔH/R). ``max_window_mkt_c``: highest MKT over the full windows checked (None when no full
    window fits). ``budget_used``: stability budget consumed, 1.0 = exhausted.
    """

    verdict: Verdict
    breaches: tuple[Breach, ...]
    time_out_of_range_s: float
    mkt_c: float
    max_window_mkt_c: float | None
    budget_used: float
    first_breach_s: int | None
    evaluated_until_s: int


COMPARISONS: dict[str, Callable[[FloatArray, float], np.ndarray]] = {
    ">=": lambda t, x: t >= x,
    ">": lambda t, x: t > x,
    "<=": lambda t, x: t <= x,
    "<": lambda t, x: t < x,
}


def may_breach_now(profile: ProductProfile, temp_c: npt.ArrayLike) -> bool:
    """Whether new readings can start or advance a breach that must be acted on at once.

    True when any reading lies outside the profile's band, at or beyond a hard limit, matches a duration
    rule's comparison, or exceeds the MKT limit: every rule but the stability budget needs such a reading
    to fire. In-band readings move money only through the budget, which accrues slowly and is covered by
    the debounced and periodic re-evaluations; gaps are found by the evaluation's own clock.
    """
    temp = np.asarray(temp_c, dtype=np.float64)
    if temp.size == 0:
        return False
    outside = (temp < profile.band_low_c) | (temp > profile.band_high_c)
    outside |= (temp <= profile.hard_min_c) | (temp >= profile.hard_max_c) | (temp > profile.mkt.max_c)
    for rule in profile.duration_limits:
        outside |= COMPARISONS[rule.op](temp, rule.threshold_c)
    return bool(outside.any())


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index pairs of the True runs in ``mask``."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _hard_limits(ts: IntArray, temp: FloatArray, held: FloatArray, p: ProductProfile) -> list[Breach]:
    found: list[Breach] = []
    for is_high, mask in ((True, temp >= p.hard_max_c), (False, temp <= p.hard_min_c)):
        for a, b in _runs(mask):
            segment = temp[a : b + 1]
            limit = p.hard_max_c if is_high else p.hard_min_c
            found.append(
                Breach(
                    kind=BreachKind.HARD_LIMIT,
                    rule=f"reading {'>=' if is_high else '<='} {limit:g} °C",
                    start_s=int(ts[a]),
                    end_s=int(ts[b] + held[b]),
                    at_s=int(ts[a]),
                    measured=float(segment.max() if is_high else segment.min()),
                    limit=limit,
                    unit="°C",
                )
            )
    return found


def _duration(ts: IntArray, temp: FloatArray, held: FloatArray, rule: DurationLimit) -> list[Breach]:
    mask = COMPARISONS[rule.op](temp, rule.threshold_c)
    if rule.mode == "consecutive":
        found = []
        for a, b in _runs(mask):
            lasted = float(held[a : b + 1].sum())
            if lasted >= rule.limit_s:
                found.append(
                    Breach(
                        kind=BreachKind.CONSECUTIVE_DURATION,
                        rule=rule.describe(),
                        start_s=int(ts[a]),
                        end_s=int(ts[a] + lasted),
                        at_s=int(ts[a]) + rule.limit_s,
                        measured=lasted,
                        limit=float(rule.limit_s),
                        unit="s",
                    )
                )
        return found
    counted = np.where(mask, held, 0.0)
    total = float(counted.sum())
    if total < rule.limit_s:
        return []
    running = np.cumsum(counted)
    k = int(np.searchsorted(running, rule.limit_s, side="left"))
    before = running[k] - counted[k]
    hits = np.flatnonzero(mask)
    return [
        Breach(
            kind=BreachKind.CUMULATIVE_DURATION,
            rule=rule.describe(),
            start_s=int(ts[hits[0]]),
            end_s=int(ts[hits[-1]] + held[hits[-1]]),
            at_s=int(ts[k] + (rule.limit_s - before)),
            measured=total,
            limit=float(rule.limit_s),
            unit="s",
        )
    ]


def _cumulative_at(edges: FloatArray, cum: FloatArray, rate: FloatArray, t: FloatArray) -> FloatArray:
    """Integral from the first reading to times ``t`` of a piecewise-constant ``rate`` (one per reading)."""
    i = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, rate.shape[0] - 1)
    return np.asarray(cum[i] + (t - edges[i]) * rate[i], dtype=np.float64)


def _mkt_windows(
    ts: IntArray, temp: FloatArray, held: FloatArray, p: ProductProfile, *, delivered: bool
) -> tuple[list[Breach], float | None]:
    limit = p.mkt
    start = float(ts[0])
    ends_all = ts.astype(np.float64) + held
    record_end = float(ends_all[-1])
    window = float(limit.window_s)
    # Window ends: wherever a reading's hold ends, once a full window fits behind it.
    ends = ends_all[ends_all - start >= window]
    whole_record = False
    if ends.size == 0:
        if not delivered or record_end <= start:
            return [], None
        ends, window, whole_record = np.array([record_end]), record_end - start, True
    # Scale by the warmest reading so ultra-cold exponentials do not underflow.
    exponent = -limit.dh_over_r / (temp + KELVIN_OFFSET)
    top = float(exponent.max())
    rate = nm.exp(exponent - top)
    edges = ts.astype(np.float64)
    cum = np.concatenate(([0.0], np.cumsum(rate * held)[:-1]))
    mass = _cumulative_at(edges, cum, rate, ends) - _cumulative_at(edges, cum, rate, ends - window)
    mkts = limit.dh_over_r / -(nm.log(mass / window) + top) - KELVIN_OFFSET
    worst = float(mkts.max())
    over = np.flatnonzero(mkts > limit.max_c)
    if over.size == 0:
        return [], worst
    first = int(over[0])
    label = "whole record" if whole_record else f"{limit.window_s} s window"
    breach = Breach(
        kind=BreachKind.MKT_WINDOW,
        rule=f"MKT over {label} <= {limit.max_c:g} °C",
        start_s=int(ends[first] - window),
        end_s=int(ends[first]),
        at_s=int(ends[first]),
        measured=float(mkts[first]),
        limit=limit.max_c,
        unit="°C",
    )
    return [breach], worst


def arrhenius_factor(temp_c: FloatArray, *, reference_c: float, dh_over_r: float) -> FloatArray:
    """f(T) = exp[(ΔH/R)(1/T_ref − 1/T)], temperatures in °C: seconds at ``reference_c`` per second at T."""
    t_ref = reference_c + KELVIN_OFFSET
    return np.asarray(nm.exp(dh_over_r * (1.0 / t_ref - 1.0 / (temp_c + KELVIN_OFFSET))), dtype=np.float64)


def _budget(
    ts: IntArray, temp: FloatArray, held: FloatArray, p: ProductProfile
) -> tuple[list[Breach], float]:
    b = p.budget
    equivalent = arrhenius_factor(temp, reference_c=b.reference_c, dh_over_r=b.dh_over_r) * held
    running = np.cumsum(equivalent)
    used = float(running[-1]) / b.allowed_s
    if running[-1] < b.allowed_s:
        return [], used
    k = int(np.searchsorted(running, b.allowed_s, side="left"))
    before = running[k] - equivalent[k]
    rate = equivalent[k] / held[k]
    breach = Breach(
        kind=BreachKind.BUDGET_EXHAUSTED,
        rule=f"equivalent time at {b.reference_c:g} °C <= {b.allowed_s} s",
        start_s=int(ts[0]),
        end_s=int(ts[-1] + held[-1]),
        at_s=int(np.ceil(ts[k] + (b.allowed_s - before) / rate)),
        measured=float(running[-1]),
        limit=float(b.allowed_s),
        unit="s",
    )
    return [breach], used


def _gaps(ts: IntArray, p: ProductProfile, now: int | None) -> list[Breach]:
    edges = ts if now is None else np.append(ts, now)
    steps = np.diff(edges)
    return [
        Breach(
            kind=BreachKind.DATA_GAP,
            rule=f"gap < {p.gap_limit_s} s",
            start_s=int(edges[i]),
            end_s=int(edges[i + 1]),
            at_s=int(edges[i]) + p.gap_limit_s,
            measured=float(steps[i]),
            limit=float(p.gap_limit_s),
            unit="s",
        )
        for i in np.flatnonzero(steps >= p.gap_limit_s)
    ]


def evaluate_rules(
    readings: Readings, profile: ProductProfile, *, now: int | None = None, delivered: bool = False
) -> RuleVerdict:
    """Apply every rule of ``profile`` to ``readings`` (see the module docstring for the semantics).

    ``now``: UNIX seconds of the evaluation; must not precede the last reading (ValidationError
    ``end_before_last``). With ``now`` the last reading stands until ``now`` and a silent logger becomes a
    data gap; without it the record is treated as closed. ``delivered``: the shipment has been handed
    over; without a breach this gives DELIVERED, otherwise NO_DECISION while it is still travelling.
    Any breach gives BREACH. Empty readings raise ValidationError(``empty``).
    """
    if len(readings) == 0:
        raise ValidationError("no readings", reason="empty")
    ts, temp = readings.ts_s, readings.temp_c
    held = hold_durations(ts, end_s=now)
    breaches = _hard_limits(ts, temp, held, profile)
    for rule in profile.duration_limits:
        breaches += _duration(ts, temp, held, rule)
    mkt_breaches, worst_window = _mkt_windows(ts, temp, held, profile, delivered=delivered)
    budget_breaches, used = _budget(ts, temp, held, profile)
    breaches += mkt_breaches + budget_breaches + _gaps(ts, profile, now)
    breaches.sort(key=lambda b: (b.at_s, b.kind.value, b.rule))
    outside = (temp < profile.band_low_c) | (temp > profile.band_high_c)
    total_held = float(held.sum())
    record_mkt = (
        weighted_mkt(temp, held, dh_over_r=profile.mkt.dh_over_r)
        if total_held > 0
        else weighted_mkt(temp, np.ones_like(temp), dh_over_r=profile.mkt.dh_over_r)
    )
    if breaches:
        verdict = Verdict.BREACH
    elif delivered:
        verdict = Verdict.DELIVERED
    else:
        verdict = Verdict.NO_DECISION
    return RuleVerdict(
        verdict=verdict,
        breaches=tuple(breaches),
        time_out_of_range_s=float(held[outside].sum()),
        mkt_c=record_mkt,
        max_window_mkt_c=worst_window,
        budget_used=used,
        first_breach_s=breaches[0].at_s if breaches else None,
        evaluated_until_s=int(ts[-1] + held[-1]),
    )
