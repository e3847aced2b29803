"""Elementary functions and quantisation that give the same bits on every CPU and thread count.

Why this exists: numpy picks a SIMD code path for ``exp``, ``log``, ``sin``, ``cos`` and ``power`` by the
CPU it finds (AVX-512 machines take SVML kernels, others libm or their own polynomials), and those paths
differ in the last bits. Whatever is hashed, signed or used to train must not: k honest nodes on different
hardware have to compute the same report digest, or no k-of-n signature ever forms.

**The rule** (applied everywhere a value is hashed, signed or trained on):

1. *Operations with defined rounding.* Only IEEE-754 basic operations (``+ − × ÷``, ``sqrt``, comparisons,
   ``floor``/``rint``, ``frexp``/``ldexp``) are used directly: IEEE fixes their result to the bit, on every
   CPU and SIMD width. Transcendental functions come from this module, which builds them out of those
   operations only (range reduction with split constants, then a fixed polynomial evaluated by Horner's
   rule in a fixed order). Reductions (``sum``, ``mean``) use numpy's pairwise summation, whose order
   does not depend on the CPU; BLAS (``@``, ``dot``) and ``einsum`` are not used on such values, because
   BLAS kernels and thread counts change the order of accumulation.
2. *Canonical quantisation at step boundaries.* Every float that leaves a decision step, and every
   float column of a training frame, is rounded to :data:`SIGNIFICANT_DIGITS` significant decimal digits
   with exact constants and IEEE operations (:func:`quantise`). What remains outside rule 1
   (compiled special functions in SciPy, LightGBM's own ``exp``) then has to move a value across a
   rounding boundary of 1e-9 relative before any digest changes.

Accuracy: ``exp``, ``log``, ``sin`` and ``cos`` are within 2 ulp of the correctly rounded result over
their documented domains (tested against ``math`` with hypothesis). They are about as fast as numpy's own
non-SIMD paths.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SIGNIFICANT_DIGITS = 9


def _split(value: Decimal, bits: int) -> tuple[float, Decimal]:
    """The float nearest ``value`` truncated to ``bits`` significant bits, and what is left over."""
    head = float(value)
    mantissa, exponent = np.frexp(head)
    head = float(np.ldexp(np.trunc(np.ldexp(mantissa, bits)), int(exponent) - bits))
    return head, value - Decimal(head)


with localcontext() as _ctx:
    _ctx.prec = 60
    _LN2 = Decimal(2).ln()
    # π to 60 digits: a constant, not a computation.
    _PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494")
    # ln 2 in two parts: k·LN2_HI is exact for |k| < 2**21 because LN2_HI has 32 significant bits.
    LN2_HI, _rest = _split(_LN2, 32)
    LN2_LO = float(_rest)
    INV_LN2 = float(1 / _LN2)
    # π/2 in three parts of 33 bits each: k·part is exact for |k| < 2**20.
    PIO2_1, _rest = _split(_PI / 2, 33)
    PIO2_2, _rest = _split(_rest, 33)
    PIO2_3 = float(_rest)
    TWO_OVER_PI = float(2 / _PI)

#: 1/k! for k = 0…17, as floats (exact decimal → correctly rounded float).
_INV_FACT = [float(Decimal(1) / Decimal(math.factorial(k))) for k in range(18)]

EXP_MAX = 709.782712893384  # exp overflows above this
EXP_MIN = -745.1332191019412  # exp underflows to 0 below this
TRIG_MAX = float(np.ldexp(1.0, 20))  # |x| bound for sin/cos: beyond it the reduction is no longer exact


def _as_array(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _horner(r: FloatArray, coefficients: list[float]) -> FloatArray:
    """Σ c_i·r^i with ``coefficients`` from the highest power down, in one fixed order."""
    acc = np.full_like(r, coefficients[0])
    for c in coefficients[1:]:
        acc = acc * r + c
    return acc


def exp(x: npt.ArrayLike) -> Any:
    """e**x, elementwise. Overflows to inf above ~709.78 and to 0 below ~-745.13; nan stays nan.

    Returns a float for a scalar argument and an array otherwise, like the numpy ufunc.
    """
    a = _as_array(x)
    with np.errstate(invalid="ignore", over="ignore"):
        k = np.rint(a * INV_LN2)
        k = np.where(np.isfinite(k), k, 0.0)
        r = (a - k * LN2_HI) - k * LN2_LO  # |r| ≤ ln2/2, exact reduction for |k| < 2**21
        # e**r = 1 + r + r²·(1/2! + r/3! + … + r^11/13!): truncation error < 4e-18 for |r| ≤ 0.35.
        tail = _horner(r, _INV_FACT[13:1:-1])
        er = 1.0 + (r + r * r * tail)
        out = np.ldexp(er, k.astype(np.int64))
        out = np.where(a > EXP_MAX, np.inf, out)
        out = np.where(a < EXP_MIN, 0.0, out)
        out = np.where(np.isnan(a), np.nan, out)
    return out if out.ndim else float(out)


def log(x: npt.ArrayLike) -> Any:
    """Natural logarithm, elementwise: -inf at 0, nan below 0 and for nan, inf at inf."""
    a = _as_array(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where((a > 0) & np.isfinite(a), a, 1.0)
        m, e = np.frexp(safe)  # safe = m·2**e, m in [0.5, 1)
        low = m < 0.7071067811865476
        m = np.where(low, m * 2.0, m)  # exact
        e = np.where(low, e - 1, e).astype(np.float64)
        f = m - 1.0  # exact (Sterbenz): m in [0.707, 1.414)
        s = f / (2.0 + f)  # log(m) = 2·atanh(s), |s| ≤ 0.1716
        z = s * s
        # 2·atanh(s) = 2s + 2s·(z/3 + z²/5 + … + z^11/23)
        odd = [1.0 / (2 * n + 1) for n in range(11, 0, -1)]
        series = _horner(z, [*odd, 0.0])
        hfsq = 0.5 * f * f
        log_m = f - (hfsq - s * (hfsq + 2.0 * series))  # == 2·atanh(s); f − hfsq + s·hfsq is 2s
        out = (e * LN2_LO + log_m) + e * LN2_HI
        out = np.where(a == 0, -np.inf, out)
        out = np.where(a < 0, np.nan, out)
        out = np.where(np.isposinf(a), np.inf, out)
        out = np.where(np.isnan(a), np.nan, out)
    return out if out.ndim else float(out)


def _reduce_quadrant(a: FloatArray) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    if np.any(np.abs(a[np.isfinite(a)]) > TRIG_MAX):
        raise ValueError(f"sin/cos arguments must stay within ±{TRIG_MAX:g} for an exact reduction")
    k = np.rint(np.where(np.isfinite(a), a, 0.0) * TWO_OVER_PI)
    r = ((a - k * PIO2_1) - k * PIO2_2) - k * PIO2_3  # |r| ≤ π/4 (+ a hair)
    return r, np.mod(k.astype(np.int64), 4)


def _sin_poly(r: FloatArray) -> FloatArray:
    z = r * r
    # sin r = r + r·z·(−1/3! + z/5! − … + z^7/17!)
    coefficients = [(-1.0) ** n * _INV_FACT[2 * n + 1] for n in range(8, 0, -1)]
    return r + r * z * _horner(z, coefficients)


def _cos_poly(r: FloatArray) -> FloatArray:
    z = r * r
    # cos r = 1 − z/2 + z²·(1/4! − z/6! + … + z^6/16!)
    coefficients = [(-1.0) ** n * _INV_FACT[2 * n] for n in range(8, 1, -1)]
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + z * z * _horner(z, coefficients))


def sin(x: npt.ArrayLike) -> Any:
    """Sine of radians, elementwise, for |x| ≤ 2**20 (ValueError beyond); nan for inf and nan."""
    a = _as_array(x)
    with np.errstate(invalid="ignore"):
        r, q = _reduce_quadrant(np.atleast_1d(a))
        s, c = _sin_poly(r), _cos_poly(r)
        out = np.select([q == 0, q == 1, q == 2], [s, c, -s], -c)
        out = np.where(np.isfinite(np.atleast_1d(a)), out, np.nan)
    return out.reshape(a.shape) if a.ndim else float(out[0])


def cos(x: npt.ArrayLike) -> Any:
    """Cosine of radians, elementwise, for |x| ≤ 2**20 (ValueError beyond); nan for inf and nan."""
    a = _as_array(x)
    with np.errstate(invalid="ignore"):
        r, q = _reduce_quadrant(np.atleast_1d(a))
        s, c = _sin_poly(r), _cos_poly(r)
        out = np.select([q == 0, q == 1, q == 2], [c, -s, -c], s)
        out = np.where(np.isfinite(np.atleast_1d(a)), out, np.nan)
    return out.reshape(a.shape) if a.ndim else float(out[0])


def power(base: npt.ArrayLike, exponent: npt.ArrayLike) -> Any:
    """base**exponent for base > 0 as exp(exponent·log(base)); the relative error grows with
    |exponent·log(base)| (a few ulp for results between 1e-300 and 1e300). A base ≤ 0 gives nan,
    except 0**y = 0 for y > 0 and 1 for y = 0."""
    b, y = np.broadcast_arrays(_as_array(base), _as_array(exponent))
    with np.errstate(invalid="ignore", over="ignore"):
        out = _as_array(exp(y * log(np.where(b > 0, b, 1.0))))
        out = np.where(b > 0, out, np.nan)
        out = np.where((b == 0) & (y > 0), 0.0, out)
        out = np.where((b == 0) & (y == 0), 1.0, out)
    return out if out.ndim else float(out)


#: 10**k for k = -330…330, each the correctly rounded float of the decimal literal (no pow() involved).
_POW10 = np.array([float(f"1e{k}") for k in range(-330, 331)])
_QUANTISE_RANGE = (1e-280, 1e280)  # outside it values pass unchanged (no scale would stay finite)


def _quantise_array(a: FloatArray, digits: int) -> FloatArray:
    magnitude = np.abs(a)
    ok = np.isfinite(a) & (magnitude >= _QUANTISE_RANGE[0]) & (magnitude <= _QUANTISE_RANGE[1])
    _, e = np.frexp(np.where(ok, magnitude, 1.0))
    # floor((e − 1)·log10 2) in exact integer arithmetic (78913 / 2**18 ≈ log10 2; exact for |e| < 2**11).
    decade = ((e.astype(np.int64) - 1) * 78913) >> 18
    shift = digits - 1 - decade  # x·10**shift has `digits` or `digits + 1` digits before the point
    up = _POW10[np.clip(shift, -330, 330) + 330]
    down = _POW10[np.clip(-shift, -330, 330) + 330]
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.where(shift >= 0, np.rint(a * up) / up, np.rint(a / down) * down)
    return np.where(ok, q, a)


def quantise(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """Round every float in ``value`` (a float, numpy scalar or array, or dicts/lists/tuples of them) to
    ``digits`` (or, just above a power of ten, ``digits`` + 1) significant decimal digits, half to even.

    Only IEEE basic operations with exact constants are used (the scale is picked from the binary
    exponent, then ``rint(x·10**s)/10**s``), so the result is the same bits on every machine. Values of
    magnitude below 1e-280 or above 1e280, non-finite floats, ints, bools, strings and None pass
    through unchanged.
    """
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float | np.floating):
        return float(_quantise_array(np.array([float(value)]), digits)[0])
    if isinstance(value, np.ndarray):
        if value.dtype != np.float64:
            return value
        return _quantise_array(value, digits)
    if isinstance(value, dict):
        return {k: quantise(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(quantise(v, digits) for v in value)
    return value


def weighted_sum(weights: npt.ArrayLike, values: npt.ArrayLike) -> FloatArray:
    """Σ_j weights[..., j]·values[..., j] over the last axis, in numpy's fixed pairwise order (no BLAS)."""
    return np.asarray(np.sum(_as_array(weights) * _as_array(values), axis=-1), dtype=np.float64)
