"""Rule engine: every breach kind fires at its boundary and not just below; gaps are breaches."""

from __future__ import annotations

import numpy as np
import pytest

from models.coldchain.profiles import load_profile
from models.coldchain.readings import make_readings
from models.coldchain.rules import BreachKind, Verdict, evaluate_rules
from oracle.errors import ValidationError
from oracle.reports import Verdict as ReportVerdict

STEP = 600  # 10-minute logger
T0 = 1_700_000_000


def series(temps: list[float] | np.ndarray, *, step: int = STEP) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(temps, dtype=np.float64)
    return T0 + np.arange(arr.shape[0], dtype=np.int64) * step, arr


def kinds(temps: list[float] | np.ndarray, profile: str = "refrigerated", **kw: object) -> set[BreachKind]:
    ts, arr = series(temps)
    outcome = evaluate_rules(make_readings(ts, arr), load_profile(profile), **kw)  # type: ignore[arg-type]
    return {b.kind for b in outcome.breaches}


def test_verdict_values_mirror_the_report_definition() -> None:
    assert {v.name: int(v) for v in Verdict} == {v.name: int(v) for v in ReportVerdict}


def test_clean_shipment_is_delivered_and_in_transit_is_no_decision() -> None:
    ts, temps = series(np.full(144, 5.0))
    profile = load_profile("refrigerated")
    delivered = evaluate_rules(make_readings(ts, temps), profile, delivered=True)
    assert delivered.verdict == Verdict.DELIVERED
    assert delivered.breaches == ()
    assert delivered.mkt_c == pytest.approx(5.0)
    assert delivered.time_out_of_range_s == 0.0
    live = evaluate_rules(make_readings(ts, temps), profile, now=int(ts[-1]))
    assert live.verdict == Verdict.NO_DECISION


def test_hard_limit_at_boundary_not_below() -> None:
    base = [5.0] * 10
    assert BreachKind.HARD_LIMIT in kinds([*base, 50.0, *base])
    assert BreachKind.HARD_LIMIT not in kinds([*base, 49.99, *base])
    assert BreachKind.HARD_LIMIT in kinds([*base, -3.0, *base])
    assert BreachKind.HARD_LIMIT not in kinds([*base, -2.99, *base])


def test_consecutive_duration_at_boundary_not_below() -> None:
    # >= 45 °C for 1 h: six 10-minute readings hold exactly 3600 s; five hold 3000 s.
    fired = kinds([5.0] * 5 + [45.0] * 6 + [5.0] * 5)
    assert BreachKind.CONSECUTIVE_DURATION in fired
    assert BreachKind.CONSECUTIVE_DURATION not in kinds([5.0] * 5 + [45.0] * 5 + [5.0] * 5)
    # Just under the threshold never counts.
    assert BreachKind.CONSECUTIVE_DURATION not in kinds([5.0] * 5 + [44.99] * 12 + [5.0] * 5)
    # Freezing side: <= -0.5 °C for 1 h.
    assert BreachKind.CONSECUTIVE_DURATION in kinds([5.0] * 5 + [-0.5] * 6 + [5.0] * 5)
    assert BreachKind.CONSECUTIVE_DURATION not in kinds([5.0] * 5 + [-0.49] * 6 + [5.0] * 5)


def test_consecutive_breach_fires_when_limit_reached() -> None:
    ts, temps = series([5.0] * 5 + [45.0] * 9 + [5.0] * 5)
    outcome = evaluate_rules(make_readings(ts, temps), load_profile("refrigerated"))
    breach = next(b for b in outcome.breaches if b.kind == BreachKind.CONSECUTIVE_DURATION)
    assert breach.start_s == ts[5]
    assert breach.at_s == ts[5] + 3600
    assert breach.measured == 9 * STEP
    assert breach.limit == 3600


def test_cumulative_duration_at_boundary_not_below() -> None:
    # >= 30 °C for 10 h in total, split into short (non-consecutive) episodes of 50 minutes each.
    episode = [5.0] * 3 + [30.0] * 5
    twelve = episode * 12  # 12 x 3000 s = 36000 s = 10 h exactly
    profile = load_profile("refrigerated")
    ts, temps = series([*twelve, 5.0])
    outcome = evaluate_rules(make_readings(ts, temps), profile)
    cumulative = [b for b in outcome.breaches if b.kind == BreachKind.CUMULATIVE_DURATION and "30" in b.rule]
    assert len(cumulative) == 1
    assert cumulative[0].measured == 36000
    assert cumulative[0].at_s == ts[-2] + STEP  # the limit is reached at the end of the last hot reading
    ts2, temps2 = series([*twelve[:-1], 5.0, 5.0])
    outcome2 = evaluate_rules(make_readings(ts2, temps2), profile)
    assert not [b for b in outcome2.breaches if b.kind == BreachKind.CUMULATIVE_DURATION and "30" in b.rule]


