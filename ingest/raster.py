"""Validated raster readers: GeoTIFF / Cloud-Optimized GeoTIFF (rasterio) and NetCDF (xarray).

``read_raster(data, variable=...)`` turns a file's bytes into a :class:`RasterGrid`: float64 values in
the variable's canonical unit with NaN wherever there is no valid measurement, plus the grid (CRS,
affine transform, shape) and the time stamp from the file's metadata.

Every refusal is an :class:`oracle.errors.ValidationError` whose ``reason`` is one of:

``corrupt_file``      not a GeoTIFF/NetCDF, truncated, or unreadable by GDAL/HDF5
``missing_crs``       no coordinate reference system (we never guess one for a GeoTIFF)
``all_nodata``        not a single valid pixel
``out_of_range``      more than :data:`OUT_OF_RANGE_LIMIT` of the non-nodata pixels fall outside the
                      variable's physical range (fewer are masked and counted in ``out_of_range_count``)
``future_date``       the time stamp lies after ``now``
``bad_date``          the time stamp cannot be parsed
``unknown_variable``  the variable is not in :data:`VARIABLES`
``unknown_units``     the file's (or caller's) unit is unknown or missing
``missing_variable``  a NetCDF file without the requested variable
``bad_shape``         a NetCDF variable that is not a (time,) y, x grid, or an irregular grid
``multiple_times``    ``read_raster`` got a NetCDF with several time steps (use ``read_netcdf_cube``)

rasterio, GDAL, HDF5 and xarray exceptions never escape: they are translated here, once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from affine import Affine

from ingest._kernels import (
    TABLE_DTYPES,
    canonical_counts,
    canonical_nodata,
    count_codes,
    count_nodata,
    count_table,
)
from ingest.units import CANONICAL, SECONDS_PER_DAY, FloatArray, Quantity, normalise_unit, to_canonical
from oracle.errors import ValidationError

OUT_OF_RANGE_LIMIT = 0.05
"""Share of non-nodata pixels allowed outside the physical range before the whole raster is refused."""

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TIME_TAGS = ("time", "datetime", "date", "start_datetime", "TIFFTAG_DATETIME", "ACQUISITION_DATE")


@dataclass(frozen=True)
class VariableSpec:
    """A variable the drought pipeline reads: its quantity, physical range (canonical units), names."""

    name: str
    quantity: Quantity
    valid_min: float
    valid_max: float
    aliases: tuple[str, ...]

    @property
    def units(self) -> str:
        return CANONICAL[self.quantity]


VARIABLES: dict[str, VariableSpec] = {
    spec.name: spec
    for spec in (
        # MODIS MOD13 NDVI: int16 × 0.0001, valid −2000…10000 → −0.2…1.0.
        VariableSpec(
            "ndvi", Quantity.NDVI, -0.2, 1.0, ("ndvi", "NDVI", "250m_16_days_NDVI", "1_km_16_days_NDVI")
        ),
        # Land-surface temperature: MODIS LST is K × 0.02; hottest recorded skin temperatures stay < 95 °C.
        VariableSpec("lst", Quantity.TEMPERATURE, -90.0, 95.0, ("lst", "LST", "LST_Day_1km", "skt")),
        VariableSpec(
            "soil_moisture", Quantity.SOIL_MOISTURE, 0.0, 1.0, ("soil_moisture", "sm", "swvl1", "SM")
        ),
        # CHIRPS-like daily totals: mm over the step; the world record day is ~1,825 mm.
        VariableSpec(
            "precip", Quantity.PRECIPITATION, 0.0, 2000.0, ("precip", "precipitation", "tp", "pr", "prcp")
        ),
        VariableSpec(
            "air_temperature", Quantity.TEMPERATURE, -90.0, 60.0, ("t2m", "tas", "air_temperature", "tmean")
        ),
    )
}


def variable_spec(variable: str) -> VariableSpec:
    """The registry entry for ``variable``; ValidationError ``unknown_variable`` otherwise."""
    try:
        return VARIABLES[variable]
    except KeyError:
        known = ", ".join(sorted(VARIABLES))
        raise ValidationError(
            f"unknown variable {variable!r} (known: {known})", reason="unknown_variable"
        ) from None


WGS84_NAMES = frozenset({"EPSG:4326", "OGC:CRS84"})
"""CRS strings of WGS 84 longitude/latitude as GDAL writes them: known geographic without asking PROJ."""


@dataclass(frozen=True)
class GridSpec:
    """A raster grid: CRS (``EPSG:xxxx`` or WKT), affine transform of the top-left corner, (rows, cols).

    Hashable: it is half of the zonal-weights cache key.
    """

    crs: str
    transform: Affine
    shape: tuple[int, int]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid in its CRS."""
        rows, cols = self.shape
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (cols, rows)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @property
    def is_geographic(self) -> bool:
        if self.crs.upper() in WGS84_NAMES:
            return True  # the usual grid: no need to load pyproj (a fifth of a second) to say so
        from pyproj import CRS

        return bool(CRS.from_user_input(self.crs).is_geographic)


