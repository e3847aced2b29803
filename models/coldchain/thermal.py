"""First-order thermal model of a payload: fit it to recent readings and forecast the first rule breach.

The simulator (:mod:`models.coldchain.simulator`) moves the payload temperature T by first-order
couplings, ``dT/dt = (T_ambient − T)/τ + q``: the walls pull it toward ambient, a running compressor or
coolant pulls it toward something cold. Over a few hours the couplings hardly change, so T relaxes
exponentially toward one asymptote ``A = T_ambient + q·τ`` (the ambient estimate, shifted by whatever
cooling still works)::

    T(s) = A + (T_now − A)·exp(−s/τ)          s = seconds after the last reading

:func:`fit_first_order` fits (τ, A, T_now) to the readings of a trailing window: for each τ of a fixed
grid the model is linear in (T_now, A), solved in closed form with pairwise sums (no BLAS, no iterative
optimiser), and the τ with the least squared error wins (first on ties). Everything uses IEEE basic
operations and :mod:`models.numerics`, and the figures that leave are quantised
(:func:`models.numerics.quantise`), so every node computes the same bits.

:func:`forecast_breach` extends the record with the fitted trajectory, and with the trajectory shifted by
``z`` standard errors of the fit either way, until ``now + horizon_s``, at the logger's own sampling
interval, and runs the rule engine on each: the first breach it finds, of any kind, is the forecast. The
logger's battery is extrapolated linearly too, so a logger about to go silent forecasts a data gap.
A forecast is an alert only; it never decides a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import numerics as nm
from models.errors import ValidationError

from .profiles import ABSOLUTE_ZERO_C, ProductProfile
from .readings import FloatArray, Readings, make_readings
from .rules import evaluate_rules, may_breach_now

_LOG_STEP = 0.125 * nm.LN2_HI  # eight steps per doubling of τ
#: τ grid, seconds: 15 min to 64 h, uniform in log τ (quantised, so the grid is the same bits everywhere).
TAU_GRID_S: FloatArray = np.asarray(nm.quantise(900.0 * np.asarray(nm.exp(np.arange(65) * _LOG_STEP))))
MIN_POINTS = 4


@dataclass(frozen=True)
class ThermalFit:
    """A first-order fit to a window of readings. °C and seconds.

    ``tau_s``: time constant; ``asymptote_c``: where T is heading (ambient plus what cooling still
    works); ``now_c``: fitted T at the last reading; ``rmse_c``: residual root-mean-square error;
    ``now_sd_c`` / ``slope_sd_c``: standard errors of T_now and of (T_now − A), from the residuals;
    ``n``: readings used.
    """

    tau_s: float
    asymptote_c: float
    now_c: float
    rmse_c: float
    now_sd_c: float
    slope_sd_c: float
    n: int
    _v_mean: float
    _sxx: float

    def predict(self, seconds_ahead: FloatArray) -> FloatArray:
        """Fitted T at ``seconds_ahead`` after the last reading (negative: in the past)."""
        w = np.asarray(nm.exp(-np.asarray(seconds_ahead, dtype=np.float64) / self.tau_s)) - 1.0
        return np.asarray(self.now_c + (self.now_c - self.asymptote_c) * w, dtype=np.float64)

    def predict_sd(self, seconds_ahead: FloatArray) -> FloatArray:
        """Standard error of the fitted mean T at ``seconds_ahead`` (τ taken as known)."""
        w = np.asarray(nm.exp(-np.asarray(seconds_ahead, dtype=np.float64) / self.tau_s)) - 1.0
        sigma2 = self.rmse_c * self.rmse_c
        return np.asarray(np.sqrt(sigma2 * (1.0 / self.n + (w - self._v_mean) ** 2 / self._sxx)))


@dataclass(frozen=True)
class _Solved:
    tau: FloatArray
    c: FloatArray
    d: FloatArray
    sse: FloatArray
    sxx: FloatArray
    v_mean: FloatArray


def _solve(s: FloatArray, temp: FloatArray, taus: FloatArray) -> _Solved:
    """Least squares of T = c + d·v for each τ (rows), v = exp(−s/τ) − 1: 0 at the last reading, growing
    into the past. c = T_now, d = T_now − A. Centred normal equations, reductions along rows (pairwise)."""
    n = s.shape[0]
    v = np.asarray(nm.exp(-s[None, :] / taus[:, None])) - 1.0
    v_mean = np.sum(v, axis=1) / n
    t_mean = float(np.sum(temp)) / n
    dv = v - v_mean[:, None]
    sxx = np.sum(dv * dv, axis=1)
    sxy = np.sum(dv * (temp - t_mean)[None, :], axis=1)
    ok = sxx > 0
    d = np.where(ok, sxy / np.where(ok, sxx, 1.0), 0.0)
    c = t_mean - d * v_mean
    resid = temp[None, :] - (c[:, None] + d[:, None] * v)
    sse = np.where(ok, np.sum(resid * resid, axis=1), np.inf)
    return _Solved(taus, c, d, sse, np.where(ok, sxx, 1.0), v_mean)


def fit_first_order(ts_s: FloatArray, temp_c: FloatArray) -> ThermalFit:
    """Least-squares first-order fit to readings at ``ts_s`` (seconds, increasing) of ``temp_c`` (°C).

    Needs at least :data:`MIN_POINTS` readings spanning a positive time (ValidationError ``too_few``).
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    temp = np.asarray(temp_c, dtype=np.float64)
    n = int(ts.shape[0])
    if n < MIN_POINTS or temp.shape != ts.shape or not ts[-1] > ts[0]:
        raise ValidationError(f"a thermal fit needs {MIN_POINTS} readings over some time", reason="too_few")
    s = ts - ts[-1]  # ≤ 0
    grid = _solve(s, temp, TAU_GRID_S)
    k = int(np.argmin(grid.sse))  # first minimum: deterministic on ties
    best_tau, best_sse = float(TAU_GRID_S[k]), float(grid.sse[k])
    if 0 < k < TAU_GRID_S.shape[0] - 1 and np.all(np.isfinite(grid.sse[k - 1 : k + 2])):
        # Vertex of the parabola through the three grid points around the minimum, in log τ (the grid
        # is uniform in log τ, so the vertex lies within half a step of the middle point).
        lo, mid, hi = (float(x) for x in grid.sse[k - 1 : k + 2])
        curvature = lo - 2.0 * mid + hi
        if curvature > 0:
            shift = 0.5 * (lo - hi) / curvature  # in grid steps, within [−0.5, 0.5]
            tau = float(nm.quantise(TAU_GRID_S[k] * float(nm.exp(shift * _LOG_STEP))))
            refined = _solve(s, temp, np.array([tau]))
            if float(refined.sse[0]) < best_sse:
                best_tau, best_sse = tau, float(refined.sse[0])
    one = _solve(s, temp, np.array([best_tau]))
    sxx, v_mean = float(one.sxx[0]), float(one.v_mean[0])
    sigma2 = float(one.sse[0]) / max(n - 3, 1)
    # Every figure leaves quantised (step-boundary rule of models.numerics).
    q = nm.quantise(
        np.array(
            [
                best_tau,
                float(one.c[0] - one.d[0]),
                float(one.c[0]),
                float(np.sqrt(float(one.sse[0]) / n)),
                float(np.sqrt(sigma2 * (1.0 / n + v_mean * v_mean / sxx))),
                float(np.sqrt(sigma2 / sxx)),
                v_mean,
                sxx,
            ]
        )
    )
    return ThermalFit(
        tau_s=float(q[0]),
        asymptote_c=float(q[1]),
        now_c=float(q[2]),
        rmse_c=float(q[3]),
        now_sd_c=float(q[4]),
        slope_sd_c=float(q[5]),
        n=n,
        _v_mean=float(q[6]),
        _sxx=float(q[7]),
    )


