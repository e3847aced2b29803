"""Breach-model features at each reading time, computed only from that reading and earlier ones.

At reading k the earlier readings j < k stand for the time to their successor (sample and hold) and
reading k itself for nothing yet, which is exactly what a live evaluator knows at that moment.
Temperatures are °C, durations seconds, slopes °C per hour.
"""

from __future__ import annotations

import numpy as np

from models import numerics as nm

from .mkt import KELVIN_OFFSET
from .profiles import ProductProfile
from .readings import FloatArray, Readings
from .rules import COMPARISONS, arrhenius_factor

FEATURE_NAMES: tuple[str, ...] = (
    "temp_c",
    "dist_to_high_c",
    "dist_to_low_c",
    "dist_to_hard_limit_c",
    "slope_30m_c_per_h",
    "slope_60m_c_per_h",
    "slope_120m_c_per_h",
    "mean_1h_c",
    "time_out_of_range_s",
    "time_out_of_range_2h_s",
    "duration_rule_pressure",
    "mkt_margin_c",
    "budget_used",
    "door_openings_1h",
    "door_openings_total",
    "longest_gap_s",
    "gap_before_s",
    "battery",
    "battery_hours_left",
    "elapsed_h",
    "band_width_c",
)


def _since(ts: FloatArray, window_s: float) -> np.ndarray:
    """Index of the first reading at or after ``ts[k] - window_s`` for every k."""
    return np.searchsorted(ts, ts - window_s, side="left")


def _held_before(held: FloatArray) -> FloatArray:
    """Running sum of ``held`` over readings strictly before k (length n + 1, starts at 0)."""
    return np.concatenate(([0.0], np.cumsum(held)))


def feature_matrix(readings: Readings, profile: ProductProfile) -> FloatArray:
    """Features (n readings × len(FEATURE_NAMES)) at every reading time, causal."""
    ts = readings.ts_s.astype(np.float64)
    temp = readings.temp_c
    n = ts.shape[0]
    held = np.r_[np.diff(ts), 0.0]  # reading k's own hold is unknown at time k
    elapsed = ts - ts[0]
    past = _held_before(held)[:-1]  # time covered by readings before k

    def slope(window_s: float) -> FloatArray:
        earlier = np.interp(ts - window_s, ts, temp)
        span = np.minimum(elapsed, window_s)
        return np.where(span > 0, (temp - earlier) / np.maximum(span, 1.0) * 3600.0, 0.0)

    cum_temp = np.concatenate(([0.0], np.cumsum(temp)))
    start_1h = _since(ts, 3600.0)
    mean_1h = (cum_temp[1:] - cum_temp[start_1h]) / (np.arange(n) + 1 - start_1h)

    outside = (temp < profile.band_low_c) | (temp > profile.band_high_c)
    out_cum = _held_before(np.where(outside, held, 0.0))
    start_2h = _since(ts, 7200.0)
    out_2h = out_cum[:-1] - out_cum[start_2h]

    pressure = np.zeros(n)
    for rule in profile.duration_limits:
        match = COMPARISONS[rule.op](temp, rule.threshold_c)
        if rule.mode == "cumulative":
            used = _held_before(np.where(match, held, 0.0))[:-1]
        else:
            # Start of the current matching run; the run has lasted ts[k] - run start so far.
            run_start = np.where(match & ~np.r_[False, match[:-1]], ts, np.nan)
            run_start = np.fmax.accumulate(np.where(np.isnan(run_start), -np.inf, run_start))
            used = np.where(match, ts - run_start, 0.0)
        pressure = np.maximum(pressure, used / rule.limit_s)

    # Trailing MKT over the profile window (partial at the start), scaled against underflow.
    exponent = -profile.mkt.dh_over_r / (temp + KELVIN_OFFSET)
    top = float(exponent.max())
    mass = _held_before(nm.exp(exponent - top) * held)
    start_w = _since(ts, float(profile.mkt.window_s))
    covered = past - _held_before(held)[start_w]
    window_mass = mass[:-1] - mass[start_w]
    with np.errstate(divide="ignore", invalid="ignore"):
        trailing = profile.mkt.dh_over_r / -(nm.log(window_mass / covered) + top) - KELVIN_OFFSET
    trailing = np.where(covered > 0, trailing, temp)

    b = profile.budget
    budget = _held_before(arrhenius_factor(temp, reference_c=b.reference_c, dh_over_r=b.dh_over_r) * held)
    door_cum = np.concatenate(([0.0], np.cumsum(readings.door_open)))
    gaps = np.r_[0.0, np.diff(ts)]
    battery = readings.battery
    battery_2h_ago = battery[start_2h]
    drain_per_h = (battery_2h_ago - battery) / np.maximum(ts - ts[start_2h], 1.0) * 3600.0
    hours_left = np.where(drain_per_h > 1e-6, battery / np.maximum(drain_per_h, 1e-6), 500.0)
    columns = [
        temp,
        profile.band_high_c - temp,
        temp - profile.band_low_c,
        np.minimum(profile.hard_max_c - temp, temp - profile.hard_min_c),
        slope(1800.0),
        slope(3600.0),
        slope(7200.0),
        mean_1h,
        out_cum[:-1],
        out_2h,
        pressure,
        profile.mkt.max_c - trailing,
        budget[:-1] / b.allowed_s,
        door_cum[1:] - door_cum[start_1h],
        door_cum[1:],
        np.maximum.accumulate(gaps),
        gaps,
        battery,
        np.where(np.isnan(battery), np.nan, np.minimum(hours_left, 500.0)),
        elapsed / 3600.0,
        np.full(n, profile.band_high_c - profile.band_low_c),
    ]
    return np.column_stack(columns).astype(np.float64)
