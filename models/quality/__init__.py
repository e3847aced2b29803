"""Fault and poisoning defences: pure, deterministic detectors for decision inputs.

Telemetry (:mod:`.telemetry`) — per reading, per device, in seq order::

    flag_readings(readings, *, params=QualityParams()) -> list[ReadingFlag]

``readings`` are the dicts of ``readings_step`` (device, seq, ts_ms, temp_c, door_open, battery_pct).
Reasons: ``stuck``, ``rate_of_change``, ``spike`` (Hampel), ``clock_backwards``, ``clock_jump``,
``clock_offset``. Each flag has ``measured``/``threshold``/``unit`` and a sentence in ``detail``;
``flag.key`` is ``(device, seq)``.

Device reputation (:mod:`.reputation`) — Beta-posterior mean of "clean", optional half-life decay::

    device_reputation(flags, n_readings, *, seqs=None, params=ReputationParams()) -> float in (0, 1)
    device_reputations(readings, flags, *, params=...) -> {device: float}

Raster and weather inputs (:mod:`.inputs`) — the dicts of ``zonal_mean_step``
(region_id, variable, date, mean, valid_fraction)::

    flag_region_means(current, history, *, params=InputParams()) -> list[InputFlag]
    find_duplicates(values_by_date, *, atol=0.0, rtol=0.0) -> list[Duplicate]
    duplicate_flags(rows, *, atol=0.0, rtol=0.0) -> list[InputFlag]

Reasons: ``climatology`` (robust z vs same month in earlier years), ``low_coverage``, ``missing``,
``duplicate``, and the note ``short_history``; ``flag.key`` is ``(region_id, variable, date)``.

Policy (:mod:`.policy`)::

    apply_policy(flags, *, mode="exclude" | "hold" | "record") -> PolicyOutcome(mode, drop, hold, flags)
    kept_readings(readings, outcome) / kept_inputs(rows, outcome)

Everything here is pure: same arguments, same result, no I/O, no clock, no randomness.
"""

from .inputs import (
    Duplicate,
    InputFlag,
    InputParams,
    InputReason,
    duplicate_flags,
    find_duplicates,
    flag_region_means,
)
from .policy import PolicyOutcome, apply_policy, kept_inputs, kept_readings
from .reputation import ReputationParams, device_reputation, device_reputations
from .telemetry import FlagReason, QualityParams, ReadingFlag, flag_readings

__all__ = [
    "Duplicate",
    "FlagReason",
    "InputFlag",
    "InputParams",
    "InputReason",
    "PolicyOutcome",
    "QualityParams",
    "ReadingFlag",
    "ReputationParams",
    "apply_policy",
    "device_reputation",
    "device_reputations",
    "duplicate_flags",
    "find_duplicates",
    "flag_readings",
    "flag_region_means",
    "kept_inputs",
    "kept_readings",
]
