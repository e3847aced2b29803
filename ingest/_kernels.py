"""Compiled one-pass loops for the validated read and the zonal product (numba, strict IEEE).

Each loop replaces several full numpy passes with one, and computes every value with the very same
operations, in the very same order, as the numpy/scipy code it replaces, so the bits do not move:

* :func:`canonical_counts`: packed integers → canonical float64 (``float(c) · mult``, then ``+ add`` when
  ``add ≠ 0``: two roundings, as ``multiply(data, mult, dtype=float64)`` then ``+= add``), NaN for nodata
  and for counts outside ``[lo, hi]``, counting both;
* :func:`canonical_nodata`: the same for a raster whose only mask is one integer nodata value, tested on
  the counts in the same pass (no boolean mask is made, read or kept);
* :func:`csr_means`: per region, Σ w·x and Σ w·valid in the CSR order from 0.0 with a nodata cell taken
  as 0 (w·0.0), which is term for term scipy's ``csr_matvec`` over ``where(valid, x, 0)`` and ``valid``;
* :func:`run_means`: the same sums over the same CSR rows stored as runs (:func:`csr_runs`: consecutive
  cells of one row with the same weight, bit for bit): the same terms in the same order, but the loop
  reads one cell index and one weight per run instead of per cell, and the cells contiguously. The
  product is memory-bound; the runs are a sixth of the CSR arrays' bytes on a district map. A region's
  next grid row lies a raster row further on, where no hardware prefetcher looks: the loop asks for the
  cells of the run 8 runs ahead (LLVM's ``prefetch``, a hint that changes no value), which took about a
  tenth off the means in the year-long benchmark;
* :func:`ordered_means`: the same sums again, with the runs of all regions sorted by their first cell
  (:func:`cell_order`; only where each row's runs ascend, so every region keeps its own order of terms):
  the raster is read once, front to back, and the regions' chains of additions interleave. Each run is
  one 64-bit word (region, length and first cell packed) beside its weight: 16 bytes a run instead of
  32, which took about a tenth off the means of 1,000 districts. This is what the zonal means use;
  :func:`run_means` remains for weights whose rows are stored out of cell order;
* :func:`ordered_table_means`: :func:`ordered_means` of a packed 8- or 16-bit raster read from its
  stored counts, each cell's value looked up in a table of every count's canonical value
  (:func:`count_table`, made by :func:`canonical_nodata` itself, so the values are its bits). The
  zonal means of a raster read only for them then need no float64 copy of it: only the counts pass
  (:func:`count_nodata`) that the validated read's checks need;

numba compiles with ``fastmath`` off: no reassociation, no fused multiply-add (LLVM fuses a multiply
and an add only when told it may), no vectorised reductions; the results are the IEEE results on any
CPU. Compiled code is cached on disk (``NUMBA_CACHE_DIR`` or beside this file) when a cache directory is
writable, so a process loads it instead of compiling it; numba itself is imported on first use only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

_lock = threading.Lock()
_compiled: dict[str, Callable[..., Any]] = {}

_PREFETCH_RUNS = 8
"""How many runs ahead :func:`_run_means` asks for the cells it will read (measured best of 4/8/16/32)."""


_helpers_installed = False


def _prefetch(x: Any, index: int) -> None:
    """A hint that ``x[index]`` will be read soon. Compiled, it is LLVM's ``prefetch`` (read, keep in
    all cache levels), installed by :func:`_install_helpers`; it reads nothing and cannot fault. In plain
    Python it does nothing."""


def _install_helpers() -> None:
    """Make ``_prefetch`` the compiled hint, and ``_add_cell`` and ``_add_run`` compiled functions inlined
    into the loops compiled from now on (numba reads globals at compile time); called under ``_lock``
    before each compilation, does its work once."""
    global _prefetch, _add_cell, _add_run, _add_coded_run, _helpers_installed
    if _helpers_installed:
        return
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx: Any, arr: Any, idx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            array = context.make_array(signature.args[0])(context, builder, args[0])
            pointer = builder.gep(array.data, [args[1]])
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")  # type: ignore[no-untyped-call]
            # rw = 0 (read), locality = 3 (keep in every level), cache type = 1 (data)
            builder.call(fn, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    _prefetch = prefetch  # type: ignore[assignment]
    inline = numba.njit(inline="always", nogil=True, fastmath=False, error_model="numpy")
    _add_cell = inline(_add_cell)
    _add_run = inline(_add_run)
    _add_coded_run = inline(_add_coded_run)
    _helpers_installed = True


def _add_cell(w: float, v: float, total: float, valid: float) -> tuple[float, float, bool]:
    """``(total + w·v, valid + w·1, False)``, or ``(total + w·0, valid + w·0, True)`` when ``v`` is NaN
    (nodata): one term of every means loop, compiled inline into them (:func:`_install_helpers`)."""
    if v != v:  # NaN: nodata
        return total + w * 0.0, valid + w * 0.0, True
    return total + w * v, valid + w * 1.0, False


def _add_run(x: Any, first: int, n: int, w: float, total: float, valid: float) -> tuple[float, float, bool]:
    """``(total, valid, gap)`` after adding the run of cells ``first … first + n - 1`` with weight ``w``
    in cell order (:func:`_add_cell`). Both run loops add a run through this, so they add the same
    terms in the same order as :func:`_csr_means` does cell by cell."""
    gap = False
    for j in range(first, first + n):
        total, valid, nodata = _add_cell(w, x[j], total, valid)
        gap = gap or nodata
    return total, valid, gap


def _add_coded_run(
    codes: Any, table: Any, first: int, n: int, w: float, total: float, valid: float
) -> tuple[float, float, bool]:
    """:func:`_add_run` over the cells ``first … first + n - 1`` of a packed raster, cell ``j``'s value
    being ``table[codes[j]]``: the same terms, in the same order, as over the float64 values."""
    gap = False
    for j in range(first, first + n):
        total, valid, nodata = _add_cell(w, table[codes[j]], total, valid)
        gap = gap or nodata
    return total, valid, gap


def _canonical_counts(
    data: Any, invalid: Any, lo: int, hi: int, mult: float, add: float, values: Any
) -> tuple[int, int]:
    # Branch-free, so that LLVM vectorises the loop: every cell's value is computed, and a select
    # keeps it or NaN (the same IEEE operations per kept cell as the branching loop, so the same bits;
    # the counts are integer sums, exact in any order).
    nodata = 0
    out = 0
    nan = np.nan
    if add != 0.0:
        for i in range(data.size):
            c = data[i]
            bad = invalid[i]
            outside = (c < lo) | (c > hi)
            v = np.float64(c) * mult
            values[i] = nan if (bad | outside) else v + add
            nodata += bad
            out += outside & (not bad)
    else:
        for i in range(data.size):
            c = data[i]
            bad = invalid[i]
            outside = (c < lo) | (c > hi)
            v = np.float64(c) * mult
            values[i] = nan if (bad | outside) else v
            nodata += bad
            out += outside & (not bad)
    return nodata, out


def _canonical_nodata(
    data: Any, nodata: int, lo: int, hi: int, mult: float, add: float, values: Any
) -> tuple[int, int]:
    count = 0
    out = 0
    nan = np.nan
    if add != 0.0:
        for i in range(data.size):
            c = data[i]
            bad = c == nodata
            outside = (c < lo) | (c > hi)
            v = np.float64(c) * mult
            values[i] = nan if (bad | outside) else v + add
            count += bad
            out += outside & (not bad)
    else:
        for i in range(data.size):
            c = data[i]
            bad = c == nodata
            outside = (c < lo) | (c > hi)
            v = np.float64(c) * mult
            values[i] = nan if (bad | outside) else v
            count += bad
            out += outside & (not bad)
    return count, out


def _run_means(
    row_runs: Any, run_cells: Any, run_lengths: Any, run_weights: Any, x: Any, num: Any, den: Any, gaps: Any
) -> None:
    last = run_cells.size - 1
    for row in range(row_runs.size - 1):
        total = 0.0
        valid = 0.0
        gap = False
        for k in range(row_runs[row], row_runs[row + 1]):
            # A region's next grid row lies a whole raster row further on, where the hardware prefetcher
            # has not been: ask for the cells a few runs ahead now (a hint only; no value depends on it).
            _prefetch(x, run_cells[min(k + _PREFETCH_RUNS, last)])
            total, valid, run_gap = _add_run(x, run_cells[k], run_lengths[k], run_weights[k], total, valid)
            gap = gap or run_gap
        num[row] = total
        den[row] = valid
        gaps[row] = gap


def _ordered_means(
    meta: Any, run_weights: Any, cell_bits: int, length_bits: int, x: Any, num: Any, den: Any, gaps: Any
) -> None:
    for row in range(num.size):
        num[row] = 0.0
        den[row] = 0.0
        gaps[row] = False
    cell_mask = (1 << cell_bits) - 1
    length_mask = (1 << length_bits) - 1
    region_shift = cell_bits + length_bits
    for k in range(meta.size):
        m = meta[k]  # one word per run: region | length | first cell (see :func:`cell_order`)
        row = m >> region_shift
        n = (m >> cell_bits) & length_mask
        if n == 1:  # a border cell with its own coverage: most runs are one cell long (no loop)
            total, valid, gap = _add_run(x, m & cell_mask, 1, run_weights[k], num[row], den[row])
        else:
            total, valid, gap = _add_run(x, m & cell_mask, n, run_weights[k], num[row], den[row])
        if gap:
            gaps[row] = True
        num[row] = total
        den[row] = valid


def _ordered_table_means(
    meta: Any,
    run_weights: Any,
    cell_bits: int,
    length_bits: int,
    codes: Any,
    table: Any,
    num: Any,
    den: Any,
    gaps: Any,
) -> None:
    # :func:`_ordered_means` line for line, each cell's value looked up from its stored count.
    for row in range(num.size):
        num[row] = 0.0
        den[row] = 0.0
        gaps[row] = False
    cell_mask = (1 << cell_bits) - 1
    length_mask = (1 << length_bits) - 1
    region_shift = cell_bits + length_bits
    for k in range(meta.size):
        m = meta[k]
        row = m >> region_shift
        n = (m >> cell_bits) & length_mask
        first, w = m & cell_mask, run_weights[k]
        if n == 1:
            total, valid, gap = _add_coded_run(codes, table, first, 1, w, num[row], den[row])
        else:
            total, valid, gap = _add_coded_run(codes, table, first, n, w, num[row], den[row])
        if gap:
            gaps[row] = True
        num[row] = total
        den[row] = valid


def _count_nodata(data: Any, nodata: int, lo: int, hi: int) -> tuple[int, int]:
    # :func:`_canonical_nodata`'s two counts without its values.
    count = 0
    out = 0
    for i in range(data.size):
        c = data[i]
        bad = c == nodata
        outside = (c < lo) | (c > hi)
        count += bad
        out += outside & (not bad)
    return count, out


def _csr_means(indptr: Any, indices: Any, weights: Any, x: Any, num: Any, den: Any, gaps: Any) -> None:
    for row in range(indptr.size - 1):
        total = 0.0
        valid = 0.0
        gap = False
        for j in range(indptr[row], indptr[row + 1]):
            total, valid, nodata = _add_cell(weights[j], x[indices[j]], total, valid)
            gap = gap or nodata
        num[row] = total
        den[row] = valid
        gaps[row] = gap


def _jit(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    found = _compiled.get(name)
    if found is not None:
        return found
    with _lock:
        found = _compiled.get(name)
        if found is None:
            import numba

            _install_helpers()
            try:
                found = numba.njit(fn, cache=True, nogil=True, fastmath=False, error_model="numpy")
            except RuntimeError:  # no writable cache directory: compile in this process instead
                found = numba.njit(fn, cache=False, nogil=True, fastmath=False, error_model="numpy")
            _compiled[name] = found
    return found


def canonical_counts(
    data: npt.NDArray[np.integer[Any]],
    invalid: npt.NDArray[np.bool_],
    lo: int,
    hi: int,
    mult: float,
    add: float,
) -> tuple[npt.NDArray[np.float64], int, int]:
    """``(values, nodata_count, out_of_range_count)`` of packed integer ``data`` in one pass.

    ``values = float(c)·mult (+ add)`` for ``lo ≤ c ≤ hi`` and not ``invalid``, NaN otherwise.
    """
    values = np.empty(data.shape, dtype=np.float64)
    flat = np.ascontiguousarray(data).reshape(-1)
    mask = np.ascontiguousarray(invalid).reshape(-1)
    nodata, out = _jit("canonical_counts", _canonical_counts)(
        flat, mask, int(lo), int(hi), float(mult), float(add), values.reshape(-1)
    )
    return values, int(nodata), int(out)


def canonical_nodata(
    data: npt.NDArray[np.integer[Any]], nodata: int, lo: int, hi: int, mult: float, add: float
) -> tuple[npt.NDArray[np.float64], int, int]:
    """:func:`canonical_counts` with ``invalid = (data == nodata)``, tested in the same pass.

    ``nodata`` must be a value of ``data``'s dtype (the caller checks; the comparison is on integers).
    """
    info = np.iinfo(data.dtype)
    if not info.min <= nodata <= info.max:
        raise ValueError(f"nodata {nodata} is not a {data.dtype} value")
    values = np.empty(data.shape, dtype=np.float64)
    flat = np.ascontiguousarray(data).reshape(-1)
    count, out = _jit("canonical_nodata", _canonical_nodata)(
        flat, int(nodata), int(lo), int(hi), float(mult), float(add), values.reshape(-1)
    )
    return values, int(count), int(out)


def count_nodata(data: npt.NDArray[np.integer[Any]], nodata: int, lo: int, hi: int) -> tuple[int, int]:
    """``(nodata_count, out_of_range_count)`` of :func:`canonical_nodata`, without making its values."""
    info = np.iinfo(data.dtype)
    if not info.min <= nodata <= info.max:
        raise ValueError(f"nodata {nodata} is not a {data.dtype} value")
    flat = np.ascontiguousarray(data).reshape(-1)
    count, out = _jit("count_nodata", _count_nodata)(flat, int(nodata), int(lo), int(hi))
    return int(count), int(out)


TABLE_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16))
"""The packed dtypes whose every count fits a table (:func:`count_table`): 256 or 65,536 entries."""


def count_codes(data: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """``data`` flat, as the unsigned integers of the same bits: each cell's row in :func:`count_table`."""
    if data.dtype not in TABLE_DTYPES:
        raise ValueError(f"no count table for {data.dtype}")
    flat = np.ascontiguousarray(data).reshape(-1)
    return flat.view(np.uint8 if data.dtype.itemsize == 1 else np.uint16)