@dataclass(frozen=True, eq=False)
class PackedCounts:
    """A packed 8- or 16-bit raster's stored counts and their map to canonical values: count ``c`` is
    ``float(c)·mult (+ add)``, NaN when it is ``nodata`` or outside ``lo…hi``, exactly as
    :func:`ingest._kernels.canonical_nodata` converts it (which is what :meth:`values` calls)."""

    counts: npt.NDArray[np.integer[Any]]
    nodata: int
    lo: int
    hi: int
    mult: float
    add: float

    @property
    def codes(self) -> npt.NDArray[np.unsignedinteger[Any]]:
        """The counts flat, as the unsigned integers of the same bits: each cell's row of :attr:`table`."""
        return count_codes(self.counts)

    @property
    def table(self) -> FloatArray:
        """Every count's canonical value (256 or 65,536 of them), at the row of its code (read-only,
        shared by every raster of the same kind: :func:`ingest._kernels.count_table`)."""
        return count_table(self.counts.dtype, self.nodata, self.lo, self.hi, self.mult, self.add)

    def values(self) -> FloatArray:
        values, _, _ = canonical_nodata(self.counts, self.nodata, self.lo, self.hi, self.mult, self.add)
        return values


@dataclass(frozen=True, eq=False)
class RasterGrid:
    """One validated 2-D raster.

    ``values``: float64 (rows, cols) in ``units`` (the variable's canonical unit), NaN where the file had
    nodata, failed its own valid range, or fell outside the variable's physical range.
    ``time``: timezone-aware UTC, or None when the file carries no time stamp.

    A packed 8- or 16-bit raster whose one mask is its nodata value (CHIRPS, MODIS) keeps its counts
    (``packed``) and makes ``values`` on first use: every check of the read ran on the counts already,
    and the zonal means read the counts themselves (:meth:`ingest.zonal.ZonalWeights.raster_means`), so
    a raster read only for its zonal means is never copied to float64. Either way ``values`` holds the
    same bits.
    """

    variable: str
    units: str
    source_units: str
    grid: GridSpec
    time: datetime | None
    nodata_count: int
    out_of_range_count: int
    name: str = ""
    units_assumed: bool = False
    """True when the file carried no unit metadata and ``assume_canonical_units`` took the canonical one."""
    packed: PackedCounts | None = None
    """The stored counts, when ``values`` is made from them on first use (see above)."""
    converted: FloatArray | None = field(default=None, repr=False)
    """``values`` as converted during the read, when they were (every raster that is not ``packed``)."""

    def __post_init__(self) -> None:
        if (self.packed is None) == (self.converted is None):
            raise ValueError("a RasterGrid holds either its converted values or its packed counts")

    @property
    def values(self) -> FloatArray:
        """The canonical float64 values (made from ``packed`` on first use, then kept). The zonal means
        of a packed raster read its counts, not these: an edit to them is not seen there."""
        if self.converted is not None:
            return self.converted
        made: FloatArray | None = self.__dict__.get("_made_values")
        if made is None:
            # No lock (functools.cached_property on 3.11 takes one shared by every raster): two threads
            # that meet here both make the same bits, and either result is kept.
            assert self.packed is not None  # __post_init__
            made = self.packed.values()
            self.__dict__["_made_values"] = made
        return made

    @property
    def values_made(self) -> bool:
        """Whether float64 values exist yet (a packed raster makes them on first use of ``values``)."""
        return self.converted is not None or "_made_values" in self.__dict__

    @property
    def transform(self) -> Affine:
        return self.grid.transform

    @property
    def crs(self) -> str:
        return self.grid.crs

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    @property
    def valid_count(self) -> int:
        rows, cols = self.grid.shape
        return int(rows * cols - self.nodata_count - self.out_of_range_count)


