"""A shipment's logger readings as validated arrays, and the time each reading stands for.

Weighting convention used everywhere in :mod:`models.coldchain` ("sample and hold"): a reading stands
for the interval from its timestamp to the next reading's timestamp. The last reading stands for the
interval before it (the logger's sampling interval is assumed to continue) unless the caller gives an
``end`` time, in which case it stands until ``end``. A single reading without ``end`` gets 1 s, so it
still has a positive weight. Even sampling therefore gives every reading the same weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.errors import ValidationError

from .profiles import ABSOLUTE_ZERO_C

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Readings:
    """Readings of one shipment, sorted by time.

    ``ts_s``: UNIX seconds, strictly increasing. ``temp_c``: °C, finite, above absolute zero.
    ``door_open``: 1.0 when the logger saw the door/lid open at that reading, else 0.0 (zeros if unknown).
    ``battery``: logger battery fraction 0…1, NaN where unknown.
    """

    ts_s: IntArray
    temp_c: FloatArray
    door_open: FloatArray
    battery: FloatArray

    def __len__(self) -> int:
        return int(self.ts_s.shape[0])

    def until(self, t_s: int) -> Readings:
        """The readings taken at or before ``t_s`` (what a live evaluator has seen at that time)."""
        n = int(np.searchsorted(self.ts_s, t_s, side="right"))
        return Readings(self.ts_s[:n], self.temp_c[:n], self.door_open[:n], self.battery[:n])


def validate_series(ts_s: npt.ArrayLike, temp_c: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """Check and convert a (timestamps, temperatures) pair.

    Raises ValidationError: empty input (``empty``), mismatched lengths (``shape``), non-integral or
    non-increasing timestamps (``timestamps``), non-finite temperatures (``non_finite``) or
    temperatures at or below absolute zero (``below_absolute_zero``).
    """
    ts_raw = np.asarray(ts_s)
    temp = np.asarray(temp_c, dtype=np.float64)
    if ts_raw.ndim != 1 or temp.ndim != 1:
        raise ValidationError("timestamps and temperatures must be one-dimensional", reason="shape")
    if ts_raw.shape[0] == 0:
        raise ValidationError("no readings", reason="empty")
    if ts_raw.shape != temp.shape:
        raise ValidationError(
            f"{ts_raw.shape[0]} timestamps but {temp.shape[0]} temperatures", reason="shape"
        )
    ts_float = ts_raw.astype(np.float64)
    if not np.all(np.isfinite(ts_float)) or not np.all(ts_float == np.round(ts_float)):
        raise ValidationError("timestamps must be whole UNIX seconds", reason="timestamps")
    ts = ts_raw.astype(np.int64)
    if ts.shape[0] > 1:
        steps = np.diff(ts)
        bad = np.flatnonzero(steps <= 0)
        if bad.size:
            i = int(bad[0])
            raise ValidationError(
                f"timestamps must strictly increase: reading {i + 1} at {int(ts[i + 1])} "
                f"is not after reading {i} at {int(ts[i])}",
                reason="timestamps",
            )
    if not np.all(np.isfinite(temp)):
        i = int(np.flatnonzero(~np.isfinite(temp))[0])
        raise ValidationError(f"temperature {i} is not a finite number", reason="non_finite")
    if np.any(temp <= ABSOLUTE_ZERO_C):
        i = int(np.flatnonzero(temp <= ABSOLUTE_ZERO_C)[0])
        raise ValidationError(
            f"temperature {i} ({temp[i]} °C) is at or below absolute zero", reason="below_absolute_zero"
        )
    return ts, temp


def make_readings(
    ts_s: npt.ArrayLike,
    temp_c: npt.ArrayLike,
    *,
    door_open: npt.ArrayLike | None = None,
    battery: npt.ArrayLike | None = None,
) -> Readings:
    """Validated :class:`Readings`; optional channels must match the length of ``ts_s``."""
    ts, temp = validate_series(ts_s, temp_c)
    n = ts.shape[0]
    door = np.zeros(n) if door_open is None else np.asarray(door_open, dtype=np.float64)
    batt = np.full(n, np.nan) if battery is None else np.asarray(battery, dtype=np.float64)
    if door.shape != (n,) or batt.shape != (n,):
        raise ValidationError("door_open and battery must have one value per reading", reason="shape")
    door = np.where(np.isfinite(door) & (door > 0), 1.0, 0.0)
    return Readings(ts, temp, door, batt)


def hold_durations(ts_s: IntArray, *, end_s: int | None = None) -> FloatArray:
    """Seconds each reading stands for under the sample-and-hold convention (see module docstring).

    ``end_s`` (if given) must not precede the last reading (ValidationError ``end_before_last``).
    """
    n = ts_s.shape[0]
    held = np.empty(n, dtype=np.float64)
    held[:-1] = np.diff(ts_s).astype(np.float64)
    if end_s is not None:
        if end_s < int(ts_s[-1]):
            raise ValidationError(
                f"evaluation time {end_s} precedes the last reading at {int(ts_s[-1])}",
                reason="end_before_last",
            )
        held[-1] = float(end_s - int(ts_s[-1]))
    else:
        held[-1] = held[-2] if n > 1 else 1.0
    return held
