"""A documented synthetic drought world for training and testing the severity model.

Real labelled data (US Drought Monitor maps joined to satellite indices) is large and licensed per
source; this generator gives the model something with real structure to learn, reproducibly from a
seed. Every region r and month t is simulated as follows (all monthly unless said otherwise):

1. **Climate regime** ``w[t]``: an AR(1) wetness anomaly, ``w[t] = 0.8·w[t-1] + 0.6·ε`` (ε ~ N(0,1)),
   which makes droughts persist for months as real ones do.
2. **Rainfall** (mm): seasonal gamma. The regional mean for calendar month m is
   ``μ_r(m) = base_r·(1 + amp_r·cos(2π(m − peak_r)/12))``; the month's total is
   Gamma(shape k_r, scale μ_r(m)·exp(0.45·w[t])/k_r). Arid regions (small ``base_r``, strong season)
   get exact zero months: with probability ``dry_r(m)`` the month has no rain at all.
3. **Dry spell** (days): 30 days, each wet with probability ``clip(wet_days/30)`` where the expected
   number of wet days grows with the month's rain; the feature is the longest run of dry days.
4. **Land-surface temperature anomaly** (°C): ``1.8·(−w[t]) + N(0, 0.8)`` — dry months are hot.
5. **Soil moisture** (mm, bucket): ``s[t] = 0.75·s[t-1] + rain[t] − 0.35·ET[t]`` with
   ``ET = μ_r(m)·(1 + 0.08·lst_true)`` (the noise-free LST anomaly), floored at 0; the feature is its
   empirical (mid-rank) percentile against the same region and calendar month of the calibration years.
6. **Vegetation**: NDVI responds to soil moisture with a one-month lag,
   ``ndvi[t] = seasonal_r(m) + 0.06·z_sm[t-1] + 0.5·(ndvi anomaly[t-1]) + noise``; the features
   are the NDVI z-score (per region and calendar month) and VHI = ½VCI + ½TCI from NDVI and LST
   against their per-region, per-month min/max, each of VCI and TCI clipped to 0…100 (a month beyond
   the calibration years' range scores as their extreme).
7. **SPI-1/3/6** from the rainfall (``models.drought.spi``), gamma fits on the calibration years.

**Calibration.** Every index above (SPI fits, percentiles, z-score moments, VCI/TCI extremes) is
computed against ``SyntheticConfig.calibration_last_year`` and the years before it only; later months
are scored against that fixed past, as an operational product scores the present. A world whose later
years serve as a holdout must be calibrated on its training years, or the holdout's own values shape
the features it is scored on (look-ahead). ``None`` calibrates on the whole record, which is right only
for a world that is not split in time; ``models.drought.training.train_default`` sets the cut to the
last year before its validation period.

**Labels are synthetic**: a formula of the simulator's latent state, not observed droughts. The drought
blend ``b = 0.40·SPI3 + 0.20·SPI6 + 0.25·Φ⁻¹(SM percentile) + 0.15·z_ndvi_true + N(0, 0.2)``
is cut at the USDM SPI-style thresholds −0.5 (D0), −0.8 (D1), −1.3 (D2), −1.6 (D3), −2.0 (D4); then
5 % of labels move one class up or down (analysts disagree at class boundaries). SPI-3, SPI-6 and the
soil-moisture percentile (through Φ⁻¹) are model features themselves and carry 85 % of the blend's
weight; only the NDVI term is latent (the observed NDVI carries ± 0.02 noise, the LST ± 0.8 °C).
A model trained here therefore learns to recover a known formula of its own inputs: its figures say
the pipeline works, not how well it would match the US Drought Monitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special

from models import numerics as nm
from models.drought.dry_spell import longest_dry_spell
from models.drought.features import CLASSES
from models.drought.soil_moisture import soil_moisture_percentile
from models.drought.spi import spi_cube
from models.drought.vegetation import (
    ndvi_anomaly,
    temperature_condition_index,
    vegetation_condition_index,
)
from models.errors import ValidationError

FloatArray = npt.NDArray[np.float64]

#: Blend thresholds (upper bounds, inclusive) for D0 … D4, in SPI-like units.
LABEL_THRESHOLDS: tuple[float, ...] = (-0.5, -0.8, -1.3, -1.6, -2.0)
LABEL_FLIP_SHARE = 0.05
#: SPI-6 is undefined before the sixth month: that many leading months are dropped from the frame.
_SPIN_UP_MONTHS = 5


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of a synthetic world. ``arid_share`` of regions get many zero-rain months.

    ``calibration_last_year``: the last calendar year (inclusive) whose months calibrate every index
    (see the module docstring); None = the whole record, which leaks a holdout's values into its
    features. It must leave at least two calibration years inside the record.
    """

    n_regions: int = 40
    n_years: int = 30
    start_year: int = 1991
    seed: int = 7
    arid_share: float = 0.25
    calibration_last_year: int | None = None