@dataclass(frozen=True, eq=False)
class NetCDFCube:
    """A (time, rows, cols) NetCDF variable after CF decoding (fill → NaN, scale/offset applied).

    Values are in ``source_units`` (not converted: a rate needs each step's length, which the caller
    knows). ``times`` are naive UTC ``datetime64[ns]``; an untimed variable has one NaT step.
    """

    variable_name: str
    source_units: str | None
    values: FloatArray
    times: npt.NDArray[np.datetime64]
    grid: GridSpec


def read_raster(
    data: bytes,
    *,
    variable: str,
    name: str = "",
    units: str | None = None,
    now: datetime | None = None,
    step_seconds: float = SECONDS_PER_DAY,
    assume_canonical_units: bool = False,
) -> RasterGrid:
    """Read one raster (GeoTIFF, COG or NetCDF bytes) of a registered ``variable``.

    ``units`` overrides the file's unit metadata (CHIRPS GeoTIFFs carry none); with
    ``assume_canonical_units`` a file without unit metadata is taken to be in the variable's canonical
    unit (values used as stored: fine for a zonal mean, never for ingest); ``step_seconds`` is the
    accumulation step for precipitation rates (kg m-2 s-1). ``now`` (UTC, default: the clock) bounds
    the time stamp. Raises ValidationError with the reasons listed in the module docstring.
    """
    spec = variable_spec(variable)
    label = name or variable
    if data[:4] in _TIFF_MAGIC:
        raw = _read_geotiff(data, label)
    elif data[:4] in _NETCDF3_MAGIC or data[:8] == _HDF5_MAGIC:
        raw = _read_netcdf_single(data, spec, label)
    else:
        raise ValidationError(f"{label}: neither a GeoTIFF nor a NetCDF file", reason="corrupt_file")
    source_units = units if units is not None else raw.units
    assumed = source_units is None and assume_canonical_units and spec.quantity is not Quantity.NDVI
    if assumed:
        source_units = spec.units
    if source_units is None and spec.quantity is not Quantity.NDVI:
        raise ValidationError(
            f"{label}: the file has no unit metadata; pass units= for {variable}", reason="unknown_units"
        )
    normalise_unit(spec.quantity, source_units)  # refuse unknown units before touching the values
    when = _check_time(raw.time, now, label)
    values, packed, nodata_count, out = _to_canonical_values(raw, spec, source_units, step_seconds, label)
    return RasterGrid(
        variable=variable,
        units=spec.units,
        source_units=source_units or "1",
        packed=packed,
        converted=values,
        grid=raw.grid,
        time=when,
        nodata_count=nodata_count,
        out_of_range_count=out,
        name=name,
        units_assumed=assumed,
    )


@dataclass(frozen=True, eq=False)
class _RawRaster:
    data: npt.NDArray[Any]  # stored values (counts for packed integers); physical = data·scale + offset
    scale: float
    offset: float
    invalid: npt.NDArray[np.bool_] | None  # nodata pixels; None: exactly those equal to ``nodata``
    file_range_violations: npt.NDArray[np.bool_] | None  # outside the file's own valid_range
    grid: GridSpec
    units: str | None
    time: str | datetime | None
    nodata: int | None = None  # the integer nodata value when ``invalid`` is left to the compiled pass

    @property
    def invalid_mask(self) -> npt.NDArray[np.bool_]:
        """The nodata pixels as a boolean array (made here when ``invalid`` was left to the counts)."""
        if self.invalid is not None:
            return self.invalid
        return np.asarray(self.data == self.nodata)


