"""Exact zonal means of rasters over insured regions, with cached sparse coverage weights.

exactextract computes, once per (region set, grid), which cells each region covers and by how much:
the ``coverage`` operation weighted by spherical cell area (``area_spherical_m2``, m²) on geographic
grids, or by the covered fraction on projected grids (their cells have equal area). Those weights form
a sparse region × cell matrix W. Every raster on that grid then costs one sparse product:

    mean_r = Σ_c W[r,c]·x_c·valid_c / Σ_c W[r,c]·valid_c
    valid_fraction_r = Σ_c W[r,c]·valid_c / Σ_c W[r,c]

Nodata pixels are excluded by the validity vector, so a region without a single valid pixel gets
``NaN`` with ``valid_fraction`` 0 — never 0, which would read as "no rain" or "dead vegetation".

Regions are reprojected to the raster's CRS (edges densified first); rasters are never warped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import shapely
from shapely.geometry.base import BaseGeometry

from ingest._kernels import (
    CellOrder,
    CsrRuns,
    cell_order,
    csr_runs,
    ordered_means,
    ordered_table_means,
    run_means,
)
from ingest.raster import WGS84_NAMES, GridSpec, RasterGrid
from ingest.regions import Region, regions_fingerprint
from ingest.units import FloatArray
from oracle.errors import ValidationError

_DENSIFY_DEGREES = 0.01
"""Edge length (degrees) before reprojection: straight lon/lat edges bend in a projected CRS."""


@dataclass(frozen=True, eq=False)
class ZonalWeights:
    """Coverage weights of ``region_ids`` on ``grid``.

    ``matrix``: CSR (regions × grid cells, row-major flat cell index) of covered area in m²
    (geographic grid) or covered fraction (projected grid); ``totals``: Σ weights per region (0 for a
    region outside the grid).
    """

    region_ids: tuple[str, ...]
    grid: GridSpec
    matrix: sp.csr_matrix
    totals: FloatArray
    coverage_weight: str

    @classmethod
    def build(cls, regions: Sequence[Region], grid: GridSpec) -> ZonalWeights:
        """Compute the weights with exactextract (one pass over the regions)."""
        from exactextract import exact_extract
        from exactextract.raster import NumPyRasterSource

        if not regions:
            raise ValidationError("zonal: no regions", reason="empty_collection")
        rows, cols = grid.shape
        t = grid.transform
        if t.b != 0.0 or t.d != 0.0:
            raise ValidationError("zonal: rotated grids are not supported", reason="bad_shape")
        xmin, ymin, xmax, ymax = grid.bounds
        geographic = grid.is_geographic
        coverage_weight = "area_spherical_m2" if geographic else "fraction"
        # exactextract only needs the grid geometry here: a zero-stride view costs no memory.
        template = np.broadcast_to(np.uint8(1), (rows, cols))
        source = NumPyRasterSource(template, xmin, ymin, xmax, ymax, srs_wkt=None)
        geoms = _to_grid_crs([r.geometry for r in regions], grid.crs)
        wkb = shapely.to_wkb(np.asarray(geoms, dtype=object))
        results = exact_extract(
            source,
            _wkb_features()(list(wkb)),
            ["cell_id", f"w=coverage(coverage_weight={coverage_weight})"],
            output="geojson",
        )
        flip = t.e > 0  # a south-up grid numbers its rows from the bottom in exactextract's frame
        row_idx, col_idx, data = [], [], []
        increasing = True
        for i, feat in enumerate(results):
            props = feat["properties"]
            ids = np.asarray(props["cell_id"], dtype=np.int64)
            if flip and ids.size:
                r, c = np.divmod(ids, cols)
                ids = (rows - 1 - r) * cols + c
            increasing = increasing and bool(np.all(ids[1:] > ids[:-1]))
            row_idx.append(np.full(ids.size, i, dtype=np.int64))
            col_idx.append(ids)
            data.append(np.asarray(props["w"], dtype=np.float64))
        shape = (len(regions), rows * cols)
        if increasing and rows * cols < np.iinfo(np.int32).max:
            # Each region's cells come sorted and distinct (the usual case): the rows are already CSR,
            # exactly what the COO route below makes of them (it keeps each row's order and has nothing
            # to sum), without its sort (a sixth of the build).
            indptr = np.zeros(len(regions) + 1, dtype=np.int32)
            np.cumsum([ids.size for ids in col_idx], out=indptr[1:])
            matrix = sp.csr_matrix(
                (np.concatenate(data), np.concatenate(col_idx).astype(np.int32), indptr), shape=shape
            )
        else:
            matrix = sp.csr_matrix(
                (np.concatenate(data), (np.concatenate(row_idx), np.concatenate(col_idx))), shape=shape
            )
        matrix.sum_duplicates()
        totals = np.asarray(matrix.sum(axis=1)).ravel()
        return cls(tuple(r.region_id for r in regions), grid, matrix, totals, coverage_weight)

    @cached_property
    def runs(self) -> CsrRuns:
        """``matrix`` as runs of consecutive cells with one weight (made on first use, then kept): what
        the means read, a sixth of the CSR arrays' bytes on a district map (interior cells of a grid row
        share their area), same terms in the same order."""
        m = self.matrix
        return csr_runs(m.indptr, m.indices, m.data, m.shape[1])

    @cached_property
    def order(self) -> CellOrder | None:
        """:attr:`runs` in raster order (made on first use, then kept), or ``None`` if a row's cells are
        stored out of order (the means then read :attr:`runs` region by region; same bits either way)."""
        return cell_order(self.runs)

    @property
    def cells(self) -> npt.NDArray[np.int64]:
        """Flat row-major indices of the cells any region covers."""
        return np.unique(self.matrix.indices).astype(np.int64)

    def means(self, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Zonal means of one raster (rows, cols) on this grid, NaN = nodata.

        Returns ``(means, valid_fraction)``, both of length ``len(region_ids)``; ``means`` is NaN where
        ``valid_fraction`` is 0.
        """
        if values.shape != self.grid.shape:
            raise ValidationError(
                f"zonal: raster shape {values.shape} does not match the weights' grid {self.grid.shape}",
                reason="grid_mismatch",
            )
        x = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        return self._means_flat(x, gaps_use_totals=True)

    def raster_means(self, raster: RasterGrid) -> tuple[FloatArray, FloatArray]:
        """:meth:`means` of ``raster.values``, the same bits; a packed raster's means are read from its
        counts (:func:`ingest._kernels.ordered_table_means`), so its float64 values are not made for them.
        """
        if raster.grid != self.grid:
            raise ValidationError(
                f"zonal: the raster's grid {raster.grid} is not the weights' grid {self.grid}",
                reason="grid_mismatch",
            )
        packed, order = raster.packed, self.order
        if packed is None or order is None:
            return self.means(raster.values)
        num, den, gaps = ordered_table_means(order, packed.codes, packed.table)
        return self._finish(num, np.where(gaps, den, self.totals))

    def means_stack(self, stack: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Zonal means of a (time, rows, cols) stack: ``(means, valid_fraction)`` of shape (regions, time)."""
        if stack.ndim != 3 or stack.shape[1:] != self.grid.shape:
            raise ValidationError(
                f"zonal: stack shape {stack.shape} does not match the grid {self.grid.shape}",
                reason="grid_mismatch",
            )
        means = np.empty((len(self.region_ids), stack.shape[0]))
        fraction = np.empty_like(means)
        # Day by day: a (cells × days) block would be a transposed, strided operand, which scipy copies
        # cell-major first (that copy cost 3x the products). Each day's sums are the same terms in the
        # same order either way, so the bits do not depend on how the days are grouped.
        for day, values in enumerate(stack):
            x = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
            means[:, day], fraction[:, day] = self._means_flat(x, gaps_use_totals=False)
        return means, fraction

    def _means_flat(self, x: FloatArray, *, gaps_use_totals: bool) -> tuple[FloatArray, FloatArray]:
        """One pass over the weights (:func:`ingest._kernels.ordered_means` over :attr:`order`): per region
        Σ w·x and Σ w·valid in CSR order from 0.0, a nodata cell counted as w·0.0 — term for term the
        sparse products ``W @ where(valid, x, 0)`` and ``W @ valid`` the two paths made before, so the
        bits are theirs.

        ``means`` (``gaps_use_totals``) keeps its historical denominator for a region without a nodata
        cell: the stored total Σ w, as scipy summed it when the weights were built (its order differs
        from the row's sequential sum in the last bit for some rows, so it is kept, not recomputed).
        """
        if x.size != self.matrix.shape[1]:
            raise ValidationError(
                f"zonal: {x.size} cells do not match the weights' {self.matrix.shape[1]}",
                reason="grid_mismatch",
            )
        order = self.order
        num, den, gaps = ordered_means(order, x) if order is not None else run_means(self.runs, x)
        if gaps_use_totals:
            den = np.where(gaps, den, self.totals)
        return self._finish(num, den)

    def _finish(self, num: FloatArray, den: FloatArray) -> tuple[FloatArray, FloatArray]:
        totals = self.totals if num.ndim == 1 else self.totals[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(den > 0.0, num / den, np.nan)
            fraction = np.where(totals > 0.0, den / totals, 0.0)
        return means, fraction


@dataclass
class WeightCache:
    """LRU cache of :class:`ZonalWeights` keyed by (region-set fingerprint, grid); counts builds/hits."""

    maxsize: int = 16
    builds: int = 0
    hits: int = 0
    _entries: OrderedDict[tuple[str, GridSpec], ZonalWeights] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fingerprints: OrderedDict[int, tuple[Sequence[Region], str]] = field(default_factory=OrderedDict)

    def _fingerprint(self, regions: Sequence[Region]) -> str:
        # Hashing 1,000 polygons costs ~10 ms, as much as the zonal product itself: remember it for
        # the same (immutable) sequence object, which a daily loop passes again and again. The
        # sequence is held so its id cannot be reused by another object while memoised.
        memo = self._fingerprints.get(id(regions))
        if memo is not None and memo[0] is regions and isinstance(regions, tuple):
            return memo[1]
        fingerprint = regions_fingerprint(regions)
        if isinstance(regions, tuple):
            with self._lock:
                self._fingerprints[id(regions)] = (regions, fingerprint)
                while len(self._fingerprints) > self.maxsize:
                    self._fingerprints.popitem(last=False)
        return fingerprint

    def weights(self, regions: Sequence[Region], grid: GridSpec) -> ZonalWeights:
        """The weights of ``regions`` on ``grid``, built on first use."""
        key = (self._fingerprint(regions), grid)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        built = ZonalWeights.build(regions, grid)
        with self._lock:
            self.builds += 1
            self._entries[key] = built
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return built


DEFAULT_CACHE = WeightCache()


@dataclass(frozen=True, eq=False)
class ZonalStats:
    """Per-region means of one raster: ``means`` NaN and ``valid_fraction`` 0 for a region without data."""

    region_ids: tuple[str, ...]
    means: FloatArray
    valid_fraction: FloatArray
    variable: str
    units: str

    def as_dict(self) -> dict[str, float | None]:
        """region_id → mean, None for "no data"."""
        return {
            rid: (None if np.isnan(m) else float(m))
            for rid, m in zip(self.region_ids, self.means, strict=True)
        }


def zonal_means(
    raster: RasterGrid, regions: Sequence[Region], *, cache: WeightCache | None = None
) -> ZonalStats:
    """Exact area-weighted mean of ``raster`` over each region (weights cached per region set and grid)."""
    weights = (cache or DEFAULT_CACHE).weights(regions, raster.grid)
    means, fraction = weights.raster_means(raster)
    return ZonalStats(weights.region_ids, means, fraction, raster.variable, raster.units)


@cache
def _wkb_features() -> Any:
    """exactextract's feature source over WKB geometries (built on first use: exactextract loads lazily).

    It hands GEOS each region's exact WKB, where a GeoJSON feature list costs a ``json.dumps`` of every
    polygon and a parse back in C++; the coordinates (hence the weights) are the same bits either way."""
    from exactextract._exactextract import Feature
    from exactextract.feature import FeatureSource

    class WkbFeature(Feature):  # type: ignore[misc]
        def __init__(self, fid: int, wkb: bytes) -> None:
            Feature.__init__(self)
            self.fid = fid
            self.wkb = wkb
            self.properties: dict[str, Any] = {}

        def geometry(self) -> bytes:
            return self.wkb

        def get(self, name: str) -> Any:
            return self.fid if name == "id" else self.properties[name]

        def set(self, name: str, value: Any) -> None:
            if name == "id":
                self.fid = value
            else:
                self.properties[name] = value

        def fields(self) -> list[str]:
            return ["id", *self.properties]

    class WkbFeatures(FeatureSource):  # type: ignore[misc]
        def __init__(self, wkbs: list[bytes]) -> None:
            super().__init__()
            self.wkbs = wkbs

        def count(self) -> int:
            return len(self.wkbs)

        def __iter__(self) -> Any:
            for i, wkb in enumerate(self.wkbs):
                yield WkbFeature(i, wkb)

        def srs_wkt(self) -> None:
            return None

    return WkbFeatures


def _to_grid_crs(geoms: list[BaseGeometry], crs: str) -> list[BaseGeometry]:
    if crs.upper() in WGS84_NAMES:
        return geoms  # the regions' own CRS: nothing to do, and no need to load pyproj to see it
    from pyproj import CRS, Transformer

    target = CRS.from_user_input(crs)
    if target.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return geoms
    transformer = Transformer.from_crs("EPSG:4326", target, always_xy=True)

    def project(coords: FloatArray) -> FloatArray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    dense = shapely.segmentize(np.asarray(geoms, dtype=object), _DENSIFY_DEGREES)
    projected = shapely.transform(dense, project)
    bad = [i for i, g in enumerate(projected) if not np.isfinite(shapely.get_coordinates(g)).all()]
    if bad:
        raise ValidationError(
            f"zonal: {len(bad)} region(s) cannot be projected to the raster CRS", reason="projection_failed"
        )
    return list(projected)