def record_months(config: SyntheticConfig) -> pd.DatetimeIndex:
    """The months (first day of each) that :func:`generate` returns rows for, oldest first."""
    dates = pd.date_range(f"{config.start_year}-01-01", periods=12 * config.n_years, freq="MS")
    return dates[_SPIN_UP_MONTHS:]


def generate(config: SyntheticConfig | None = None) -> pd.DataFrame:
    """Simulate ``config`` and return one row per region and month.

    Columns: ``date`` (first day of the month), ``region`` (``r000``…), the model features
    (see ``models.drought.features.FEATURES``), ``precip_mm``, ``drought_blend`` (the latent state)
    and ``usdm_class`` ("none", "D0"…"D4"). The first 5 months of each region are dropped because
    SPI-6 is undefined there. Deterministic for a given config.

    :raises ValidationError: ``calibration_last_year`` leaves fewer than two years of the record
        (``reason`` = "calibration").
    """
    config = config or SyntheticConfig()
    rng = np.random.default_rng(config.seed)
    n_months = 12 * config.n_years
    n_reg = config.n_regions
    month = (np.arange(n_months) % 12) + 1
    spi_calibration, calibrating = _calibration(config)

    arid = rng.random(n_reg) < config.arid_share
    base = np.where(arid, rng.uniform(5.0, 25.0, n_reg), rng.uniform(40.0, 140.0, n_reg))
    amp = np.where(arid, rng.uniform(0.7, 0.95, n_reg), rng.uniform(0.1, 0.6, n_reg))
    peak = rng.integers(1, 13, n_reg)
    shape_k = np.where(arid, rng.uniform(0.6, 1.2, n_reg), rng.uniform(1.5, 4.0, n_reg))
    seasonal_mean = base * (1.0 + amp * nm.cos(2.0 * np.pi * (month[:, None] - peak) / 12.0))  # (t, r)

    wetness = np.zeros((n_months, n_reg))
    shocks = rng.standard_normal((n_months, n_reg))
    for t in range(1, n_months):
        wetness[t] = 0.8 * wetness[t - 1] + 0.6 * shocks[t]

    scale = seasonal_mean * nm.exp(0.45 * wetness) / shape_k
    rain = rng.gamma(shape_k, scale)
    # Arid months are often entirely dry: more so in the dry season and in dry regimes.
    dry_prob = np.where(arid, np.clip(0.6 - seasonal_mean / 60.0 - 0.1 * wetness, 0.0, 0.9), 0.0)
    rain = np.where(rng.random((n_months, n_reg)) < dry_prob, 0.0, rain)

    wet_day_prob = np.clip(rain / (rain + 40.0) * 0.9, 0.0, 0.9)
    daily_wet = rng.random((30, n_months, n_reg)) < wet_day_prob
    dry_spell = longest_dry_spell(np.where(daily_wet, 5.0, 0.0), axis=0).astype(np.float64)

    lst_true = 1.8 * (-wetness)
    lst_anomaly = lst_true + rng.normal(0.0, 0.8, (n_months, n_reg))

    soil = np.zeros((n_months, n_reg))
    evapo = seasonal_mean * (1.0 + 0.08 * lst_true)
    soil[0] = base
    for t in range(1, n_months):
        soil[t] = np.maximum(0.75 * soil[t - 1] + rain[t] - 0.35 * evapo[t], 0.0)
    sm_pct = _percentile_by_month(soil, month, calibrating)
    sm_z = special.ndtri(np.clip(sm_pct / 100.0, 0.01, 0.99))

    ndvi_season = 0.25 + 0.3 * np.clip(seasonal_mean / (base * 2.0), 0.0, 1.0) * np.where(arid, 0.5, 1.0)
    ndvi_dev = np.zeros((n_months, n_reg))
    for t in range(1, n_months):
        ndvi_dev[t] = 0.5 * ndvi_dev[t - 1] + 0.06 * sm_z[t - 1] + rng.normal(0.0, 0.01, n_reg)
    ndvi_true = ndvi_season + ndvi_dev
    ndvi_obs = ndvi_true + rng.normal(0.0, 0.02, (n_months, n_reg))
    ndvi_z_true = _zscore_by_month(ndvi_true, month, calibrating)
    ndvi_z_obs = _zscore_by_month(ndvi_obs, month, calibrating)

    vci = _condition(ndvi_obs, month, calibrating, higher_is_better=True)
    tci = _condition(lst_anomaly, month, calibrating, higher_is_better=False)
    vhi = 0.5 * vci + 0.5 * tci

    spi_by_scale = {
        s: spi_cube(rain, scale=s, calibration=spi_calibration, start_year=config.start_year)
        for s in (1, 3, 6)
    }

    blend = (
        0.40 * spi_by_scale[3]
        + 0.20 * spi_by_scale[6]
        + 0.25 * sm_z
        + 0.15 * ndvi_z_true
        + rng.normal(0.0, 0.2, (n_months, n_reg))
    )
    codes = np.zeros(blend.shape, dtype=np.int64)
    for level, threshold in enumerate(LABEL_THRESHOLDS, start=1):
        codes = np.where(blend <= threshold, level, codes)
    flip = rng.random(blend.shape) < LABEL_FLIP_SHARE
    step = np.where(rng.random(blend.shape) < 0.5, -1, 1)
    codes = np.where(flip, np.clip(codes + step, 0, len(CLASSES) - 1), codes)

    dates = pd.date_range(f"{config.start_year}-01-01", periods=n_months, freq="MS")
    columns: dict[str, object] = {
        "date": np.repeat(dates.to_numpy(), n_reg),
        "region": np.tile([f"r{r:03d}" for r in range(n_reg)], n_months),
        "spi_1": spi_by_scale[1].ravel(),
        "spi_3": spi_by_scale[3].ravel(),
        "spi_6": spi_by_scale[6].ravel(),
        "vhi": vhi.ravel(),
        "ndvi_anomaly": ndvi_z_obs.ravel(),
        "dry_spell_days": dry_spell.ravel(),
        "sm_percentile": sm_pct.ravel(),
        "lst_anomaly_c": lst_anomaly.ravel(),
        "month": np.repeat(month, n_reg).astype(np.float64),
        "precip_mm": rain.ravel(),
        "drought_blend": blend.ravel(),
        "usdm_class": np.asarray(CLASSES, dtype=object)[codes.ravel()],
    }
    frame = pd.DataFrame(columns)
    # Canonical quantisation of the training inputs (see models.numerics): the same frame on every CPU.
    for name in frame.columns:
        if frame[name].dtype == np.float64:
            frame[name] = nm.quantise(frame[name].to_numpy())
    frame = frame[frame["date"] >= dates[_SPIN_UP_MONTHS]].dropna(subset=["spi_6"]).reset_index(drop=True)
    return frame