def _to_canonical_values(
    raw: _RawRaster, spec: VariableSpec, source_units: str | None, step_seconds: float, label: str
) -> tuple[FloatArray | None, PackedCounts | None, int, int]:
    """Stored values → canonical float64 with NaN for nodata and out-of-range:
    ``(values, packed, nodata, out)``, with exactly one of ``values`` and ``packed`` set.

    Every supported unit conversion is affine, so scale/offset and the unit change fuse into one
    multiply-add, and for packed integers the range test runs on the counts (cheaper than on floats):
    one compiled pass (:func:`ingest._kernels.canonical_counts`) converts, range-checks, fills NaN and
    counts. An 8- or 16-bit raster masked by its nodata value alone is only counted
    (:func:`ingest._kernels.count_nodata`) and kept as :class:`PackedCounts`: its values are made on
    first use, with :func:`ingest._kernels.canonical_nodata`. Float data (and a file with its own valid
    range) take numpy passes with the same results.
    """
    probe = to_canonical(spec.quantity, np.array([0.0, 1.0]), source_units, step_seconds=step_seconds)
    gain, bias = float(probe[1] - probe[0]), float(probe[0])
    mult, add = gain * raw.scale, gain * raw.offset + bias
    data = raw.data
    values: FloatArray | None = None
    packed: PackedCounts | None = None
    if data.dtype.kind in "iu" and mult > 0 and raw.file_range_violations is None:
        info = np.iinfo(data.dtype)
        lo = max(math.ceil((spec.valid_min - add) / mult - 1e-9), int(info.min))
        hi = min(math.floor((spec.valid_max - add) / mult + 1e-9), int(info.max))
        if raw.invalid is None and raw.nodata is not None and data.dtype in TABLE_DTYPES:
            nodata_count, out_count = count_nodata(data, raw.nodata, lo, hi)
            packed = PackedCounts(np.ascontiguousarray(data), raw.nodata, lo, hi, mult, add)
        elif raw.invalid is None and raw.nodata is not None:
            values, nodata_count, out_count = canonical_nodata(data, raw.nodata, lo, hi, mult, add)
        else:
            values, nodata_count, out_count = canonical_counts(data, raw.invalid_mask, lo, hi, mult, add)
        if nodata_count == data.size:
            raise ValidationError(f"{label}: every pixel is nodata", reason="all_nodata")
    else:
        nodata_count = int(np.count_nonzero(raw.invalid_mask))
        if nodata_count == data.size:
            raise ValidationError(f"{label}: every pixel is nodata", reason="all_nodata")
        values, out_count = _canonical_numpy(raw, spec, mult, add, nodata_count)
    if out_count:
        share = out_count / (data.size - nodata_count)
        if share > OUT_OF_RANGE_LIMIT:
            raise ValidationError(
                f"{label}: {share:.1%} of pixels lie outside {spec.name}'s range "
                f"{spec.valid_min}…{spec.valid_max} {spec.units} (limit {OUT_OF_RANGE_LIMIT:.0%})",
                reason="out_of_range",
            )
    return values, packed, nodata_count, out_count


def _canonical_numpy(
    raw: _RawRaster, spec: VariableSpec, mult: float, add: float, nodata_count: int
) -> tuple[FloatArray, int]:
    """The numpy passes: ``(values, out_of_range_count)``, NaN for nodata and out-of-range pixels.

    ``masked`` gathers every pixel that ends up NaN (nodata, outside the file's own range, outside the
    physical range); nodata pixels are in it, so the out-of-range count is its count minus theirs.
    """
    data = raw.data
    if data.dtype.kind in "iu" and mult > 0:
        info = np.iinfo(data.dtype)
        lo = max(math.ceil((spec.valid_min - add) / mult - 1e-9), int(info.min))
        hi = min(math.floor((spec.valid_max - add) / mult + 1e-9), int(info.max))
        masked = (data < lo) | (data > hi)
        values = np.multiply(data, mult, dtype=np.float64)
        if add != 0.0:
            values += add
    else:
        values = np.multiply(data, mult, dtype=np.float64)
        if add != 0.0:
            values += add
        with np.errstate(invalid="ignore"):
            masked = (values < spec.valid_min) | (values > spec.valid_max)
    masked |= raw.invalid_mask
    if raw.file_range_violations is not None:
        masked |= raw.file_range_violations
    out_count = int(np.count_nonzero(masked)) - nodata_count
    if out_count or nodata_count:
        np.copyto(values, np.nan, where=masked)
    return values, out_count


