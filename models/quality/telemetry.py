"""Rule-based fault and poisoning detectors for logger telemetry: stuck sensors, impossible rates of
change, spikes and clock faults.

Input: the readings dicts of ``oracle.decisions.coldchain.readings_step``, i.e. mappings with ``device``
(str), ``seq`` (int, the logger's own counter), ``ts_ms`` (int, UNIX ms), ``temp_c`` (finite °C) and
optionally ``door_open`` (bool or None). Every detector works per device in ``seq`` order, because the
logger's counter is the one thing a wrong clock cannot reorder.

Detectors and their defaults (all in :class:`QualityParams`):

- **stuck** — a run of at least ``stuck_min_readings`` readings spanning at least ``stuck_min_s`` whose
  values stay within ``stuck_tolerance_c`` (0 = bit-identical). A real logger's reading jitters by its
  noise (≈0.1–0.2 °C) and its 0.01–0.1 °C resolution; two hours of identical values means a frozen ADC,
  a dead probe or a replayed value. Every reading in the run is flagged.
- **rate_of_change** — the change from the last trusted reading of the same device exceeds
  ``max_rate * elapsed + rate_noise_c``. Physics: a payload in a reefer or an insulated shipper is a
  thermal mass coupled to its surroundings by first-order conductances, so ``|dT/dt| <= ΔT / τ``. The
  largest plausible ΔT is ≈120 K (dry ice at −78.5 °C against a 40 °C hot day) and the fastest coupling
  with the door shut is the reefer's evaporator fan (τ ≈ 30 min), giving 4 °C/min; an open door forces
  ambient air in (τ ≈ 18 min), so readings that report the door opened get 8 °C/min. The noise term keeps
  fast sampling (seconds apart) from turning sensor noise into an impossible rate. A flagged reading does
  not become the new reference, so a lone jump is flagged but the readings after it are not, and a real
  level change is accepted again once enough time has passed for physics to explain it.
- **spike** — Hampel filter: ``|x - median| > spike_n_sigma * max(1.4826 * MAD, floor)`` over a
  centred window of up to ``2 * spike_half_window + 1`` readings, where ``floor`` is the larger of
  ``spike_min_scale_c`` and the device's whole-record noise scale ``median|Δx| / (0.6745·√2)``. The
  floor keeps a nearly constant series (MAD ≈ 0) from calling its noise a spike, and keeps a reefer's
  compressor sawtooth (2–8 K swings within minutes) from looking like one: with the defaults a spike
  is at least 4 °C off the local median. The window holds the readings within ``spike_half_window``
  sequence steps of the reading, as many on each side as the shorter side has: next to either end of
  the record, or to an upload gap of ``spike_half_window`` or more readings, it shrinks, and a reading
  with no neighbour on one side is left to the rate check. Without readings on both sides a spike
  cannot be told from the start of a real change; one-sided windows made the turn of a cooling cycle
  or a door excursion next to an end or a gap look like a spike on clean simulated shipments (11 false
  flags in 7.8 million readings before this rule, none after). Readings that report the door opened, and
  the reading right after them, are exempt: an opened door is a known physical cause of a short, sharp
  excursion and of the recovery that follows (the rate check still applies to them).
- **clock** — with the device's sampling interval estimated as the median of ``Δts / Δseq``:
  ``clock_backwards`` when a reading's timestamp does not advance past its predecessor's (in seq order);
  ``clock_jump`` when ``Δts`` exceeds ``clock_max_ratio * Δseq * interval + clock_slack_s`` or falls
  below ``Δseq * interval / clock_max_ratio - clock_slack_s``; ``clock_offset`` for every reading whose
  ``ts - seq * interval`` lies more than ``clock_offset_intervals`` intervals from the device's median
  offset, so every reading stamped by a jumped clock is caught, not only the first.

Every flag carries the measured value, the threshold it crossed and their unit, so a flag can be
explained to a shipper without re-running anything. Same input → same flags, in a canonical order.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from models.errors import ValidationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


class FlagReason(enum.StrEnum):
    STUCK = "stuck"
    RATE_OF_CHANGE = "rate_of_change"
    SPIKE = "spike"
    CLOCK_BACKWARDS = "clock_backwards"
    CLOCK_JUMP = "clock_jump"
    CLOCK_OFFSET = "clock_offset"


@dataclass(frozen=True)
class QualityParams:
    """Thresholds of :func:`flag_readings` (see the module docstring for the reasoning behind each).

    Temperatures in °C, rates in °C per minute, times in seconds. A detector is switched off by its
    ``enable_*`` flag, never by an extreme threshold, so the record says what was checked.
    """

    enable_stuck: bool = True
    stuck_min_s: float = 7200.0
    stuck_min_readings: int = 6
    stuck_tolerance_c: float = 0.0
    enable_rate: bool = True
    max_rate_c_per_min: float = 4.0
    max_rate_door_open_c_per_min: float = 8.0
    rate_noise_c: float = 1.0
    enable_spike: bool = True
    spike_half_window: int = 3
    spike_n_sigma: float = 5.0
    spike_min_scale_c: float = 0.8
    enable_clock: bool = True
    clock_max_ratio: float = 2.0
    clock_slack_s: float = 60.0
    clock_offset_intervals: float = 3.0

    def __post_init__(self) -> None:
        positive = {
            "stuck_min_s": self.stuck_min_s,
            "max_rate_c_per_min": self.max_rate_c_per_min,
            "max_rate_door_open_c_per_min": self.max_rate_door_open_c_per_min,
            "spike_n_sigma": self.spike_n_sigma,
            "spike_min_scale_c": self.spike_min_scale_c,
            "clock_offset_intervals": self.clock_offset_intervals,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(
                    f"{name} must be a positive finite number, got {value}", reason="params"
                )
        for name, value in {
            "stuck_tolerance_c": self.stuck_tolerance_c,
            "rate_noise_c": self.rate_noise_c,
            "clock_slack_s": self.clock_slack_s,
        }.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"{name} must be finite and >= 0, got {value}", reason="params")
        if self.stuck_min_readings < 2 or self.spike_half_window < 1:
            raise ValidationError("need stuck_min_readings >= 2 and spike_half_window >= 1", reason="params")
        if not (math.isfinite(self.clock_max_ratio) and self.clock_max_ratio > 1):
            raise ValidationError("clock_max_ratio must be > 1", reason="params")


@dataclass(frozen=True)
class ReadingFlag:
    """One reading judged suspect by one detector.

    ``measured`` and ``threshold`` share ``unit``: the value the detector computed and the limit it
    crossed (stuck: run length in s vs ``stuck_min_s``; rate: °C change vs allowed °C change; spike: °C
    from the local median vs allowed °C; clock: s vs allowed s). ``detail`` is a human sentence.
    """

    device: str
    seq: int
    ts_ms: int
    reason: FlagReason
    measured: float
    threshold: float
    unit: str
    detail: str

    @property
    def key(self) -> tuple[str, int]:
        """The reading's idempotency key, as used by ingest and :mod:`models.quality.policy`."""
        return (self.device, self.seq)


