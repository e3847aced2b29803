"""The compiled one-pass loops of the validated read and the zonal product give the numpy/scipy bits.

``ingest._kernels.canonical_counts`` against the numpy passes it replaced (multiply, add, range masks,
NaN fill, counts) and ``csr_means`` against scipy's sparse products over ``where(valid, x, 0)`` and
``valid``, on random packed rasters and random values with NaN, -0.0, negative numbers and empty rows;
and the weights' direct CSR build against the COO route, array for array.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ingest import _kernels as kernels
from ingest._kernels import (
    canonical_counts,
    canonical_nodata,
    cell_order,
    count_codes,
    count_nodata,
    count_table,
    csr_means,
    csr_runs,
    ordered_means,
    ordered_table_means,
    run_means,
    warm_up,
)


def _numpy_canonical(
    data: np.ndarray, invalid: np.ndarray, lo: int, hi: int, mult: float, add: float
) -> tuple[np.ndarray, int, int]:
    values = np.multiply(data, mult, dtype=np.float64)
    if add != 0.0:
        values += add
    out = ((data < lo) | (data > hi)) & ~invalid
    values[out | invalid] = np.nan
    return values, int(invalid.sum()), int(out.sum())


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("seed", range(4))
def test_canonical_counts_gives_the_numpy_bits(dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, size=(97, 131), dtype=dtype, endpoint=True)
    invalid = rng.random(data.shape) < 0.2
    lo, hi = int(rng.integers(info.min, 0 if info.min < 0 else 10)), int(info.max) - int(rng.integers(0, 50))
    for mult, add in [(0.1, 0.0), (0.02, -273.15), (1.0, 0.0), (1e-4, 0.5), (3.7, 1e6)]:
        got = canonical_counts(data, invalid, lo, hi, mult, add)
        want = _numpy_canonical(data, invalid, lo, hi, mult, add)
        assert got[0].tobytes() == want[0].tobytes()
        assert got[1:] == want[1:]


@pytest.mark.parametrize("seed", range(6))
def test_csr_means_gives_the_sparse_products_bits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cells, regions = 5000, 40
    m = sp.random(regions, cells, density=0.05, format="csr", random_state=seed) * 1e6
    m = sp.csr_matrix(m)
    m.data[m.indptr[3] : m.indptr[4]] = 0.0  # a region outside the grid: an empty row
    m.eliminate_zeros()
    assert m.indptr[4] == m.indptr[3]
    x = rng.normal(0.0, 10.0 ** rng.uniform(-3, 3), cells)
    x[rng.random(cells) < 0.3] = np.nan
    x[rng.random(cells) < 0.05] = -0.0
    valid = ~np.isnan(x)
    num, den, gaps = csr_means(m.indptr, m.indices, m.data, x)
    assert num.tobytes() == (m @ np.where(valid, x, 0.0)).tobytes()
    assert den.tobytes() == (m @ valid.astype(np.float64)).tobytes()
    rows = zip(m.indptr[:-1], m.indptr[1:], strict=True)
    assert gaps.tolist() == [bool(np.isnan(x[m.indices[a:b]]).any()) for a, b in rows]


def test_warm_up_returns_its_seconds() -> None:
    assert warm_up() >= 0.0


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("seed", range(3))
def test_canonical_nodata_gives_the_numpy_bits(dtype: type, seed: int) -> None:
    """The nodata test done inside the conversion pass equals the mask-then-convert route."""
    rng = np.random.default_rng(100 + seed)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, size=(89, 127), dtype=dtype, endpoint=True)
    nodata = int(info.max) if seed % 2 else int(info.min)
    data[rng.random(data.shape) < 0.15] = nodata
    lo, hi = int(info.min) + 3, int(info.max) - int(rng.integers(1, 50))
    for mult, add in [(0.1, 0.0), (0.02, -273.15), (1.0, 0.0), (1e-4, 0.5)]:
        got = canonical_nodata(data, nodata, lo, hi, mult, add)
        want = _numpy_canonical(data, data == nodata, lo, hi, mult, add)
        assert got[0].tobytes() == want[0].tobytes()
        assert got[1:] == want[1:]
    with pytest.raises(ValueError, match="nodata"):
        canonical_nodata(data, int(info.max) + 1, lo, hi, 1.0, 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_run_means_gives_the_csr_and_sparse_products_bits(seed: int) -> None:
    """Weights stored as runs of neighbouring cells with one weight (as a polygon's interior is) give
    the bits of the per-cell loop and of scipy's products."""
    rng = np.random.default_rng(200 + seed)
    cells, regions = 6000, 30
    rows = []
    for r in range(regions):
        row = np.zeros(cells)
        if r != 5:  # region 5 lies outside the grid: an empty row
            for _ in range(int(rng.integers(1, 6))):
                a = int(rng.integers(0, cells - 200))
                b = a + int(rng.integers(1, 200))
                row[a:b] = 1.0 if rng.random() < 0.7 else rng.uniform(0.01, 1.0)  # interior or one weight
                row[a] = rng.uniform(0.01, 1.0)  # a border cell with its own coverage
        rows.append(row)
    m = sp.csr_matrix(np.array(rows))
    m.sort_indices()
    x = rng.normal(0.0, 10.0 ** rng.uniform(-3, 3), cells)
    x[rng.random(cells) < 0.2] = np.nan
    x[rng.random(cells) < 0.05] = -0.0
    runs = csr_runs(m.indptr, m.indices, m.data, cells)
    assert runs.run_cells.size < m.nnz  # the runs really merge cells
    got = run_means(runs, x)
    want = csr_means(m.indptr, m.indices, m.data, x)
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()
    valid = ~np.isnan(x)
    assert got[0].tobytes() == (m @ np.where(valid, x, 0.0)).tobytes()
    assert got[1].tobytes() == (m @ valid.astype(np.float64)).tobytes()
    with pytest.raises(ValueError, match="columns"):
        run_means(runs, x[:-1])


def _fill_region(rng: np.random.Generator, row: np.ndarray, spans: int, longest: int, border: float) -> None:
    """``spans`` stretches of whole cells (weight 1.0, or one other weight) with a share of border cells
    of their own weights, in one region's row of a dense weight matrix."""
    for _ in range(spans):
        a = int(rng.integers(0, row.size - longest))
        b = a + int(rng.integers(1, longest))
        row[a:b] = 1.0 if rng.random() < 0.7 else rng.uniform(0.01, 1.0)
        edge = rng.random(b - a) < border
        row[a:b][edge] = rng.uniform(0.01, 1.0, int(edge.sum()))


@pytest.mark.parametrize("seed", range(6))
def test_ordered_means_gives_the_region_by_region_bits(seed: int) -> None:
    """All regions' runs read in raster order give each region's sums term for term as its own row
    orders them: overlapping regions, regions of one cell, an empty row, NaN and -0.0 included."""
    rng = np.random.default_rng(300 + seed)
    cells, regions = 5000, 40
    dense = np.zeros((regions, cells))
    for r in range(regions):
        if r == 7:
            continue  # an empty row
        if r == 8:
            dense[r, int(rng.integers(0, cells))] = rng.uniform(0.01, 1.0)  # a region of one cell
            continue
        _fill_region(rng, dense[r], int(rng.integers(1, 5)), 300, 0.1)
    m = sp.csr_matrix(dense)
    m.sort_indices()
    x = rng.normal(0.0, 10.0 ** rng.uniform(-3, 3), cells)
    x[rng.random(cells) < 0.15] = np.nan
    x[rng.random(cells) < 0.05] = -0.0
    runs = csr_runs(m.indptr, m.indices, m.data, cells)
    order = cell_order(runs)
    assert order is not None
    assert np.all(np.diff(order.run_cells) >= 0)  # raster order
    assert (runs.run_lengths == 1).any()  # both branches of the loop
    assert (runs.run_lengths > 1).any()
    overlap = (dense > 0).sum(axis=0)
    assert overlap.max() >= 2  # some cells lie in several regions
    got = ordered_means(order, x)
    want = csr_means(m.indptr, m.indices, m.data, x)
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()
    assert got[0][7] == 0.0
    assert got[1][7] == 0.0
    assert not got[2][7]
    with pytest.raises(ValueError, match="columns"):
        ordered_means(order, x[:-1])


def _random_order(rng: np.random.Generator, cells: int, regions: int) -> tuple[sp.csr_matrix, object]:
    dense = np.zeros((regions, cells))
    for r in range(regions):
        _fill_region(rng, dense[r], int(rng.integers(1, 4)), 200, 0.2)
    m = sp.csr_matrix(dense)
    m.sort_indices()
    order = cell_order(csr_runs(m.indptr, m.indices, m.data, cells))
    assert order is not None
    return m, order


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
@pytest.mark.parametrize("seed", range(3))
def test_ordered_table_means_read_from_the_counts_give_the_float64_bits(dtype: type, seed: int) -> None:
    """The zonal sums read from a packed raster's counts through the table of every count's value are,
    bit for bit, those over :func:`canonical_nodata`'s float64 values: with nodata, counts outside the
    range at both ends, negative counts, and an added offset or none."""
    rng = np.random.default_rng(500 + seed)
    info = np.iinfo(dtype)
    cells = 4000
    _, order = _random_order(rng, cells, 30)
    counts = rng.integers(info.min, info.max, size=cells, dtype=dtype, endpoint=True)
    nodata = int(info.min) if info.min < 0 else int(info.max)
    counts[rng.random(cells) < 0.1] = nodata
    lo, hi = int(info.min) + 7, int(info.max) - 11
    counts[rng.integers(0, cells, 40)] = lo - 1
    counts[rng.integers(0, cells, 40)] = hi + 1
    codes = count_codes(counts)
    assert codes.dtype == (np.uint8 if counts.itemsize == 1 else np.uint16)
    for mult, add in [(0.1, 0.0), (0.02, -273.15), (1e-4, 0.5), (3.7, 1e6)]:
        values, nodata_count, out_count = canonical_nodata(counts, nodata, lo, hi, mult, add)
        assert out_count > 0
        assert nodata_count > 0
        assert count_nodata(counts, nodata, lo, hi) == (nodata_count, out_count)
        table = count_table(counts.dtype, nodata, lo, hi, mult, add)
        assert table[codes].tobytes() == values.tobytes()  # every cell's looked-up value is its value
        got = ordered_table_means(order, codes, table)  # type: ignore[arg-type]
        want = ordered_means(order, values)  # type: ignore[arg-type]
        assert np.isnan(values).any()
        assert got[2].any()
        for g, w in zip(got, want, strict=True):
            assert g.tobytes() == w.tobytes()


def test_count_table_is_shared_read_only_and_refuses_other_dtypes() -> None:
    table = count_table(np.dtype(np.int16), -9999, 0, 32767, 0.1, 0.0)
    assert table.shape == (65536,)
    assert not table.flags.writeable
    assert count_table(np.dtype(np.int16), -9999, 0, 32767, 0.1, 0.0) is table  # one per kind of file
    assert np.isnan(table[np.array([-9999, -1], dtype=np.int16).view(np.uint16)]).all()
    assert table[np.array([250], dtype=np.int16).view(np.uint16)][0] == np.float64(250) * 0.1
    with pytest.raises(ValueError, match="no count table"):
        count_table(np.dtype(np.int32), -1, 0, 1, 1.0, 0.0)
    with pytest.raises(ValueError, match="no count table"):
        count_codes(np.zeros(3, dtype=np.int32))


def test_ordered_table_means_refuses_counts_or_tables_that_do_not_fit() -> None:
    rng = np.random.default_rng(9)
    _, order = _random_order(rng, 1000, 5)
    counts = np.zeros(1000, dtype=np.int16)
    table = count_table(counts.dtype, -1, 0, 10, 1.0, 0.0)
    with pytest.raises(ValueError, match="columns"):
        ordered_table_means(order, count_codes(counts[:-1]), table)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="codes"):
        ordered_table_means(order, counts, table)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="table"):
        ordered_table_means(order, count_codes(counts), table[:256])  # type: ignore[arg-type]


