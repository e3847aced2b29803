"""Soil-moisture percentile against a climatology (empirical, no distribution assumed)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.errors import ValidationError

FloatArray = npt.NDArray[np.float64]


def soil_moisture_percentile(
    value: npt.ArrayLike, climatology: npt.ArrayLike, *, axis: int = 0
) -> FloatArray:
    """Empirical percentile (0…100) of ``value`` within ``climatology`` (years along ``axis``).

    Uses the mid-rank convention: percent of past values below plus half of those equal, so a value
    equal to the climatological median scores 50 and ties do not bias the result. The USDM maps
    percentiles 21–30 to D0, 11–20 D1, 6–10 D2, 3–5 D3, 0–2 D4.

    :param value: current soil moisture (any unit, the same as the climatology), shape S.
    :param climatology: past values of the same place and period, NaN = missing.
    :returns: percentile in [0, 100]; NaN where the value is NaN or the climatology is empty.
    """
    current = np.asarray(value, dtype=np.float64)
    past = np.moveaxis(np.asarray(climatology, dtype=np.float64), axis, 0)
    if past.shape[0] == 0:
        raise ValidationError("soil-moisture climatology is empty", reason="climatology")
    count = np.sum(~np.isnan(past), axis=0)
    below = np.sum(past < current, axis=0)
    equal = np.sum(past == current, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct: FloatArray = np.where(
            (count > 0) & ~np.isnan(current), 100.0 * (below + 0.5 * equal) / count, np.nan
        )
    return pct