@dataclass(frozen=True)
class BreachForecast:
    """What the thermal forecast expects within the horizon.

    ``breach_at_s``: UNIX second of the first breach forecast (None: none within the horizon);
    ``kind`` its rule kind; ``fit`` the thermal fit (None when too few recent readings to fit).
    """

    breach_at_s: int | None
    kind: str | None
    fit: ThermalFit | None


def _battery_stop(readings: Readings, window_s: float, future: FloatArray) -> int:
    """How many of the ``future`` times (seconds ahead) the battery lasts, extrapolating its recent drain."""
    battery, ts = readings.battery, readings.ts_s.astype(np.float64)
    recent = (ts >= ts[-1] - window_s) & np.isfinite(battery)
    if recent.sum() < 2 or not ts[recent][-1] > ts[recent][0]:
        return int(future.shape[0])
    b, t = battery[recent], ts[recent]
    drain = (b[0] - b[-1]) / (t[-1] - t[0])  # per second
    if not drain > 0:
        return int(future.shape[0])
    return int(np.count_nonzero(b[-1] - drain * future > 0.0))


def band_breaches(
    readings: Readings,
    profile: ProductProfile,
    *,
    horizon_s: int,
    window_s: int,
    spread_z: float,
    delivery_s: int | None = None,
) -> tuple[ThermalFit | None, list[tuple[int, str] | None]]:
    """The fit, and the first breach (UNIX second, kind) within ``horizon_s`` of each forecast band:
    [mean + spread_z·sd, mean, mean − spread_z·sd], or [mean] when ``spread_z`` is 0. None: no breach.

    ``delivery_s``: the scheduled hand-over. When it falls within the horizon the forecast record ends
    there and is judged as delivered, as the rules will judge it (MKT over a record shorter than its
    window, for one, is decided at delivery)."""
    ts = readings.ts_s
    last = int(ts[-1])
    recent = ts >= last - window_s
    if int(recent.sum()) < MIN_POINTS:
        return None, []
    fit = fit_first_order(ts[recent].astype(np.float64), readings.temp_c[recent])
    step = max(int(np.median(np.diff(ts[recent]))), 60)
    ahead = np.arange(step, horizon_s + step, step, dtype=np.float64)
    ahead = ahead[ahead <= horizon_s]
    if ahead.shape[0] == 0:
        return fit, []
    end = last + horizon_s
    delivered = delivery_s is not None and last < delivery_s <= end
    if delivered:
        assert delivery_s is not None
        end = delivery_s
        ahead = ahead[ahead <= delivery_s - last]
    full = int(ahead.shape[0])
    alive = _battery_stop(readings, float(window_s), ahead)
    ahead = ahead[:alive]
    mean = fit.predict(ahead)
    spread = spread_z * fit.predict_sd(ahead)
    found: list[tuple[int, str] | None] = []
    for band in [mean] if spread_z == 0 else [mean + spread, mean, mean - spread]:
        future = np.clip(np.asarray(nm.quantise(band)), ABSOLUTE_ZERO_C + 1.0, 1000.0)
        if alive == full and not delivered and not may_breach_now(profile, future):
            # In-band futures advance no rule but the slow stability budget: skip the rule engine.
            found.append(None)
            continue
        extended = make_readings(
            np.concatenate([ts, last + ahead.astype(np.int64)]),
            np.concatenate([readings.temp_c, future]),
        )
        verdict = evaluate_rules(extended, profile, now=end, delivered=delivered)
        later = [b for b in verdict.breaches if b.at_s > last]
        first = min(later, key=lambda b: (b.at_s, b.kind.value)) if later else None
        found.append(None if first is None else (int(first.at_s), first.kind.value))
    return fit, found


