"""Compiled one-pass loops for the validated read and the zonal product (numba, strict IEEE).

Each loop replaces several full numpy passes with one, and computes every value with the very same
operations, in the very same order, as the numpy/scipy code it replaces, so the bits do not move:

* :func:`canonical_counts`: packed integers → canonical float64 (``float(c) · mult``, then ``+ add`` when
  ``add ≠ 0``: two roundings, as ``multiply(data, mult, dtype=float64)`` then ``+= add``), NaN for nodata
  and for counts outside ``[lo, hi]``, counting both;
* :func:`csr_means`: per region, Σ w·x and Σ w·valid in the CSR order from 0.0 with a nodata cell taken
  as 0 (w·0.0), which is term for term scipy's ``csr_matvec`` over ``where(valid, x, 0)`` and ``valid``.

numba compiles with ``fastmath`` off: no reassociation, no fused multiply-add (LLVM fuses a multiply
and an add only when told it may), no vectorised reductions; the results are the IEEE results on any
CPU. Compiled code is cached on disk (``NUMBA_CACHE_DIR`` or beside this file) when a cache directory is
writable, so a process loads it instead of compiling it; numba itself is imported on first use only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

_lock = threading.Lock()
_compiled: dict[str, Callable[..., Any]] = {}


def _canonical_counts(
    data: Any, invalid: Any, lo: int, hi: int, mult: float, add: float, values: Any
) -> tuple[int, int]:
    nodata = 0
    out = 0
    nan = np.nan
    if add != 0.0:
        for i in range(data.size):
            if invalid[i]:
                nodata += 1
                values[i] = nan
            else:
                c = data[i]
                if c < lo or c > hi:
                    out += 1
                    values[i] = nan
                else:
                    v = np.float64(c) * mult
                    values[i] = v + add
    else:
        for i in range(data.size):
            if invalid[i]:
                nodata += 1
                values[i] = nan
            else:
                c = data[i]
                if c < lo or c > hi:
                    out += 1
                    values[i] = nan
                else:
                    values[i] = np.float64(c) * mult
    return nodata, out


def _csr_means(indptr: Any, indices: Any, weights: Any, x: Any, num: Any, den: Any, gaps: Any) -> None:
    for row in range(indptr.size - 1):
        total = 0.0
        valid = 0.0
        gap = False
        for j in range(indptr[row], indptr[row + 1]):
            w = weights[j]
            v = x[indices[j]]
            if v != v:  # NaN: nodata
                gap = True
                total += w * 0.0
                valid += w * 0.0
            else:
                total += w * v
                valid += w * 1.0
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
    """Compile (or load from the disk cache) both loops now, on tiny inputs; returns the seconds it took.

    A long-lived process (a Dask worker, a backfill) pays this once; call it before timing steady work."""
    import time

    began = time.perf_counter()
    canonical_counts(np.zeros(2, dtype=np.int16), np.zeros(2, dtype=np.bool_), 0, 1, 1.0, 0.0)
    csr_means(
        np.array([0, 1], dtype=np.int32),
        np.array([0], dtype=np.int32),
        np.ones(1, dtype=np.float64),
        np.ones(1, dtype=np.float64),
    )
    return time.perf_counter() - began