@dataclass(frozen=True, eq=False)
class _Series:
    device: str
    seq: IntArray
    ts_ms: IntArray
    temp: FloatArray
    door: npt.NDArray[np.bool_]


def _series(readings: Sequence[Mapping[str, Any]]) -> list[_Series]:
    by_device: dict[str, dict[int, tuple[int, float, bool]]] = {}
    for i, r in enumerate(readings):
        try:
            device, seq, ts_ms, temp = str(r["device"]), r["seq"], r["ts_ms"], float(r["temp_c"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"reading {i} lacks a usable device/seq/ts_ms/temp_c: {exc}", reason="bad_reading"
            ) from None
        if (
            isinstance(seq, bool)
            or not isinstance(seq, int)
            or isinstance(ts_ms, bool)
            or not isinstance(ts_ms, int)
        ):
            raise ValidationError(f"reading {i}: seq and ts_ms must be integers", reason="bad_reading")
        if not math.isfinite(temp):
            raise ValidationError(f"reading {i}: temp_c is not finite", reason="bad_reading")
        readings_of = by_device.setdefault(device, {})
        if seq in readings_of:
            raise ValidationError(
                f"reading {i}: duplicate (device, seq) ({device!r}, {seq})", reason="bad_reading"
            )
        readings_of[seq] = (ts_ms, temp, bool(r.get("door_open") or False))
    out = []
    for device in sorted(by_device):
        rows = sorted(by_device[device].items())
        out.append(
            _Series(
                device=device,
                seq=np.array([s for s, _ in rows], dtype=np.int64),
                ts_ms=np.array([v[0] for _, v in rows], dtype=np.int64),
                temp=np.array([v[1] for _, v in rows], dtype=np.float64),
                door=np.array([v[2] for _, v in rows], dtype=np.bool_),
            )
        )
    return out


def _flag(
    s: _Series, i: int, reason: FlagReason, measured: float, threshold: float, unit: str, detail: str
) -> ReadingFlag:
    return ReadingFlag(
        s.device, int(s.seq[i]), int(s.ts_ms[i]), reason, float(measured), float(threshold), unit, detail
    )


def _stuck(s: _Series, p: QualityParams) -> list[ReadingFlag]:
    found: list[ReadingFlag] = []
    n, i = s.temp.shape[0], 0
    while i < n:
        lo = hi = s.temp[i]
        j = i + 1
        while j < n:
            lo2, hi2 = min(lo, s.temp[j]), max(hi, s.temp[j])
            if hi2 - lo2 > p.stuck_tolerance_c:
                break
            lo, hi, j = lo2, hi2, j + 1
        span_s = (int(s.ts_ms[j - 1]) - int(s.ts_ms[i])) / 1000.0
        if j - i >= p.stuck_min_readings and span_s >= p.stuck_min_s:
            detail = (
                f"{j - i} readings over {span_s / 3600:.2f} h within {hi - lo:.3g} °C "
                f"(tolerance {p.stuck_tolerance_c:g} °C) at {lo:g}…{hi:g} °C"
            )
            found.extend(
                _flag(s, k, FlagReason.STUCK, span_s, p.stuck_min_s, "s", detail) for k in range(i, j)
            )
        i = j
    return found


def _rate(s: _Series, p: QualityParams) -> list[ReadingFlag]:
    found: list[ReadingFlag] = []
    trusted = 0
    for i in range(1, s.temp.shape[0]):
        elapsed_min = (int(s.ts_ms[i]) - int(s.ts_ms[trusted])) / 60_000.0
        if elapsed_min <= 0:
            continue  # no usable time base: the clock detector reports this reading
        rate = p.max_rate_door_open_c_per_min if s.door[i] else p.max_rate_c_per_min
        allowed = rate * elapsed_min + p.rate_noise_c
        change = abs(float(s.temp[i] - s.temp[trusted]))
        if change > allowed:
            detail = (
                f"{change:.2f} °C in {elapsed_min:.2f} min since seq {int(s.seq[trusted])} "
                f"(allowed {rate:g} °C/min + {p.rate_noise_c:g} °C noise)"
            )
            found.append(_flag(s, i, FlagReason.RATE_OF_CHANGE, change, allowed, "°C", detail))
        else:
            trusted = i
    return found


def _spikes(s: _Series, p: QualityParams) -> list[ReadingFlag]:
    k = p.spike_half_window
    n = s.temp.shape[0]
    if n < k + 2:
        return []
    padded = np.concatenate((np.full(k, np.nan), s.temp, np.full(k, np.nan)))
    # Balanced windows of the readings within k sequence steps: a window cut off on one side (at either
    # end of the record, or at an upload gap) is the median of the past or the future alone, and a trend
    # or a compressor cycle turning there reads as a spike. So each side keeps as many readings as the
    # shorter side has; a reading with none on one side is left to the rate check.
    index = np.arange(n)
    before = index - np.searchsorted(s.seq, s.seq - k, side="left")
    after = np.searchsorted(s.seq, s.seq + k, side="right") - 1 - index
    half = np.minimum(before, after)
    offsets = np.abs(np.arange(-k, k + 1))
    windows = np.where(offsets[None, :] <= half[:, None], sliding_window_view(padded, 2 * k + 1), np.nan)
    med = np.nanmedian(windows, axis=1)
    mad = np.nanmedian(np.abs(windows - med[:, None]), axis=1)
    # Device-wide scale from first differences: for white noise σ = median|Δx| / (0.6745·√2); for a reefer
    # cycling faster than the window it is the swing size, which a local MAD can alias to nearly zero.
    step_scale = float(np.median(np.abs(np.diff(s.temp)))) / (0.6745 * math.sqrt(2.0))
    allowed = p.spike_n_sigma * np.maximum(_MAD_TO_SIGMA * mad, max(p.spike_min_scale_c, step_scale))
    dev = np.abs(s.temp - med)
    # The reading after a door report shows the payload recovering from the same known cause.
    exempt = s.door | np.concatenate(([False], s.door[:-1]))
    found = []
    for i in np.flatnonzero((dev > allowed) & ~exempt):
        detail = f"{dev[i]:.2f} °C from the local median {med[i]:.2f} °C (allowed {allowed[i]:.2f} °C)"
        found.append(_flag(s, int(i), FlagReason.SPIKE, dev[i], allowed[i], "°C", detail))
    return found


def _clock(s: _Series, p: QualityParams) -> list[ReadingFlag]:
    n = s.seq.shape[0]
    if n < 2:
        return []
    dseq = np.diff(s.seq).astype(np.float64)
    dts = np.diff(s.ts_ms).astype(np.float64) / 1000.0
    forward = dts > 0
    interval = float(np.median(dts[forward] / dseq[forward])) if forward.any() else math.nan
    found: list[ReadingFlag] = []
    for i in range(1, n):
        step = float(dts[i - 1])
        if step <= 0:
            detail = f"timestamp {step:+.3f} s after seq {int(s.seq[i - 1])}: the clock did not advance"
            found.append(_flag(s, i, FlagReason.CLOCK_BACKWARDS, step, 0.0, "s", detail))
            continue
        expected = float(dseq[i - 1]) * interval
        high = p.clock_max_ratio * expected + p.clock_slack_s
        low = expected / p.clock_max_ratio - p.clock_slack_s
        if step > high or step < low:
            limit = high if step > high else low
            detail = (
                f"{step:.0f} s for {int(dseq[i - 1])} sequence steps at a {interval:.0f} s interval "
                f"(expected {low:.0f}…{high:.0f} s)"
            )
            found.append(_flag(s, i, FlagReason.CLOCK_JUMP, step, limit, "s", detail))
    if math.isfinite(interval):
        offset = s.ts_ms.astype(np.float64) / 1000.0 - s.seq.astype(np.float64) * interval
        centre = float(np.median(offset))
        tolerance = p.clock_offset_intervals * interval + p.clock_slack_s
        for j in np.flatnonzero(np.abs(offset - centre) > tolerance):
            off = float(offset[j] - centre)
            detail = f"timestamp {off:+.0f} s off the device's clock line (tolerance {tolerance:.0f} s)"
            found.append(_flag(s, int(j), FlagReason.CLOCK_OFFSET, abs(off), tolerance, "s", detail))
    return found


def flag_readings(
    readings: Sequence[Mapping[str, Any]], *, params: QualityParams | None = None
) -> list[ReadingFlag]:
    """Every flag the enabled detectors raise on ``readings`` (any order, several devices allowed).

    A reading may carry several flags (one per detector that fired). The result is sorted by
    (device, seq, reason). Raises ValidationError ``bad_reading`` for a reading without a string-able
    ``device``, integer ``seq``/``ts_ms``, a finite ``temp_c``, or a repeated (device, seq), and
    ``params`` for inconsistent parameters.
    """
    p = params or QualityParams()
    flags: list[ReadingFlag] = []
    for s in _series(readings):
        if p.enable_stuck:
            flags.extend(_stuck(s, p))
        if p.enable_rate:
            flags.extend(_rate(s, p))
        if p.enable_spike:
            flags.extend(_spikes(s, p))
        if p.enable_clock:
            flags.extend(_clock(s, p))
    flags.sort(key=lambda f: (f.device, f.seq, f.reason.value))
    return flags