def _read_geotiff(data: bytes, label: str) -> _RawRaster:
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.io import MemoryFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as ds:
                if ds.crs is None:
                    raise ValidationError(f"{label}: the GeoTIFF has no CRS", reason="missing_crs")
                raw = ds.read(1)
                nodata = ds.nodata
                mask_flags = ds.mask_flag_enums[0]
                per_dataset_mask = any(flag.name in ("per_dataset", "alpha") for flag in mask_flags)
                gdal_mask = ds.read_masks(1) if per_dataset_mask else None
                scale = float(ds.scales[0]) if ds.scales else 1.0
                offset = float(ds.offsets[0]) if ds.offsets else 0.0
                tags = {**ds.tags(), **ds.tags(1)}
                band_units = ds.units[0] if ds.units else None
                grid = GridSpec(crs=ds.crs.to_string(), transform=ds.transform, shape=(ds.height, ds.width))
    except ValidationError:
        raise
    except (RasterioError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise ValidationError(f"{label}: unreadable GeoTIFF ({exc})", reason="corrupt_file") from exc
    except Exception as exc:  # GDAL's CPLE_* errors do not share a public base class with RasterioError
        raise ValidationError(f"{label}: unreadable GeoTIFF ({exc})", reason="corrupt_file") from exc

    units = band_units or tags.get("units") or tags.get("UNITS") or None
    time = next((tags[k] for k in _TIME_TAGS if tags.get(k)), None)
    int_nodata = _integer_nodata(raw, nodata)
    if int_nodata is not None and gdal_mask is None and not _has_range_tags(tags):
        # The common packed raster (CHIRPS, MODIS): its one mask is the nodata value, which the compiled
        # conversion tests on the counts as it goes; no boolean array is made.
        return _RawRaster(raw, scale, offset, None, None, grid, units, time, int_nodata)
    if nodata is None:
        invalid = np.zeros(raw.shape, dtype=bool)
    else:
        invalid = np.isnan(raw) if math.isnan(nodata) else raw == nodata
    if gdal_mask is not None:
        invalid |= gdal_mask == 0
    if raw.dtype.kind == "f":
        invalid |= ~np.isfinite(raw)
    violations = _file_range_violations(raw, tags, invalid)
    return _RawRaster(raw, scale, offset, invalid, violations, grid, units, time)


def _integer_nodata(raw: npt.NDArray[Any], nodata: float | None) -> int | None:
    """``nodata`` as an integer of ``raw``'s dtype, or None (no nodata, a float raster, a value the
    dtype cannot hold, or a 64-bit unsigned raster, whose comparisons the compiled pass does not take)."""
    if nodata is None or raw.dtype.kind not in "iu" or raw.dtype == np.uint64:
        return None
    if not math.isfinite(nodata) or not float(nodata).is_integer():
        return None
    info = np.iinfo(raw.dtype)
    value = int(nodata)
    return value if info.min <= value <= info.max else None


def _has_range_tags(tags: Mapping[str, str]) -> bool:
    return any(k in tags for k in ("valid_range", "valid_min", "valid_max"))


def _file_range_violations(
    raw: npt.NDArray[Any], tags: Mapping[str, str], invalid: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_] | None:
    """Pixels outside the file's own ``valid_range``/``valid_min``/``valid_max`` tags (raw units)."""
    lo, hi = -math.inf, math.inf
    try:
        if "valid_range" in tags:
            parts = tags["valid_range"].replace(",", " ").split()
            lo, hi = float(parts[0]), float(parts[1])
        lo = float(tags.get("valid_min", lo))
        hi = float(tags.get("valid_max", hi))
    except (ValueError, IndexError) as exc:
        raise ValidationError(f"malformed valid range tags: {exc}", reason="corrupt_file") from exc
    if lo == -math.inf and hi == math.inf:
        return None
    return ((raw < lo) | (raw > hi)) & ~invalid


def parse_time(value: str | datetime | np.datetime64, label: str = "") -> datetime:
    """A time stamp from metadata → timezone-aware UTC datetime. ValidationError ``bad_date``."""
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValidationError(f"{label}: time is NaT", reason="bad_date")
        seconds = value.astype("datetime64[s]").astype(np.int64)
        return datetime.fromtimestamp(int(seconds), tz=UTC)
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        # TIFFTAG_DATETIME is "YYYY:MM:DD HH:MM:SS" by the TIFF 6.0 spec.
        if len(text) >= 10 and text[4] == ":" and text[7] == ":":
            text = text[:4] + "-" + text[5:7] + "-" + text[8:]
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{label}: unparseable time stamp {value!r}", reason="bad_date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _check_time(raw: str | datetime | None, now: datetime | None, label: str) -> datetime | None:
    if raw is None:
        return None
    when = parse_time(raw, label)
    limit = now if now is not None else datetime.now(UTC)
    if limit.tzinfo is None:
        limit = limit.replace(tzinfo=UTC)
    if when > limit:
        raise ValidationError(
            f"{label}: time stamp {when.isoformat()} is in the future (now {limit.isoformat()})",
            reason="future_date",
        )
    return when


# ---------------------------------------------------------------------------------------------- NetCDF

_Y_NAMES = ("lat", "latitude", "y", "rlat")
_X_NAMES = ("lon", "longitude", "x", "rlon")
_T_NAMES = ("time", "valid_time", "t", "date")


def read_netcdf_cube(data: bytes, *, names: Sequence[str], label: str = "") -> NetCDFCube:
    """Open NetCDF bytes and decode the first variable found among ``names`` as a (time, y, x) cube.

    Rows run north → south (flipped when latitudes ascend); longitudes 0…360 are moved to −180…180.
    Raises ValidationError: ``corrupt_file``, ``missing_variable``, ``bad_shape``, ``missing_crs``.
    """
    import xarray as xr

    label = label or "netcdf"
    if data[:8] != _HDF5_MAGIC and data[:4] not in _NETCDF3_MAGIC:
        raise ValidationError(f"{label}: not a NetCDF file", reason="corrupt_file")
    try:
        # netCDF4-C opens both NetCDF-4 (HDF5) and classic files straight from memory.
        with xr.open_dataset(bytes(data), engine="netcdf4", mask_and_scale=True, decode_times=True) as ds:
            var_name = _pick_variable(ds, names, label)
            da = ds[var_name]
            attrs = dict(da.attrs)
            encoding = dict(da.encoding)
            crs = _netcdf_crs(ds, da, label)
            cube = _to_cube(da, label)
            y = np.asarray(ds[cube.y_dim].values, dtype=np.float64)
            x = np.asarray(ds[cube.x_dim].values, dtype=np.float64)
            values = np.asarray(cube.da.values, dtype=np.float64)
            times = (
                np.asarray(ds[cube.t_dim].values).astype("datetime64[ns]")
                if cube.t_dim
                else np.array([np.datetime64("NaT", "ns")])
            )
    except ValidationError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, MemoryError) as exc:
        raise ValidationError(f"{label}: unreadable NetCDF ({exc})", reason="corrupt_file") from exc
    except Exception as exc:  # HDF5/netCDF C libraries raise a zoo of types
        raise ValidationError(f"{label}: unreadable NetCDF ({exc})", reason="corrupt_file") from exc

    if values.ndim == 2:
        values = values[np.newaxis]
    values = _apply_cf_valid_range(values, attrs, encoding)
    values, transform, shape = _regular_grid(values, y, x, crs, label)
    units = attrs.get("units")
    return NetCDFCube(
        variable_name=var_name,
        source_units=str(units) if units is not None else None,
        values=values,
        times=times,
        grid=GridSpec(crs=crs, transform=transform, shape=shape),
    )