def test_ordered_means_splits_runs_too_long_for_their_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run longer than its packed length field holds is stored as consecutive pieces: the same terms
    in the same order, so the same bits; and the packed words decode to the runs they were made from."""
    rng = np.random.default_rng(77)
    cells, regions = 3000, 5
    dense = np.zeros((regions, cells))
    dense[0, 10:2000] = 1.0  # one run of 1,990 cells
    dense[1, 5:900] = 0.25
    dense[1, 900] = 0.5
    dense[2, 900] = 0.5
    dense[2, 901:2999] = 0.75
    dense[4, 2999] = 0.1
    m = sp.csr_matrix(dense)
    x = rng.normal(0.0, 100.0, cells)
    x[rng.random(cells) < 0.1] = np.nan
    runs = csr_runs(m.indptr, m.indices, m.data, cells)
    want = csr_means(m.indptr, m.indices, m.data, x)
    whole = cell_order(runs)
    assert whole is not None
    assert whole.run_lengths.max() == 2098
    monkeypatch.setattr(kernels, "_MAX_LENGTH_BITS", 3)  # at most 7 cells a run
    split = cell_order(runs)
    assert split is not None
    assert split.length_bits == 3
    assert split.run_lengths.max() == 7
    assert split.meta.size > 600
    assert int(split.run_lengths.sum()) == int(whole.run_lengths.sum()) == m.nnz
    assert np.all(np.diff(split.run_cells) >= 0)
    for order in (whole, split):
        got = ordered_means(order, x)
        for g, w in zip(got, want, strict=True):
            assert g.tobytes() == w.tobytes()
    # decoding: the first run of region 1 starts at cell 5, region 4's one cell is the last
    assert split.run_cells[split.run_region == 1][0] == 5
    assert split.run_cells[split.run_region == 4].tolist() == [2999]


def test_cell_order_refuses_a_row_whose_runs_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-canonical row (cells 0-9, then cell 5 again) has ascending first cells, but splitting its
    long run would sort a piece after the lone cell 5 and change the order of additions (1e16 + 1 is
    not 1 + 1e16 in float64): :func:`cell_order` declines such rows, split or not, and the
    region-by-region loop keeps the stored order (found in review)."""
    indptr = np.array([0, 11])
    indices = np.array([*range(10), 5])
    weights = np.ones(11)
    x = np.zeros(10)
    x[5], x[9] = 1.0, 1e16
    runs = csr_runs(indptr, indices, weights, 10)
    want = csr_means(indptr, indices, weights, x)
    assert cell_order(runs) is None
    monkeypatch.setattr(kernels, "_MAX_LENGTH_BITS", 2)
    assert cell_order(runs) is None
    got = run_means(runs, x)
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()


def test_cell_order_refuses_runs_outside_the_columns() -> None:
    runs = csr_runs(np.array([0, 2]), np.array([3, 4]), np.ones(2), 4)  # cell 4 of 4 columns
    with pytest.raises(ValueError, match="outside the 4 columns"):
        cell_order(runs)


def test_cell_order_refuses_rows_stored_out_of_cell_order() -> None:
    """Sorting the runs of a row stored in descending cell order would change its order of additions
    (and so its bits): :func:`cell_order` declines, and the region-by-region loop keeps that order."""
    indptr = np.array([0, 2, 3])
    indices = np.array([10, 3, 5])  # row 0 stores cell 10 before cell 3
    weights = np.array([0.3, 0.7, 1.0])
    runs = csr_runs(indptr, indices, weights, 12)
    assert cell_order(runs) is None
    x = np.arange(12, dtype=np.float64) * 0.1
    got = run_means(runs, x)
    assert got[0][0] == 0.0 + 0.3 * x[10] + 0.7 * x[3]
