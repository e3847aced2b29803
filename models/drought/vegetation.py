"""Vegetation and temperature condition indices (Kogan 1995) and the NDVI anomaly.

All functions are element-wise over numpy arrays; the climatological extremes or moments come from
the caller (per pixel and compositing period, e.g. the same dekad or month in all years), so the
same code serves a single pixel, a region mean or a whole raster stack.

Indices are on 0…100 where lower is worse (drier vegetation, hotter surface). Values are not
clipped: an observation outside the climatological range (a new record) gives < 0 or > 100, which
is information a caller may want; use :func:`numpy.clip` to bound them. Where the climatological
range is zero the index is undefined and returned as NaN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.errors import ValidationError

FloatArray = npt.NDArray[np.float64]


def _as_float(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def vegetation_condition_index(
    ndvi: npt.ArrayLike, ndvi_min: npt.ArrayLike, ndvi_max: npt.ArrayLike
) -> FloatArray:
    """VCI = 100·(NDVI − NDVImin)/(NDVImax − NDVImin), in percent; NaN where NDVImax == NDVImin.

    :raises ValidationError: if any NDVImin > NDVImax (climatology swapped).
    """
    value, low, high = _as_float(ndvi), _as_float(ndvi_min), _as_float(ndvi_max)
    if bool(np.any(low > high)):
        raise ValidationError("NDVI climatology has min > max", reason="climatology")
    span = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        vci: FloatArray = np.where(span > 0.0, 100.0 * (value - low) / span, np.nan)
    return vci


def temperature_condition_index(
    bt: npt.ArrayLike, bt_min: npt.ArrayLike, bt_max: npt.ArrayLike
) -> FloatArray:
    """TCI = 100·(BTmax − BT)/(BTmax − BTmin), in percent; BT is brightness or land-surface temperature.

    :raises ValidationError: if any BTmin > BTmax.
    """
    value, low, high = _as_float(bt), _as_float(bt_min), _as_float(bt_max)
    if bool(np.any(low > high)):
        raise ValidationError("temperature climatology has min > max", reason="climatology")
    span = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        tci: FloatArray = np.where(span > 0.0, 100.0 * (high - value) / span, np.nan)
    return tci


def vegetation_health_index(vci: npt.ArrayLike, tci: npt.ArrayLike, *, weight: float = 0.5) -> FloatArray:
    """VHI = weight·VCI + (1 − weight)·TCI (Kogan uses 0.5); 0…100, lower = worse.

    :raises ValidationError: if ``weight`` is outside [0, 1].
    """
    if not 0.0 <= weight <= 1.0:
        raise ValidationError(f"VHI weight must be in [0, 1], got {weight}", reason="weight")
    vhi: FloatArray = weight * _as_float(vci) + (1.0 - weight) * _as_float(tci)
    return vhi


def ndvi_anomaly(
    ndvi: npt.ArrayLike, climatology: npt.ArrayLike, *, axis: int = 0, ddof: int = 1
) -> FloatArray:
    """z-score of NDVI against a climatology of the same pixel and compositing period.

    :param ndvi: the current composite, shape S (e.g. (y, x)) or anything broadcastable to it.
    :param climatology: past composites of the same period, with the years along ``axis``
        (e.g. (years, y, x)); NaN = missing, ignored.
    :returns: (NDVI − mean)/sd, unitless; NaN where fewer than two past years or sd == 0.
    """
    past = _as_float(climatology)
    count = np.sum(~np.isnan(past), axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.nansum(past, axis=axis) / count
        deviations = np.where(np.isnan(past), 0.0, past - np.expand_dims(mean, axis))
        variance = np.sum(deviations**2, axis=axis) / (count - ddof)
        sd = np.sqrt(variance)
        z: FloatArray = np.where((count > ddof) & (sd > 0.0), (_as_float(ndvi) - mean) / sd, np.nan)
    return z
