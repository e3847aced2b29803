"""Unit normalisation for drought inputs: precipitation, temperature, soil moisture, NDVI.

Every reader converts to one canonical unit per quantity before anything is stored or computed:

=============  ==========  ==========================================================
quantity       canonical   accepted spellings (case-insensitive)
=============  ==========  ==========================================================
precipitation  ``mm``      mm, m (depth over the step), kg m-2 s-1 (a rate: × seconds in step)
temperature    ``degC``    degC, °C, C, celsius, K, kelvin
soil moisture  ``m3/m3``   m3/m3, m3 m-3, 1, fraction, %, percent
ndvi           ``1``       1, unitless, dimensionless, "" (empty)
=============  ==========  ==========================================================

An unknown spelling raises :class:`oracle.errors.ValidationError` with ``reason="unknown_units"``:
guessing a unit silently is how a metre of rain becomes a millimetre.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

from oracle.errors import ValidationError

FloatArray = npt.NDArray[np.float64]

SECONDS_PER_DAY = 86_400
KELVIN_OFFSET = 273.15


class Quantity(StrEnum):
    """Physical quantities the drought pipeline reads."""

    PRECIPITATION = "precipitation"
    TEMPERATURE = "temperature"
    SOIL_MOISTURE = "soil_moisture"
    NDVI = "ndvi"


CANONICAL: dict[Quantity, str] = {
    Quantity.PRECIPITATION: "mm",
    Quantity.TEMPERATURE: "degC",
    Quantity.SOIL_MOISTURE: "m3/m3",
    Quantity.NDVI: "1",
}

# Spelling → (canonical spelling of that unit). Only spellings seen in real products are listed; the
# point is to refuse anything else.
_SPELLINGS: dict[Quantity, dict[str, str]] = {
    Quantity.PRECIPITATION: {
        "mm": "mm",
        "millimeter": "mm",
        "millimeters": "mm",
        "millimetre": "mm",
        "millimetres": "mm",
        "mm/day": "mm",
        "mm day-1": "mm",
        "mm/d": "mm",
        "mm/month": "mm",
        "m": "m",
        "meter": "m",
        "meters": "m",
        "metre": "m",
        "metres": "m",
        "kg m-2 s-1": "kg m-2 s-1",
        "kg m**-2 s**-1": "kg m-2 s-1",
        "kg/m2/s": "kg m-2 s-1",
        "kg m^-2 s^-1": "kg m-2 s-1",
        "mm/s": "kg m-2 s-1",
        "mm s-1": "kg m-2 s-1",
    },
    Quantity.TEMPERATURE: {
        "degc": "degC",
        "deg_c": "degC",
        "°c": "degC",
        "c": "degC",
        "celsius": "degC",
        "degrees_celsius": "degC",
        "degree_celsius": "degC",
        "k": "K",
        "kelvin": "K",
        "degk": "K",
    },
    Quantity.SOIL_MOISTURE: {
        "m3/m3": "m3/m3",
        "m3 m-3": "m3/m3",
        "m**3 m**-3": "m3/m3",
        "m^3/m^3": "m3/m3",
        "1": "m3/m3",
        "fraction": "m3/m3",
        "%": "%",
        "percent": "%",
        "vol%": "%",
    },
    Quantity.NDVI: {"1": "1", "": "1", "unitless": "1", "dimensionless": "1", "ndvi": "1", "-": "1"},
}


def normalise_unit(quantity: Quantity, units: str | None) -> str:
    """Map a unit spelling to the one this module knows for ``quantity``.

    Raises ValidationError(reason="unknown_units") for ``None`` (except NDVI, which has no unit) or an
    unknown spelling.
    """
    if units is None:
        if quantity is Quantity.NDVI:
            return "1"
        raise ValidationError(f"{quantity.value}: units are missing", reason="unknown_units")
    key = " ".join(units.strip().lower().split())
    known = _SPELLINGS[quantity]
    if key not in known:
        accepted = ", ".join(sorted(set(known.values())))
        raise ValidationError(
            f"{quantity.value}: unknown units {units!r} (accepted: {accepted})", reason="unknown_units"
        )
    return known[key]


def precipitation_to_mm(
    values: FloatArray, units: str | None, *, step_seconds: float | FloatArray | None = None
) -> FloatArray:
    """Precipitation in ``units`` → millimetres accumulated over the step.

    ``m`` is a depth (ERA5 ``tp``): × 1000. ``kg m-2 s-1`` is a mean rate (1 kg m⁻² = 1 mm of water):
    × ``step_seconds`` (86,400 for a daily step; days-in-month × 86,400 for monthly, one per value).
    Raises ValidationError ``unknown_units``, or ``missing_step`` when a rate comes without a step.
    """
    unit = normalise_unit(Quantity.PRECIPITATION, units)
    arr = np.asarray(values, dtype=np.float64)
    if unit == "mm":
        return arr
    if unit == "m":
        return arr * 1000.0
    if step_seconds is None:
        raise ValidationError(
            "precipitation given as a rate (kg m-2 s-1) needs the step length to become mm",
            reason="missing_step",
        )
    return arr * np.asarray(step_seconds, dtype=np.float64)


def temperature_to_celsius(values: FloatArray, units: str | None) -> FloatArray:
    """Temperature in K or °C → °C. Raises ValidationError ``unknown_units``."""
    unit = normalise_unit(Quantity.TEMPERATURE, units)
    arr = np.asarray(values, dtype=np.float64)
    return arr - KELVIN_OFFSET if unit == "K" else arr


def soil_moisture_to_fraction(values: FloatArray, units: str | None) -> FloatArray:
    """Volumetric soil moisture in m³/m³ or % → m³/m³ (0…1). Raises ValidationError ``unknown_units``."""
    unit = normalise_unit(Quantity.SOIL_MOISTURE, units)
    arr = np.asarray(values, dtype=np.float64)
    return arr / 100.0 if unit == "%" else arr


def to_canonical(
    quantity: Quantity,
    values: FloatArray,
    units: str | None,
    *,
    step_seconds: float | FloatArray | None = None,
) -> FloatArray:
    """Convert ``values`` of ``quantity`` from ``units`` to :data:`CANONICAL` units."""
    if quantity is Quantity.PRECIPITATION:
        return precipitation_to_mm(values, units, step_seconds=step_seconds)
    if quantity is Quantity.TEMPERATURE:
        return temperature_to_celsius(values, units)
    if quantity is Quantity.SOIL_MOISTURE:
        return soil_moisture_to_fraction(values, units)
    normalise_unit(Quantity.NDVI, units)
    return np.asarray(values, dtype=np.float64)