def count_table(
    dtype: np.dtype[Any], nodata: int, lo: int, hi: int, mult: float, add: float
) -> npt.NDArray[np.float64]:
    """The canonical value of every count of an 8- or 16-bit ``dtype``, at the row of its bits read as
    unsigned (:func:`count_codes`): :func:`canonical_nodata` of all of them, so ``table[code]`` has the
    very bits that :func:`canonical_nodata` writes for that count (NaN for nodata and outside lo…hi).

    Read-only, and kept for the next raster of the same kind (a year of daily files shares one)."""
    dtype = np.dtype(dtype)
    if dtype not in TABLE_DTYPES:
        raise ValueError(f"no count table for {dtype}")
    return _count_table(dtype.str, int(nodata), int(lo), int(hi), float(mult), float(add))


@lru_cache(maxsize=32)
def _count_table(
    dtype: str, nodata: int, lo: int, hi: int, mult: float, add: float
) -> npt.NDArray[np.float64]:
    kind = np.dtype(dtype)
    unsigned = np.uint8 if kind.itemsize == 1 else np.uint16
    every = np.arange(1 << (8 * kind.itemsize), dtype=np.int64).astype(unsigned).view(kind)
    table, _, _ = canonical_nodata(every, nodata, lo, hi, mult, add)
    table.flags.writeable = False
    return table


