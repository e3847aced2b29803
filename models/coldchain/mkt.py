"""Mean kinetic temperature (USP <1160>, ICH Q1A).

T_K = (ΔH/R) / −ln( Σ wᵢ·exp(−(ΔH/R)/Tᵢ) / Σ wᵢ ), with Tᵢ in kelvin and wᵢ the time each reading
stands for: the interval to the next reading, the last reading taking the interval before it (see
:mod:`models.coldchain.readings`). Uneven sampling is therefore weighted by time, and even sampling
reduces to the textbook equal-weight formula.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models import numerics as nm
from models.errors import ValidationError

from .readings import FloatArray, hold_durations, validate_series

KELVIN_OFFSET = 273.15
DEFAULT_DH_OVER_R = 10000.0  # ΔH = 83.144 kJ/mol over R = 8.3144 J/mol/K


def weighted_mkt(temp_c: FloatArray, weights_s: FloatArray, *, dh_over_r: float = DEFAULT_DH_OVER_R) -> float:
    """MKT in °C of temperatures held for ``weights_s`` seconds each (total weight must be positive).

    The exponentials are scaled by their largest term before summing, so ultra-cold series (where
    exp(−10000/193 K) ≈ 3e-23) keep full precision.
    """
    total = float(np.sum(weights_s))
    if not total > 0:
        raise ValidationError("readings cover no time", reason="empty")
    exponent = -dh_over_r / (temp_c + KELVIN_OFFSET)
    top = float(np.max(exponent))
    mean = float(np.sum(weights_s * nm.exp(exponent - top))) / total
    return dh_over_r / -(float(nm.log(mean)) + top) - KELVIN_OFFSET


def mean_kinetic_temperature(
    ts_s: npt.ArrayLike, temp_c: npt.ArrayLike, *, dh_over_r: float = DEFAULT_DH_OVER_R
) -> float:
    """Interval-weighted mean kinetic temperature in °C.

    ``ts_s``: UNIX seconds, strictly increasing; ``temp_c``: °C. ``dh_over_r``: activation energy over
    the gas constant in kelvin (10,000 K by default).

    Raises ValidationError for empty input, mismatched lengths, non-increasing timestamps, non-finite
    temperatures, temperatures at or below absolute zero, or a non-positive ``dh_over_r``.
    """
    if not np.isfinite(dh_over_r) or dh_over_r <= 0:
        raise ValidationError(f"dh_over_r must be a positive number, got {dh_over_r}", reason="dh_over_r")
    ts, temp = validate_series(ts_s, temp_c)
    return weighted_mkt(temp, hold_durations(ts), dh_over_r=dh_over_r)