def test_mkt_window_fires_above_limit_only() -> None:
    profile = load_profile("refrigerated")  # 24 h window, MKT <= 8 °C
    # A full day at a constant temperature has exactly that MKT; other rules stay quiet below 10 °C.
    assert BreachKind.MKT_WINDOW in kinds(np.full(150, 8.01))
    assert BreachKind.MKT_WINDOW not in kinds(np.full(150, 8.0))
    assert BreachKind.MKT_WINDOW not in kinds(np.full(150, 7.99))
    # No full window yet while travelling: a short warm record is not judged by MKT before delivery.
    assert BreachKind.MKT_WINDOW not in kinds(np.full(20, 9.0), now=T0 + 19 * STEP)
    assert BreachKind.MKT_WINDOW in kinds(np.full(20, 9.0), delivered=True)
    ts, temps = series(np.full(150, 8.01))
    outcome = evaluate_rules(make_readings(ts, temps), profile)
    assert outcome.max_window_mkt_c == pytest.approx(8.01)


def test_budget_exhausted_at_boundary() -> None:
    profile = load_profile("crt")  # 60 days equivalent at 25 °C
    allowed = profile.budget.allowed_s
    n = allowed // 3600  # hourly readings at exactly the reference temperature
    hourly_ts = T0 + np.arange(n, dtype=np.int64) * 3600
    at_reference = evaluate_rules(make_readings(hourly_ts, np.full(n, 25.0)), profile)
    assert at_reference.budget_used == pytest.approx(1.0)
    assert BreachKind.BUDGET_EXHAUSTED in {b.kind for b in at_reference.breaches}
    short = evaluate_rules(make_readings(hourly_ts[:-1], np.full(n - 1, 25.0)), profile)
    assert short.budget_used == pytest.approx(1.0 - 1 / n)
    assert BreachKind.BUDGET_EXHAUSTED not in {b.kind for b in short.breaches}


def test_gap_is_a_breach_at_limit_not_below() -> None:
    profile = load_profile("refrigerated")  # gap limit 3600 s
    ts = np.r_[T0 + np.arange(5) * STEP, T0 + 4 * STEP + 3600 + np.arange(5) * STEP]
    temps = np.full(10, 5.0)
    outcome = evaluate_rules(make_readings(ts, temps), profile, delivered=True)
    gaps = [b for b in outcome.breaches if b.kind == BreachKind.DATA_GAP]
    assert outcome.verdict == Verdict.BREACH
    assert len(gaps) == 1
    assert gaps[0].measured == 3600
    ts_ok = ts.copy()
    ts_ok[5:] -= 1
    assert not [
        b
        for b in evaluate_rules(make_readings(ts_ok, temps), profile).breaches
        if b.kind == BreachKind.DATA_GAP
    ]


def test_silent_logger_is_a_gap_breach_live() -> None:
    ts, temps = series(np.full(10, 5.0))
    profile = load_profile("refrigerated")
    late = evaluate_rules(make_readings(ts, temps), profile, now=int(ts[-1]) + 3600)
    assert [b.kind for b in late.breaches] == [BreachKind.DATA_GAP]
    assert late.breaches[0].at_s == int(ts[-1]) + 3600
    fine = evaluate_rules(make_readings(ts, temps), profile, now=int(ts[-1]) + 3599)
    assert fine.breaches == ()


def test_live_evaluation_agrees_with_full_record() -> None:
    temps = np.r_[np.full(30, 5.0), np.linspace(5.0, 47.0, 20), np.full(10, 47.0), np.full(30, 5.0)]
    ts, arr = series(temps)
    readings = make_readings(ts, arr)
    profile = load_profile("refrigerated")
    full = evaluate_rules(readings, profile, now=int(ts[-1]), delivered=True)
    assert full.first_breach_s is not None
    # Walk the record reading by reading: the live engine first reports a breach at the first reading
    # at or after the instant the full evaluation says the limit was reached.
    first_live = next(
        int(t)
        for t in ts
        if evaluate_rules(readings.until(int(t)), profile, now=int(t)).verdict == Verdict.BREACH
    )
    assert first_live == int(ts[np.searchsorted(ts, full.first_breach_s)])


def test_time_out_of_range_and_now_before_last_reading() -> None:
    ts, temps = series([5.0, 9.0, 9.0, 5.0])
    profile = load_profile("refrigerated")
    outcome = evaluate_rules(make_readings(ts, temps), profile)
    assert outcome.time_out_of_range_s == 2 * STEP
    with pytest.raises(ValidationError) as info:
        evaluate_rules(make_readings(ts, temps), profile, now=int(ts[-1]) - 1)
    assert info.value.reason == "end_before_last"


def test_ultra_cold_and_frozen_profiles_fire_on_warming() -> None:
    assert BreachKind.HARD_LIMIT in kinds([-75.0] * 5 + [-15.0] + [-75.0] * 5, "ultracold")
    assert kinds([-75.0] * 20, "ultracold") == set()
    assert BreachKind.CONSECUTIVE_DURATION in kinds([-20.0] * 5 + [-10.0] * 6 + [-20.0] * 5, "frozen")
    assert kinds([-20.0] * 20, "frozen") == set()
