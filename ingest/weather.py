"""Weather feeds: daily or monthly station/area series (CSV, JSON) and gridded NetCDF (ERA5-like).

All readers return a :class:`WeatherTable`: a DataFrame indexed by date (naive, UTC calendar days or
month starts) with one float64 column per station or region, in the variable's canonical unit
(precipitation mm accumulated over the step, temperature °C; see ``ingest.units``). Missing values are
NaN. Refusals are ValidationError with reasons:

``bad_format``        wrong columns / JSON shape, or unparseable file
``empty_feed``        no rows
``bad_date``          unparseable date
``future_date``       a date after ``now``
``duplicate_date``    the same (station, date) twice
``bad_value``         a value that is not a number
``bad_frequency``     dates neither daily nor monthly (month starts)
``out_of_range``      more than 5 % of values outside the variable's physical range (fewer are NaN'd;
                      precipitation's range is per day of the step)
plus ``unknown_variable`` / ``unknown_units`` / ``missing_step`` from the unit layer and the raster
reasons for NetCDF.

CSV: long form ``date,station_id,value[,units]`` (``region_id`` may replace ``station_id``), or wide
form ``date,<id>,<id>,...`` (units then come from the ``units=`` argument).
JSON: ``{"units": "mm", "frequency": "daily", "records": [{"date", "station_id", "value"}, ...]}``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from ingest.raster import OUT_OF_RANGE_LIMIT, VariableSpec, read_netcdf_cube, variable_spec
from ingest.regions import Region
from ingest.units import SECONDS_PER_DAY, FloatArray, Quantity, normalise_unit, to_canonical
from ingest.zonal import DEFAULT_CACHE, WeightCache
from oracle.errors import ValidationError

Frequency = Literal["daily", "monthly"]
_ID_COLUMNS = ("station_id", "region_id")


@dataclass(frozen=True, eq=False)
class WeatherTable:
    """Series per station/region: ``data`` (index ``date``, columns ids) in ``units`` per ``frequency`` step.

    ``valid_fraction`` (gridded feeds only): per region and date, the area share with valid cells.
    """

    variable: str
    units: str
    frequency: Frequency
    data: pd.DataFrame
    valid_fraction: pd.DataFrame | None = None
    out_of_range_count: int = 0

    def series(self, column: str) -> pd.Series:
        """One station's or region's series; NotFound-style ValidationError ``unknown_station``."""
        if column not in self.data.columns:
            raise ValidationError(f"weather: no series for {column!r}", reason="unknown_station")
        return self.data[column]


def read_weather_csv(
    data: bytes,
    *,
    variable: str,
    units: str | None = None,
    frequency: Frequency | None = None,
    now: datetime | None = None,
) -> WeatherTable:
    """Parse a CSV feed (long or wide form, see module docstring) into canonical units."""
    spec = variable_spec(variable)
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValidationError(f"weather: unparseable CSV ({exc})", reason="bad_format") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if "date" not in frame.columns:
        raise ValidationError("weather: CSV needs a 'date' column", reason="bad_format")
    id_col = next((c for c in _ID_COLUMNS if c in frame.columns), None)
    if id_col is None or "value" not in frame.columns:
        if "value" in frame.columns or len(frame.columns) < 2:
            raise ValidationError(
                "weather: CSV needs date,station_id,value (long) or date,<id>,... (wide)", reason="bad_format"
            )
        frame = frame.melt(id_vars=["date"], var_name="station_id", value_name="value")
        id_col = "station_id"
    row_units: pd.Series | None = frame["units"] if "units" in frame.columns else None
    if row_units is not None and units is None:
        distinct = {u.strip() for u in row_units}
        if len(distinct) != 1:
            raise ValidationError(
                f"weather: mixed units in one feed {sorted(distinct)}", reason="unknown_units"
            )
        units = distinct.pop()
    return _build(spec, frame["date"], frame[id_col], frame["value"], units, frequency, now)


def read_weather_json(
    data: bytes,
    *,
    variable: str,
    units: str | None = None,
    frequency: Frequency | None = None,
    now: datetime | None = None,
) -> WeatherTable:
    """Parse a JSON feed ``{"units", "frequency"?, "records": [{date, station_id|region_id, value}]}``."""
    spec = variable_spec(variable)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"weather: not JSON ({exc})", reason="bad_format") from exc
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValidationError("weather: JSON needs a 'records' list of objects", reason="bad_format")
    units = units if units is not None else doc.get("units")
    freq = frequency if frequency is not None else doc.get("frequency")
    if freq not in (None, "daily", "monthly"):
        raise ValidationError(f"weather: unknown frequency {freq!r}", reason="bad_frequency")
    try:
        dates = pd.Series([r["date"] for r in records], dtype=object)
        ids = pd.Series([r.get("station_id", r.get("region_id")) for r in records], dtype=object)
        values = pd.Series([r["value"] for r in records], dtype=object)
    except KeyError as exc:
        raise ValidationError(f"weather: a record lacks {exc}", reason="bad_format") from exc
    if ids.isna().any():
        raise ValidationError("weather: a record lacks station_id/region_id", reason="bad_format")
    return _build(spec, dates, ids, values, units, freq, now)


def read_weather_netcdf(
    data: bytes,
    *,
    variable: str,
    regions: Sequence[Region],
    units: str | None = None,
    now: datetime | None = None,
    cache: WeightCache | None = None,
) -> WeatherTable:
    """Gridded feed (ERA5-like NetCDF, daily or monthly steps) → exact area-weighted means per region.

    ERA5 ``tp`` in m and rates in kg m-2 s-1 become mm per step; ``t2m`` in K becomes °C.
    """
    spec = variable_spec(variable)
    cube = read_netcdf_cube(data, names=spec.aliases, label=f"weather {variable}")
    if np.isnat(cube.times).any():
        raise ValidationError("weather: the NetCDF variable has no time axis", reason="bad_date")
    dates = pd.DatetimeIndex(cube.times)
    _check_future(dates, now)
    if dates.has_duplicates:
        raise ValidationError("weather: repeated time steps in the NetCDF", reason="duplicate_date")
    freq = _infer_frequency(dates, None)
    source_units = units if units is not None else cube.source_units
    normalise_unit(spec.quantity, source_units)
    step = _step_seconds(dates, freq)[:, None, None]
    values = to_canonical(spec.quantity, cube.values, source_units, step_seconds=step)
    valid_before = int((~np.isnan(values)).sum())
    out = _mask_range(values, spec, valid_before, step)
    weights = (cache or DEFAULT_CACHE).weights(regions, cube.grid)
    means, fraction = weights.means_stack(values)
    index = pd.DatetimeIndex(dates.normalize(), name="date")
    columns = pd.Index(weights.region_ids, name="region_id")
    return WeatherTable(
        variable=variable,
        units=spec.units,
        frequency=freq,
        data=pd.DataFrame(means.T, index=index, columns=columns),
        valid_fraction=pd.DataFrame(fraction.T, index=index, columns=columns),
        out_of_range_count=out,
    )


def _build(
    spec: VariableSpec,
    dates: pd.Series,
    ids: pd.Series,
    raw_values: pd.Series,
    units: str | None,
    frequency: str | None,
    now: datetime | None,
) -> WeatherTable:
    if len(dates) == 0:
        raise ValidationError("weather: the feed has no rows", reason="empty_feed")
    normalise_unit(spec.quantity, units)
    parsed = pd.to_datetime(dates.astype(str).str.strip(), errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().any():
        bad = dates[parsed.isna()].iloc[0]
        raise ValidationError(f"weather: unparseable date {bad!r}", reason="bad_date")
    index = pd.DatetimeIndex(parsed).tz_convert(None)
    _check_future(index, now)
    numeric = pd.to_numeric(raw_values.replace({"": np.nan, None: np.nan}), errors="coerce")
    bad_mask = numeric.isna() & raw_values.notna() & (raw_values.astype(str).str.strip() != "")
    bad_mask &= ~raw_values.astype(str).str.strip().str.lower().isin(["nan", "na", "null"])
    if bad_mask.any():
        raise ValidationError(
            f"weather: non-numeric value {raw_values[bad_mask].iloc[0]!r}", reason="bad_value"
        )
    long = pd.DataFrame(
        {"date": index.normalize(), "id": ids.astype(str).str.strip().to_numpy(), "value": numeric.to_numpy()}
    )
    if long.duplicated(["date", "id"]).any():
        dup = long[long.duplicated(["date", "id"])].iloc[0]
        raise ValidationError(
            f"weather: {dup['id']} has two values on {dup['date']:%Y-%m-%d}", reason="duplicate_date"
        )
    wide = long.pivot(index="date", columns="id", values="value").sort_index()
    freq = _infer_frequency(pd.DatetimeIndex(wide.index), frequency)
    step = _step_seconds(pd.DatetimeIndex(wide.index), freq)[:, None]
    values = to_canonical(spec.quantity, wide.to_numpy(dtype=np.float64, copy=True), units, step_seconds=step)
    valid_before = int((~np.isnan(values)).sum())
    out = _mask_range(values, spec, valid_before, step)
    frame = pd.DataFrame(values, index=pd.DatetimeIndex(wide.index, name="date"), columns=list(wide.columns))
    frame.columns.name = "id"
    return WeatherTable(spec.name, spec.units, freq, frame, None, out)


def _check_future(dates: pd.DatetimeIndex, now: datetime | None) -> None:
    limit = now if now is not None else datetime.now(UTC)
    limit_naive = (limit if limit.tzinfo is None else limit.astimezone(UTC)).replace(tzinfo=None)
    late = dates[dates > pd.Timestamp(limit_naive)]
    if len(late):
        raise ValidationError(f"weather: date {late[0]:%Y-%m-%d} is in the future", reason="future_date")


def _infer_frequency(dates: pd.DatetimeIndex, given: Any) -> Frequency:
    """Daily when consecutive dates are whole days apart; monthly when they are month starts."""
    unique = dates.unique().sort_values()
    month_starts = bool((unique.day == 1).all() and (unique == unique.normalize()).all())
    if len(unique) < 2:
        if given in ("daily", "monthly"):
            return given  # type: ignore[no-any-return]
        raise ValidationError(
            "weather: one date; pass frequency= to say daily or monthly", reason="bad_frequency"
        )
    gaps = np.diff(unique.to_numpy()).astype("timedelta64[s]").astype(np.int64)
    whole_days = bool((gaps % SECONDS_PER_DAY == 0).all())
    inferred: Frequency | None = None
    if whole_days and gaps.min() == SECONDS_PER_DAY:
        inferred = "daily"
    elif month_starts and gaps.min() >= 28 * SECONDS_PER_DAY:
        inferred = "monthly"
    if inferred is None or (given is not None and given != inferred):
        raise ValidationError(
            f"weather: dates are not {given or 'daily or monthly'} steps", reason="bad_frequency"
        )
    return inferred


def _step_seconds(dates: pd.DatetimeIndex, frequency: Frequency) -> FloatArray:
    if frequency == "daily":
        return np.full(len(dates), float(SECONDS_PER_DAY))
    return np.asarray(dates.days_in_month, dtype=np.float64) * SECONDS_PER_DAY


def _mask_range(values: FloatArray, spec: VariableSpec, valid_count: int, step: FloatArray) -> int:
    """NaN values outside the physical range in place; precipitation's range is per day of the step."""
    scaled = values / (step / SECONDS_PER_DAY) if spec.quantity is Quantity.PRECIPITATION else values
    with np.errstate(invalid="ignore"):
        out = (scaled < spec.valid_min) | (scaled > spec.valid_max)
    count = int(out.sum())
    if count and valid_count and count / valid_count > OUT_OF_RANGE_LIMIT:
        raise ValidationError(
            f"weather: {count} of {valid_count} values outside {spec.name}'s range "
            f"{spec.valid_min}…{spec.valid_max} {spec.units}",
            reason="out_of_range",
        )
    values[out] = np.nan
    return count
