"""Standardized Precipitation Index (McKee et al. 1993), vectorised over whole grids.

For each calendar month the ``scale``-month precipitation sums of the calibration period are fitted
with a two-parameter gamma distribution (location 0) using Thom's approximation of the maximum
likelihood estimator, the same estimator climate_indices 3.1.0 (``indices.spi`` with
``Distribution.gamma``) and xclim's ``method="APP"`` use::

    A = ln(mean(x)) - mean(ln x)        over the non-zero calibration sums x
    alpha = (1 + sqrt(1 + 4A/3)) / (4A),  beta = mean(x) / alpha

Months without rain are handled by the mixed distribution H(x) = q + (1 - q)·G(x), with q the
share of zero sums among the non-missing calibration sums of that calendar month, and
SPI = Φ⁻¹(H), clipped to ±3.09 as climate_indices does.

Edge cases follow climate_indices so the two agree: a calendar month whose calibration sums are all
zero has no gamma fit, so q is taken as 0 and its zeros score -3.09 (a place that never rains in
that month is not "wet" when it does not rain); a calendar month with no calibration data at all is
NaN. Any window that touches a missing month is NaN, and so are the first ``scale - 1`` months.

The whole (time, cells) block is processed with twelve array operations (one per calendar month),
never a Python loop over pixels, which is what makes gridded SPI cheap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from models import numerics as nm
from models.errors import ValidationError

FloatArray = npt.NDArray[np.float64]

#: climate_indices clips SPI to this range: Φ⁻¹ of probabilities beyond it is numerically meaningless.
SPI_LIMIT = 3.09

Calibration = slice | tuple[int, int] | None


def spi(
    precip_mm: npt.ArrayLike,
    *,
    scale: int,
    calibration: Calibration = None,
    start_year: int | None = None,
    start_month: int = 1,
) -> FloatArray:
    """SPI of one monthly precipitation series.

    :param precip_mm: monthly precipitation totals in mm (>= 0; NaN = missing), 1-D.
    :param scale: accumulation period in months (1 … 72), e.g. 1, 3 or 6.
    :param calibration: months used to fit the distributions: a ``slice`` of positions in the
        series, a ``(first_year, last_year)`` pair of calendar years (inclusive; needs
        ``start_year``), or None for the whole record. A year window that only partly overlaps the
        record is cut to the overlap (climate_indices would fall back to the whole record); one
        that misses the record entirely is refused.
    :param start_year: calendar year of the first value (needed only for year calibration).
    :param start_month: calendar month (1…12) of the first value.
    :returns: SPI per month, unitless, in [-3.09, 3.09]; NaN where undefined.
    :raises ValidationError: negative precipitation, bad scale, month or calibration window.
    """
    series = np.asarray(precip_mm, dtype=np.float64)
    if series.ndim != 1:
        raise ValidationError(f"spi expects a 1-D monthly series, got shape {series.shape}", reason="shape")
    return spi_cube(
        series[:, np.newaxis],
        scale=scale,
        calibration=calibration,
        start_year=start_year,
        start_month=start_month,
    )[:, 0]


def spi_cube(
    precip_mm: npt.ArrayLike,
    *,
    scale: int,
    calibration: Calibration = None,
    start_year: int | None = None,
    start_month: int = 1,
) -> FloatArray:
    """SPI of every cell of a (time, ...) block of monthly precipitation, e.g. (time, y, x).

    Arguments and result as in :func:`spi`; axis 0 is time (months), the other axes are cells and
    the result has the input's shape.
    """
    block = np.asarray(precip_mm, dtype=np.float64)
    if block.ndim < 1 or block.shape[0] == 0:
        raise ValidationError("spi needs at least one month of precipitation", reason="empty")
    if not 1 <= scale <= 72:
        raise ValidationError(f"scale must be 1…72 months, got {scale}", reason="scale")
    if not 1 <= start_month <= 12:
        raise ValidationError(f"start_month must be 1…12, got {start_month}", reason="month")
    if bool(np.any(block < 0.0)):
        raise ValidationError("precipitation must not be negative (mm)", reason="negative_precip")
    n_months = block.shape[0]
    cells = block.reshape(n_months, -1)
    sums = rolling_sum(cells, scale)
    calendar_month = (np.arange(n_months) + start_month - 1) % 12
    in_calibration = _calibration_mask(n_months, calibration, start_year, start_month)

    result = np.full_like(sums, np.nan)
    for month in range(12):
        rows = calendar_month == month
        if not rows.any():
            continue
        fit_rows = rows & in_calibration
        result[rows] = _standardize(sums[rows], sums[fit_rows])
    return result.reshape(block.shape)


def rolling_sum(values: FloatArray, scale: int) -> FloatArray:
    """Trailing ``scale``-step sums along axis 0; the first ``scale - 1`` rows and windows with a NaN are NaN.

    Summed slice by slice rather than by cumulative sums so that a window of zeros stays exactly zero
    (the zero mass of the SPI depends on it).
    """
    out = np.full_like(values, np.nan)
    if scale > values.shape[0]:
        return out
    window = values[scale - 1 :].copy()
    for lag in range(1, scale):
        window += values[scale - 1 - lag : values.shape[0] - lag]
    out[scale - 1 :] = window
    return out


def _calibration_mask(
    n_months: int, calibration: Calibration, start_year: int | None, start_month: int
) -> npt.NDArray[np.bool_]:
    mask = np.zeros(n_months, dtype=bool)
    if calibration is None:
        mask[:] = True
        return mask
    if isinstance(calibration, slice):
        mask[calibration] = True
        if not mask.any():
            raise ValidationError(f"calibration slice {calibration} selects no month", reason="calibration")
        return mask
    first, last = calibration
    if start_year is None:
        raise ValidationError("a calibration given in years needs start_year", reason="calibration")
    if first > last:
        raise ValidationError(f"calibration {first}-{last} is reversed", reason="calibration")
    years = start_year + (np.arange(n_months) + start_month - 1) // 12
    mask = (years >= first) & (years <= last)
    if not mask.any():
        raise ValidationError(
            f"calibration {first}-{last} lies outside the record {years[0]}-{years[-1]}", reason="calibration"
        )
    return mask


def _standardize(values: FloatArray, calibration: FloatArray) -> FloatArray:
    """SPI of ``values`` (rows × cells) for one calendar month, fitted on ``calibration`` (rows × cells)."""
    positive = calibration > 0.0  # NaN compares False
    n_valid = (~np.isnan(calibration)).sum(axis=0)
    n_positive = positive.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob_zero = np.where(n_valid > 0, (n_valid - n_positive) / n_valid, np.nan)
        mean = np.where(positive, calibration, 0.0).sum(axis=0) / n_positive
        # A = ln(mean) - mean(ln x) = -mean(ln(x / mean)): exactly 0 for a single value.
        a = -_log_sum(calibration / mean, positive) / n_positive
        alpha = (1.0 + np.sqrt(1.0 + 4.0 * a / 3.0)) / (4.0 * a)
        beta = mean / alpha
        # All-zero calibration: no gamma fit, and the zero mass is ignored (see module docstring).
        # No calibration data at all: the zero mass is undefined, so zeros become NaN below.
        undefined_mass = np.isnan(prob_zero)
        q = np.where((prob_zero >= 1.0) | undefined_mass, 0.0, prob_zero)
        # The incomplete gamma function is the cost centre: one call over the whole block (a dry
        # month costs it next to nothing; gathering the wet values first cost more than it saved).
        gamma_cdf = special.gammainc(alpha, values / beta)
        gamma_cdf[values <= 0.0] = 0.0  # no rain: only the zero mass counts, even without a fit
        probability = q + (1.0 - q) * gamma_cdf  # NaN where the value is missing
        index = special.ndtri(probability)
    index[(values <= 0.0) & undefined_mass] = np.nan
    clipped: FloatArray = np.clip(index, -SPI_LIMIT, SPI_LIMIT, out=index)
    return clipped


#: Rows multiplied before the running product of mantissas is renormalised (each factor is ≥ 1/2, so
#: 256 of them stay far above the smallest normal double).
_PRODUCT_ROWS = 256
_SQRT_HALF = 0.7071067811865476


def _log_sum(x: FloatArray, where: npt.NDArray[np.bool_]) -> FloatArray:
    """Per cell (axis 1), Σ ln x over the rows where ``where`` holds (0 where it never does).

    Taken as the logarithm of a product: each x is split exactly into mantissa × 2**e (mantissa in
    [√½, √2)), the mantissas are multiplied row by row (in row order, renormalised exactly every
    ``_PRODUCT_ROWS`` rows) and the exponents added as integers, so one logarithm per cell replaces
    one per value (the logarithms were half the cost of the fit). The product's rounding error (at
    most one ulp per row, relative) is far below SPI's tolerance.
    """
    mantissa, exponent = _split_mantissa(np.where(where, x, 1.0))
    exponents = exponent.sum(axis=0)
    product = np.ones(x.shape[1:])
    for start in range(0, x.shape[0], _PRODUCT_ROWS):
        product, shift = _split_mantissa(
            product * np.multiply.reduce(mantissa[start : start + _PRODUCT_ROWS])
        )
        exponents += shift
    e = exponents.astype(np.float64)
    total: FloatArray = (e * nm.LN2_LO + nm.log(product)) + e * nm.LN2_HI
    return total


def _split_mantissa(x: FloatArray) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """x = m · 2**e exactly, with m in [√½, √2) (so x = 1 gives m = 1, e = 0)."""
    m, e = np.frexp(x)
    low = m < _SQRT_HALF
    return np.where(low, m * 2.0, m), np.where(low, e - 1, e).astype(np.int64)
