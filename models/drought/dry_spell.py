"""Dry-spell length: the longest run of consecutive dry days in a daily precipitation record."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.errors import ValidationError

#: A day with less rain than this (mm) is dry; 1 mm is the ETCCDI convention (CDD index).
DRY_DAY_MM = 1.0


def longest_dry_spell(
    daily_precip_mm: npt.ArrayLike, *, threshold_mm: float = DRY_DAY_MM, axis: int = 0
) -> npt.NDArray[np.int64]:
    """Longest run of consecutive days with precipitation < ``threshold_mm`` along ``axis``.

    Works on one series (returns a 0-d array) or a stack such as (days, y, x). A missing day (NaN)
    ends a run: an unknown day is not counted as dry, so gaps never lengthen a spell.

    :param daily_precip_mm: daily totals in mm (>= 0).
    :returns: days (integer), same shape as the input without ``axis``.
    :raises ValidationError: negative precipitation or a non-positive threshold.
    """
    precip = np.moveaxis(np.asarray(daily_precip_mm, dtype=np.float64), axis, 0)
    if threshold_mm <= 0.0:
        raise ValidationError(f"dry-day threshold must be > 0 mm, got {threshold_mm}", reason="threshold")
    if bool(np.any(precip < 0.0)):
        raise ValidationError("precipitation must not be negative (mm)", reason="negative_precip")
    dry = precip < threshold_mm  # NaN compares False: not dry
    run = np.zeros(precip.shape[1:], dtype=np.int64)
    longest = np.zeros(precip.shape[1:], dtype=np.int64)
    # One pass over days, vectorised over cells: a year of days over a grid is 365 array ops.
    for day in dry:
        run = np.where(day, run + 1, 0)
        np.maximum(longest, run, out=longest)
    return longest