@dataclass(frozen=True, eq=False)
class CsrRuns:
    """A CSR matrix's rows as runs of consecutive columns with one weight (see :func:`csr_runs`).

    Row ``r``'s runs are ``row_runs[r]:row_runs[r+1]``; run ``k`` covers columns
    ``run_cells[k] … run_cells[k] + run_lengths[k] - 1``, each with weight ``run_weights[k]``.
    """

    row_runs: npt.NDArray[np.int64]
    run_cells: npt.NDArray[np.int64]
    run_lengths: npt.NDArray[np.int64]
    run_weights: npt.NDArray[np.float64]
    columns: int


def csr_runs(
    indptr: npt.NDArray[np.integer[Any]],
    indices: npt.NDArray[np.integer[Any]],
    weights: npt.NDArray[np.float64],
    columns: int,
) -> CsrRuns:
    """Split each CSR row, in its stored order, into maximal runs of consecutive columns (index + 1)
    whose weights have the same bits; a run never crosses a row."""
    nnz = int(indptr[-1])
    cols = np.asarray(indices[:nnz], dtype=np.int64)
    w = np.ascontiguousarray(weights[:nnz], dtype=np.float64)
    starts = np.ones(nnz, dtype=np.bool_)
    if nnz > 1:
        same_bits = w[1:].view(np.int64) == w[:-1].view(np.int64)
        starts[1:] = (cols[1:] != cols[:-1] + 1) | ~same_bits
    row_starts = np.asarray(indptr[:-1], dtype=np.int64)
    starts[row_starts[row_starts < nnz]] = True
    first = np.flatnonzero(starts)
    row_runs = np.searchsorted(first, np.asarray(indptr, dtype=np.int64)).astype(np.int64)
    lengths = np.diff(np.append(first, nnz)).astype(np.int64)
    return CsrRuns(row_runs, cols[first], lengths, w[first], int(columns))


