"""Device reputation: how far a device's readings can be trusted, as a number in (0, 1).

Model: each reading is a Bernoulli trial, "clean" or "flagged" (any flag counts once per reading). The
reputation is the posterior mean of the clean probability under a Beta(``prior_clean``,
``prior_flagged``) prior:

    reputation = (prior_clean + w_clean) / (prior_clean + prior_flagged + w_clean + w_flagged)

where ``w_*`` are the counts of clean and flagged readings, each reading weighted by
``0.5 ** (age / half_life_readings)`` (age = how many of the device's readings are newer, in seq order)
when a half-life is given, so a device that was faulty long ago and clean since recovers. The default prior
Beta(9, 1) gives a new device 0.9. Properties (tested): more flags never raise the score; the score stays
strictly inside (0, 1); the result depends only on the counts (or, with decay, on which seqs are flagged).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import numerics as nm
from models.errors import ValidationError

from .telemetry import ReadingFlag


@dataclass(frozen=True)
class ReputationParams:
    """Beta prior pseudo-counts (> 0) and an optional half-life in readings (> 0, None = no decay)."""

    prior_clean: float = 9.0
    prior_flagged: float = 1.0
    half_life_readings: float | None = None

    def __post_init__(self) -> None:
        values = [self.prior_clean, self.prior_flagged]
        if self.half_life_readings is not None:
            values.append(self.half_life_readings)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValidationError(
                "reputation priors and half-life must be positive and finite", reason="params"
            )


def device_reputation(
    flags: Iterable[ReadingFlag],
    n_readings: int,
    *,
    seqs: Sequence[int] | None = None,
    params: ReputationParams | None = None,
) -> float:
    """Reputation of one device from its ``n_readings`` readings and the flags raised on them.

    ``flags`` must all belong to one device; a reading with several flags counts once. With
    ``params.half_life_readings`` set, ``seqs`` (the seq of every reading, ``n_readings`` of them) is
    required to order readings by age. Raises ValidationError ``bad_input`` for flags of several devices,
    more flagged readings than readings, a flag whose seq is not in ``seqs``, or a missing ``seqs``.
    """
    p = params or ReputationParams()
    flag_list = list(flags)
    if len({f.device for f in flag_list}) > 1:
        raise ValidationError("flags of several devices given to device_reputation", reason="bad_input")
    flagged = {f.seq for f in flag_list}
    if n_readings < 0 or len(flagged) > n_readings:
        raise ValidationError(f"{len(flagged)} flagged readings out of {n_readings}", reason="bad_input")
    if p.half_life_readings is None:
        w_flagged, w_clean = float(len(flagged)), float(n_readings - len(flagged))
    else:
        if seqs is None or len(seqs) != n_readings or len(set(seqs)) != n_readings:
            raise ValidationError(
                "decay needs the n_readings distinct seqs of the device", reason="bad_input"
            )
        if not flagged <= set(seqs):
            raise ValidationError("a flag names a seq the device did not report", reason="bad_input")
        order = sorted(seqs)
        age = np.arange(n_readings - 1, -1, -1, dtype=np.float64)
        weight = nm.power(0.5, age / p.half_life_readings)
        is_flagged = np.array([s in flagged for s in order])
        w_flagged = float(weight[is_flagged].sum())
        w_clean = float(weight[~is_flagged].sum())
    return (p.prior_clean + w_clean) / (p.prior_clean + p.prior_flagged + w_clean + w_flagged)


def device_reputations(
    readings: Sequence[Mapping[str, Any]],
    flags: Iterable[ReadingFlag],
    *,
    params: ReputationParams | None = None,
) -> dict[str, float]:
    """:func:`device_reputation` of every device in ``readings`` (the dicts given to ``flag_readings``)."""
    seqs: dict[str, list[int]] = {}
    for r in readings:
        seqs.setdefault(str(r["device"]), []).append(int(r["seq"]))
    by_device: dict[str, list[ReadingFlag]] = {d: [] for d in seqs}
    for f in flags:
        if f.device not in by_device:
            raise ValidationError(f"flag for unknown device {f.device!r}", reason="bad_input")
        by_device[f.device].append(f)
    return {
        d: device_reputation(by_device[d], len(seqs[d]), seqs=seqs[d], params=params) for d in sorted(seqs)
    }
