"""Plausibility checks for raster and weather inputs: climatology outliers and duplicates posing as new.

Input: the region-mean dicts of ``oracle.decisions.drought.zonal_mean_step`` — ``region_id``, ``variable``,
``date`` (``YYYY-MM`` or ``YYYY-MM-DD``), ``mean`` (float or None) and ``valid_fraction`` (0…1).

- **climatology** (:func:`flag_region_means`): the current mean against the same region, variable and
  calendar month in earlier years. Robust z-score ``(x - median) / scale`` with
  ``scale = max(1.4826 * MAD, min_scale[variable])``; flagged beyond ``max_abs_z``. The default limit is
  deliberately wide (8): a drought IS an extreme of its climatology and must still pay, so this check is
  for the physically implausible (an NDVI of a rain forest in a desert, a unit mix-up, a sign flip), not for
  anomalies; send its flags to ``hold`` so a person decides. Fewer than ``min_history`` past values → no
  z-score (a note flag ``short_history`` says it was not checked).
- **coverage**: ``valid_fraction < min_valid_fraction`` → ``low_coverage``; ``mean`` None → ``missing``.
- **duplicates** (:func:`find_duplicates`): a later date whose values equal an earlier date's values,
  exactly or within ``atol + rtol * |earlier|`` everywhere (NaN matching NaN), e.g. an old raster re-sent
  with a new date tag. Pass arrays (a raster, or the vector of one date's means over a fixed ordered list of
  regions) rather than lone floats where possible: a whole field cannot match by chance, a single mean can.
  A field without a fingerprint (every finite value equal, or no finite value at all — e.g. no rain
  anywhere) is never called a duplicate.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import ValidationError

_MAD_TO_SIGMA = 1.4826

# Smallest plausible spread of a region-month mean across years, in the variable's own units: NDVI
# (unitless), land-surface temperature (°C), volumetric soil moisture (m³/m³), precipitation (mm).
DEFAULT_MIN_SCALE: Mapping[str, float] = {
    "ndvi": 0.02,
    "lst": 0.5,
    "soil_moisture": 0.01,
    "precip_monthly": 5.0,
    "precip_daily": 0.5,
}


class InputReason(enum.StrEnum):
    CLIMATOLOGY = "climatology"
    LOW_COVERAGE = "low_coverage"
    MISSING = "missing"
    SHORT_HISTORY = "short_history"
    DUPLICATE = "duplicate"


# Flags that only say what was not checked; policies never drop or hold on them.
NOTE_REASONS = frozenset({InputReason.SHORT_HISTORY})


@dataclass(frozen=True)
class InputParams:
    """Thresholds of :func:`flag_region_means`. ``min_scale`` maps a variable to its scale floor (units of
    the variable); variables absent from it use ``default_min_scale``."""

    max_abs_z: float = 8.0
    min_history: int = 5
    min_valid_fraction: float = 0.2
    min_scale: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_SCALE))
    default_min_scale: float = 1e-6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_abs_z) and self.max_abs_z > 0) or self.min_history < 3:
            raise ValidationError("need max_abs_z > 0 and min_history >= 3", reason="params")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValidationError("min_valid_fraction must lie in [0, 1]", reason="params")
        if not all(math.isfinite(v) and v > 0 for v in (*self.min_scale.values(), self.default_min_scale)):
            raise ValidationError("scale floors must be positive and finite", reason="params")


@dataclass(frozen=True)
class InputFlag:
    """One input judged suspect (or, for ``short_history``, not checkable).

    ``measured``/``threshold``: robust |z| vs ``max_abs_z`` (climatology), valid fraction vs minimum
    (low_coverage), largest absolute difference vs tolerance (duplicate), history length vs minimum
    (short_history), NaN for ``missing``. ``same_as`` names the earlier date a duplicate repeats.
    """

    region_id: str
    variable: str
    date: str
    reason: InputReason
    measured: float
    threshold: float
    detail: str
    same_as: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.region_id, self.variable, self.date)


def _field(row: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in row:
        raise ValidationError(f"{where} has no {name!r}", reason="bad_input")
    return row[name]


def _month(date: Any, where: str) -> tuple[int, int]:
    text = str(date)
    try:
        year, month = int(text[0:4]), int(text[5:7])
    except ValueError:
        raise ValidationError(f"{where}: date {text!r} is not YYYY-MM[-DD]", reason="bad_input") from None
    if len(text) < 7 or text[4] != "-" or not 1 <= month <= 12:
        raise ValidationError(f"{where}: date {text!r} is not YYYY-MM[-DD]", reason="bad_input")
    return year, month


def _mean(row: Mapping[str, Any], where: str) -> float | None:
    value = _field(row, "mean", where)
    if value is None:
        return None
    try:
        mean = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: mean {value!r} is not a number", reason="bad_input") from None
    return None if math.isnan(mean) else mean


def climatology(current: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> list[float]:
    """Past means of the same region, variable and calendar month from earlier years, sorted by date.

    Rows of other regions/variables/months, later or equal years, and rows without a mean are ignored;
    of several rows for one earlier date the first is kept (the caller's order decides: latest first).
    """
    region, variable = _field(current, "region_id", "current"), _field(current, "variable", "current")
    year, month = _month(_field(current, "date", "current"), "current")
    by_date: dict[str, float] = {}
    for i, row in enumerate(history):
        where = f"history[{i}]"
        if row.get("region_id") != region or row.get("variable") != variable:
            continue
        date = str(_field(row, "date", where))
        y, m = _month(date, where)
        mean = _mean(row, where)
        if m == month and y < year and mean is not None:
            by_date.setdefault(date, mean)
    return [by_date[d] for d in sorted(by_date)]


def flag_region_means(
    current: Mapping[str, Any], history: Sequence[Mapping[str, Any]], *, params: InputParams | None = None
) -> list[InputFlag]:
    """Flags for one new region mean against its own climatology (see the module docstring).

    Raises ValidationError ``bad_input`` when ``current`` or a history row of the same region and variable
    lacks a field or has an unreadable date or mean.
    """
    p = params or InputParams()
    region, variable = (
        str(_field(current, "region_id", "current")),
        str(_field(current, "variable", "current")),
    )
    date = str(_field(current, "date", "current"))
    mean = _mean(current, "current")
    flags: list[InputFlag] = []
    fraction = float(current.get("valid_fraction", 1.0) or 0.0)
    if fraction < p.min_valid_fraction:
        flags.append(
            InputFlag(
                region,
                variable,
                date,
                InputReason.LOW_COVERAGE,
                fraction,
                p.min_valid_fraction,
                f"only {fraction:.0%} of the region had valid pixels (minimum {p.min_valid_fraction:.0%})",
            )
        )
    if mean is None:
        flags.append(
            InputFlag(region, variable, date, InputReason.MISSING, math.nan, math.nan, "no mean value")
        )
        return flags
    past = climatology(current, history)
    if len(past) < p.min_history:
        flags.append(
            InputFlag(
                region,
                variable,
                date,
                InputReason.SHORT_HISTORY,
                float(len(past)),
                float(p.min_history),
                f"{len(past)} earlier years of this month, {p.min_history} needed for a climatology check",
            )
        )
        return flags
    values = np.asarray(past, dtype=np.float64)
    centre = float(np.median(values))
    mad = float(np.median(np.abs(values - centre)))
    scale = max(_MAD_TO_SIGMA * mad, p.min_scale.get(variable, p.default_min_scale))
    z = (mean - centre) / scale
    if abs(z) > p.max_abs_z:
        flags.append(
            InputFlag(
                region,
                variable,
                date,
                InputReason.CLIMATOLOGY,
                abs(z),
                p.max_abs_z,
                f"mean {mean:.4g} vs median {centre:.4g} of {len(past)} earlier years "
                f"(robust scale {scale:.3g}): z = {z:+.1f}",
            )
        )
    return flags


@dataclass(frozen=True)
class Duplicate:
    """``date`` carries the same values as the earlier ``same_as`` (largest difference ``max_abs_diff``)."""

    date: str
    same_as: str
    max_abs_diff: float


def _fingerprinted(values: npt.NDArray[np.float64]) -> bool:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return False
    return values.size == 1 or bool(finite.min() != finite.max())


def find_duplicates(
    values_by_date: Mapping[str, npt.ArrayLike | float], *, atol: float = 0.0, rtol: float = 0.0
) -> list[Duplicate]:
    """Dates whose values repeat an earlier date's, each paired with the earliest date it repeats.

    Dates compare as strings (ISO dates sort correctly). Values must have equal shapes to match. Raises
    ValidationError ``bad_input`` for negative tolerances or values that are not numeric.
    """
    if not (atol >= 0 and rtol >= 0):
        raise ValidationError("tolerances must be >= 0", reason="bad_input")
    arrays: list[tuple[str, npt.NDArray[np.float64]]] = []
    for date in sorted(values_by_date):
        try:
            arr = np.asarray(values_by_date[date], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValidationError(f"values for {date!r} are not numeric", reason="bad_input") from None
        arrays.append((date, arr))
    found: list[Duplicate] = []
    for j, (date, arr) in enumerate(arrays):
        if not _fingerprinted(arr):
            continue
        for earlier, prev in arrays[:j]:
            if prev.shape != arr.shape or not _fingerprinted(prev):
                continue
            if np.array_equal(np.isnan(prev), np.isnan(arr)) and np.allclose(
                arr, prev, rtol=rtol, atol=atol, equal_nan=True
            ):
                both = np.isfinite(arr) & np.isfinite(prev)
                diff = float(np.max(np.abs(arr[both] - prev[both]))) if both.any() else 0.0
                found.append(Duplicate(date, earlier, diff))
                break
    return found


def duplicate_flags(
    rows: Sequence[Mapping[str, Any]], *, atol: float = 0.0, rtol: float = 0.0
) -> list[InputFlag]:
    """:func:`find_duplicates` over region-mean rows: per variable, each date's vector of means over the
    regions present on every date (sorted by region id), flagged as :class:`InputFlag` for every region of
    the repeating date. Rows with a None mean count as NaN."""
    by_variable: dict[str, dict[str, dict[str, float]]] = {}
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        variable, date = str(_field(row, "variable", where)), str(_field(row, "date", where))
        mean = _mean(row, where)
        cell = by_variable.setdefault(variable, {}).setdefault(date, {})
        cell.setdefault(str(_field(row, "region_id", where)), math.nan if mean is None else mean)
    flags: list[InputFlag] = []
    for variable in sorted(by_variable):
        dates = by_variable[variable]
        regions = sorted(set.intersection(*(set(v) for v in dates.values())))
        if not regions:
            continue
        vectors = {d: np.array([dates[d][r] for r in regions]) for d in dates}
        for dup in find_duplicates(vectors, atol=atol, rtol=rtol):
            for region in regions:
                flags.append(
                    InputFlag(
                        region,
                        variable,
                        dup.date,
                        InputReason.DUPLICATE,
                        dup.max_abs_diff,
                        atol,
                        f"{len(regions)} region means equal those of {dup.same_as}",
                        same_as=dup.same_as,
                    )
                )
    return flags