@dataclass(frozen=True)
class _CubeDims:
    da: Any
    t_dim: str | None
    y_dim: str
    x_dim: str


def _pick_variable(ds: Any, names: Sequence[str], label: str) -> str:
    for name in names:
        if name in ds.data_vars:
            return name
    gridded = [str(n) for n, v in ds.data_vars.items() if v.ndim >= 2]
    raise ValidationError(
        f"{label}: none of {list(names)} in the NetCDF (gridded variables: {gridded})",
        reason="missing_variable",
    )


def _to_cube(da: Any, label: str) -> _CubeDims:
    dims = [str(d) for d in da.dims]
    y_dim = next((d for d in dims if d.lower() in _Y_NAMES), None)
    x_dim = next((d for d in dims if d.lower() in _X_NAMES), None)
    t_dim = next((d for d in dims if d.lower() in _T_NAMES), None)
    if y_dim is None or x_dim is None:
        raise ValidationError(f"{label}: variable dims {dims} have no y/x (lat/lon) pair", reason="bad_shape")
    extra = [d for d in dims if d not in (y_dim, x_dim, t_dim)]
    for dim in extra:
        if da.sizes[dim] != 1:
            raise ValidationError(
                f"{label}: unexpected dimension {dim!r} of size {da.sizes[dim]}", reason="bad_shape"
            )
    da = da.squeeze(extra) if extra else da
    order = [d for d in (t_dim, y_dim, x_dim) if d is not None]
    return _CubeDims(da.transpose(*order), t_dim, y_dim, x_dim)