def run_means(
    runs: CsrRuns, x: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """:func:`csr_means` of the matrix ``runs`` was made from: the same bits, from the runs."""
    if x.ndim != 1 or x.size != runs.columns:
        raise ValueError(f"{x.size} values for {runs.columns} columns")
    rows = runs.row_runs.size - 1
    num = np.empty(rows, dtype=np.float64)
    den = np.empty(rows, dtype=np.float64)
    gaps = np.empty(rows, dtype=np.bool_)
    _jit("run_means", _run_means)(
        runs.row_runs, runs.run_cells, runs.run_lengths, runs.run_weights, x, num, den, gaps
    )
    return num, den, gaps


@dataclass(frozen=True, eq=False)
class CellOrder:
    """The runs of a :class:`CsrRuns` in raster order (see :func:`cell_order`), one 64-bit word each:
    ``meta[k] = region << (cell_bits + length_bits) | length << cell_bits | first cell``, weight
    ``run_weights[k]``. Half the bytes of four separate arrays, read as two streams instead of four."""

    rows: int
    meta: npt.NDArray[np.int64]
    run_weights: npt.NDArray[np.float64]
    cell_bits: int
    length_bits: int
    columns: int

    @property
    def run_cells(self) -> npt.NDArray[np.int64]:
        return self.meta & ((1 << self.cell_bits) - 1)

    @property
    def run_lengths(self) -> npt.NDArray[np.int64]:
        return (self.meta >> self.cell_bits) & ((1 << self.length_bits) - 1)

    @property
    def run_region(self) -> npt.NDArray[np.int64]:
        return self.meta >> (self.cell_bits + self.length_bits)


_MAX_LENGTH_BITS = 16
"""Runs longer than ``2**length_bits - 1`` cells are stored as several consecutive runs (the same terms
in the same order: a run is only where the loop reads its next cell and weight from)."""


def cell_order(runs: CsrRuns) -> CellOrder | None:
    """``runs`` sorted by their first cell (stable), each tagged with its row; ``None`` when some row's
    runs are not in ascending cell order without overlap (as in canonical CSR: sorted, distinct
    indices), since only then does the sort keep every row's own order.

    Each region's terms are then added in the order its row stores them (the same chain of additions
    from 0.0, so the same bits), while the raster is read front to back once for all regions instead
    of a region at a time, a grid row's width apart: the memory is read as the hardware prefetcher
    expects, and the regions' chains of additions interleave.

    Region, length and first cell are packed into one word per run (:class:`CellOrder`): the loop reads
    16 bytes per run instead of 32, which took about a tenth off the means of a district map. A run too
    long for its field is split into consecutive pieces; ``None`` too if the three cannot share 63 bits.
    """
    rows = runs.row_runs.size - 1
    counts = np.diff(runs.row_runs)
    region = np.repeat(np.arange(rows, dtype=np.int64), counts)
    cells = runs.run_cells
    if cells.size and (int(cells.min()) < 0 or int((cells + runs.run_lengths).max()) > runs.columns):
        raise ValueError(f"runs reach outside the {runs.columns} columns")
    if cells.size > 1:
        # Each run of a row must start after the row's previous run ends: then neither the sort nor the
        # split of a long run into pieces can move a term before one its row stores ahead of it.
        same_row = region[1:] == region[:-1]
        if bool(np.any(same_row & (cells[1:] < cells[:-1] + runs.run_lengths[:-1]))):
            return None
    cell_bits = max(1, int(runs.columns - 1).bit_length())
    region_bits = max(1, int(rows - 1).bit_length())
    length_bits = min(_MAX_LENGTH_BITS, 63 - cell_bits - region_bits)
    if length_bits < 1:
        return None
    lengths, weights = runs.run_lengths, runs.run_weights
    cap = (1 << length_bits) - 1
    if lengths.size and int(lengths.max()) > cap:
        pieces = -(-lengths // cap)
        first_piece = np.repeat(np.cumsum(pieces) - pieces, pieces)
        piece = np.arange(int(pieces.sum()), dtype=np.int64) - first_piece
        region, weights = np.repeat(region, pieces), np.repeat(weights, pieces)
        cells = np.repeat(cells, pieces) + piece * cap
        lengths = np.minimum(np.repeat(lengths, pieces) - piece * cap, cap)
    order = np.argsort(cells, kind="stable")
    region, cells, lengths, weights = region[order], cells[order], lengths[order], weights[order]
    meta = (region << (cell_bits + length_bits)) | (lengths << cell_bits) | cells
    return CellOrder(
        rows, np.ascontiguousarray(meta, dtype=np.int64), weights, cell_bits, length_bits, runs.columns
    )


def ordered_means(
    order: CellOrder, x: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """:func:`run_means` of the runs ``order`` was made from: the same bits, read in raster order."""
    if x.ndim != 1 or x.size != order.columns:
        raise ValueError(f"{x.size} values for {order.columns} columns")
    num = np.empty(order.rows, dtype=np.float64)
    den = np.empty(order.rows, dtype=np.float64)
    gaps = np.empty(order.rows, dtype=np.bool_)
    _jit("ordered_means", _ordered_means)(
        order.meta, order.run_weights, order.cell_bits, order.length_bits, x, num, den, gaps
    )
    return num, den, gaps


def ordered_table_means(
    order: CellOrder, codes: npt.NDArray[np.unsignedinteger[Any]], table: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """:func:`ordered_means` of ``x = table[codes]`` without making ``x``: the same bits."""
    if codes.ndim != 1 or codes.size != order.columns:
        raise ValueError(f"{codes.size} counts for {order.columns} columns")
    if codes.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"counts must be read as uint8 or uint16 codes, not {codes.dtype}")
    if table.dtype != np.float64 or table.shape != (1 << (8 * codes.dtype.itemsize),):
        raise ValueError(f"a table of {table.shape} {table.dtype} for {codes.dtype} codes")
    num = np.empty(order.rows, dtype=np.float64)
    den = np.empty(order.rows, dtype=np.float64)
    gaps = np.empty(order.rows, dtype=np.bool_)
    _jit("ordered_table_means", _ordered_table_means)(
        order.meta, order.run_weights, order.cell_bits, order.length_bits, codes, table, num, den, gaps
    )
    return num, den, gaps


def csr_means(
    indptr: npt.NDArray[np.integer[Any]],
    indices: npt.NDArray[np.integer[Any]],
    weights: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``(Σ w·x, Σ w·valid, row has a nodata cell)`` per CSR row, NaN cells taken as 0, one pass."""
    rows = indptr.size - 1
    num = np.empty(rows, dtype=np.float64)
    den = np.empty(rows, dtype=np.float64)
    gaps = np.empty(rows, dtype=np.bool_)
    _jit("csr_means", _csr_means)(indptr, indices, weights, x, num, den, gaps)
    return num, den, gaps


def warm_up() -> float:
    """Compile (or load from the disk cache) the loops now, on tiny inputs; returns the seconds it took.

    A long-lived process (a Dask worker, a backfill) pays this once; call it before timing steady work."""
    import time

    began = time.perf_counter()
    canonical_counts(np.zeros(2, dtype=np.int16), np.zeros(2, dtype=np.bool_), 0, 1, 1.0, 0.0)
    canonical_nodata(np.zeros(2, dtype=np.int16), -1, 0, 1, 1.0, 0.0)
    csr_means(
        np.array([0, 1], dtype=np.int32),
        np.array([0], dtype=np.int32),
        np.ones(1, dtype=np.float64),
        np.ones(1, dtype=np.float64),
    )
    one = np.ones(1, dtype=np.float64)
    runs = csr_runs(np.array([0, 1]), np.array([0]), one, 1)
    run_means(runs, one)
    order = cell_order(runs)
    if order is not None:
        ordered_means(order, one)
        for kind in (np.dtype(np.int16), np.dtype(np.uint8)):  # 16-bit and 8-bit codes
            counts: npt.NDArray[np.integer[Any]] = np.zeros(1, dtype=kind)
            ordered_table_means(order, count_codes(counts), count_table(kind, 1, 0, 1, 1.0, 0.0))
    for dtype in TABLE_DTYPES:
        count_nodata(np.zeros(2, dtype=dtype), 1, 0, 1)
    return time.perf_counter() - began