def _calibration(config: SyntheticConfig) -> tuple[tuple[int, int] | None, npt.NDArray[np.bool_]]:
    """The SPI calibration window (years) and the mask of calibration months for ``config``."""
    n_months = 12 * config.n_years
    last = config.calibration_last_year
    if last is None:
        return None, np.ones(n_months, dtype=bool)
    if not config.start_year + 1 <= last < config.start_year + config.n_years:
        raise ValidationError(
            f"calibration_last_year {last} must leave at least two calibration years inside "
            f"{config.start_year}..{config.start_year + config.n_years - 1}",
            reason="calibration",
        )
    years = config.start_year + np.arange(n_months) // 12
    return (config.start_year, last), years <= last


def _percentile_by_month(
    values: FloatArray, month: npt.NDArray[np.int64], calibrating: npt.NDArray[np.bool_]
) -> FloatArray:
    """Mid-rank percentile (0…100) of each value among the same region's calibration values of that
    calendar month."""
    out = np.empty_like(values)
    for m in range(1, 13):
        rows = month == m
        # (calibration years, 1, regions) against (all years, regions): a percentile per year and region.
        climatology = values[rows & calibrating][:, np.newaxis, :]
        out[rows] = soil_moisture_percentile(values[rows], climatology)
    return out


def _zscore_by_month(
    values: FloatArray, month: npt.NDArray[np.int64], calibrating: npt.NDArray[np.bool_]
) -> FloatArray:
    """z-score of each value against the calibration years' mean and sd (ddof 1) of its region and month."""
    out = np.empty_like(values)
    for m in range(1, 13):
        rows = month == m
        out[rows] = ndvi_anomaly(values[rows], values[rows & calibrating])
    return out


def _condition(
    values: FloatArray,
    month: npt.NDArray[np.int64],
    calibrating: npt.NDArray[np.bool_],
    *,
    higher_is_better: bool,
) -> FloatArray:
    """Kogan-style condition index against the calibration years' per-region, per-month min/max,
    clipped to 0…100."""
    out = np.empty_like(values)
    for m in range(1, 13):
        rows = month == m
        climatology = values[rows & calibrating]
        low, high = climatology.min(axis=0), climatology.max(axis=0)
        if higher_is_better:
            out[rows] = vegetation_condition_index(values[rows], low, high)
        else:
            out[rows] = temperature_condition_index(values[rows], low, high)
    clipped: FloatArray = np.clip(out, 0.0, 100.0)
    return clipped