def _netcdf_crs(ds: Any, da: Any, label: str) -> str:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    mapping_name = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
    candidates = [mapping_name] if mapping_name else []
    candidates.append("spatial_ref")
    for cand in candidates:
        if cand in ds.variables:
            attrs = ds[cand].attrs
            wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
            try:
                if wkt:
                    return str(CRS.from_user_input(wkt).to_string())
                return str(CRS.from_cf(dict(attrs)).to_string())
            except CRSError as exc:
                raise ValidationError(
                    f"{label}: unusable grid mapping ({exc})", reason="missing_crs"
                ) from exc
    # CF: coordinates in degrees_north/degrees_east without a grid mapping are plain WGS 84 lat/lon
    # (ERA5, CHIRPS NetCDF). Anything else (x/y in metres) would be a guess.
    dims = [str(d) for d in da.dims]
    lat = next((d for d in dims if d.lower() in ("lat", "latitude")), None)
    lon = next((d for d in dims if d.lower() in ("lon", "longitude")), None)
    if lat and lon:
        lat_units = str(ds[lat].attrs.get("units", "degrees_north")).lower()
        lon_units = str(ds[lon].attrs.get("units", "degrees_east")).lower()
        if lat_units.startswith("degree") and lon_units.startswith("degree"):
            return "EPSG:4326"
    raise ValidationError(f"{label}: no grid mapping and no lat/lon coordinates", reason="missing_crs")


def _apply_cf_valid_range(
    values: FloatArray, attrs: Mapping[str, Any], encoding: Mapping[str, Any]
) -> FloatArray:
    """CF ``valid_range``/``valid_min``/``valid_max`` are in packed units: unpack, then mask."""
    lo, hi = -math.inf, math.inf
    if "valid_range" in attrs:
        lo, hi = (float(v) for v in np.asarray(attrs["valid_range"]).ravel()[:2])
    lo = float(attrs.get("valid_min", lo))
    hi = float(attrs.get("valid_max", hi))
    if lo == -math.inf and hi == math.inf:
        return values
    scale = float(encoding.get("scale_factor", 1.0))
    offset = float(encoding.get("add_offset", 0.0))
    lo_p, hi_p = sorted((lo * scale + offset, hi * scale + offset))
    with np.errstate(invalid="ignore"):
        values[(values < lo_p) | (values > hi_p)] = np.nan
    return values


def _regular_grid(
    values: FloatArray, y: FloatArray, x: FloatArray, crs: str, label: str
) -> tuple[FloatArray, Affine, tuple[int, int]]:
    if y.size < 1 or x.size < 1:
        raise ValidationError(f"{label}: empty grid", reason="bad_shape")
    if crs == "EPSG:4326" and x.size and float(x.max()) > 180.0:
        x = np.where(x > 180.0, x - 360.0, x)
        order = np.argsort(x, kind="stable")
        x, values = x[order], values[:, :, order]
    if y.size > 1 and y[1] > y[0]:
        y, values = y[::-1], values[:, ::-1, :]
    dx = _step(x, label)
    dy = _step(-y, label)
    # Coordinates stored as float32/float64 centres carry rounding noise; snapping to 12 significant
    # digits makes the same grid compare equal across files (it is a zonal-weights cache key).
    transform = Affine(
        _snap(dx), 0.0, _snap(float(x[0]) - dx / 2), 0.0, -_snap(dy), _snap(float(y[0]) + dy / 2)
    )
    return np.ascontiguousarray(values), transform, (y.size, x.size)


def _snap(value: float) -> float:
    return float(f"{value:.12g}")


def _step(coords: FloatArray, label: str) -> float:
    if coords.size == 1:
        raise ValidationError(f"{label}: a one-cell axis has no resolution", reason="bad_shape")
    steps = np.diff(coords)
    step = float(steps.mean())
    if step <= 0 or not np.allclose(steps, step, rtol=1e-4, atol=0.0):
        raise ValidationError(f"{label}: coordinates are not a regular grid", reason="bad_shape")
    return step


def _read_netcdf_single(data: bytes, spec: VariableSpec, label: str) -> _RawRaster:
    cube = read_netcdf_cube(data, names=spec.aliases, label=label)
    if cube.values.shape[0] != 1:
        raise ValidationError(
            f"{label}: {cube.values.shape[0]} time steps; read_raster takes one (see read_netcdf_cube)",
            reason="multiple_times",
        )
    values = cube.values[0]
    invalid = np.isnan(values)
    time = None if np.isnat(cube.times[0]) else parse_time(cube.times[0], label)
    return _RawRaster(values, 1.0, 0.0, invalid, None, cube.grid, cube.source_units, time)