def pick_breach(found: list[tuple[int, str] | None], z: float) -> tuple[int, str] | None:
    """The forecast breach of :func:`band_breaches`' bands for ``z`` (see :func:`forecast_breach`)."""
    if not found:
        return None
    if z == 0:
        found = [found[len(found) // 2]]
    hits = [f for f in found if f is not None]
    if z < 0:
        return max(hits) if len(hits) == len(found) else None
    return min(hits) if hits else None


def forecast_breach(
    readings: Readings,
    profile: ProductProfile,
    *,
    horizon_s: int = 7200,
    window_s: int = 10800,
    z: float = 0.0,
    delivery_s: int | None = None,
) -> BreachForecast:
    """Forecast the first breach within ``horizon_s`` after the last reading of ``readings``.

    The fit uses the readings of the last ``window_s`` seconds. The record is extended by the fitted
    trajectory and, for ``z`` ≠ 0, by the trajectory ± |z| standard errors of the fitted mean, and the
    rule engine runs on each (see the module docstring). ``z`` > 0 is cautious: the earliest breach of
    any of the three. ``z`` < 0 is confident: a breach only when all three reach one, at the latest of
    them (the fit's favourable side must breach too). ``z`` = 0: the fitted trajectory alone.
    ``delivery_s``: the scheduled hand-over, if known (see :func:`band_breaches`).
    """
    fit, found = band_breaches(
        readings, profile, horizon_s=horizon_s, window_s=window_s, spread_z=abs(z), delivery_s=delivery_s
    )
    pick = pick_breach(found, z)
    if pick is None:
        return BreachForecast(None, None, fit)
    return BreachForecast(pick[0], pick[1], fit)
