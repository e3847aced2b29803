"""A seedable thermal simulator of cold-chain shipments, with ground truth from the rule engine.

Physics (one lumped payload temperature T per shipment, integrated exactly over 1-minute steps): T relaxes
toward a weighted mean of the sources it is coupled to, each coupling a first-order rate 1/τ:

- the walls, toward ambient (τ_wall: 6–12 h for a reefer container, 10–30 h for a passive shipper);
- a reefer's evaporator while the compressor runs (τ 0.5 h), with on/off hysteresis around the setpoint;
  power failures stop the compressor for 1–12 h, and a stuck thermostat keeps it running (freezing risk);
- a passive shipper's coolant (gel/PCM packs or dry ice, τ 1 h) until its capacity is used up; capacity is
  the hold time in hours against a 25 °C outside, and drains in proportion to the heat leaking in;
- an open door, toward ambient (τ 0.3 h) for 2–10 minutes.

Ambient is a diurnal sine (mean 10–32 °C, amplitude 3–8 K) plus, on some shipments, one hot day
(+5–12 K). The logger samples every ``sample_s`` seconds with Gaussian noise, records whether the door was
opened since the last reading, reports its battery, stops when the battery is empty, and loses readings
to short and occasional long upload gaps. Every shipment is judged by :func:`rules.evaluate_rules` at
delivery, which is the label the breach model learns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import numerics as nm
from models.errors import ValidationError

from .profiles import ProductProfile, load_profile
from .readings import Readings, make_readings
from .rules import RuleVerdict, evaluate_rules

DEFAULT_START_S = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of :func:`simulate_shipments`. Probabilities are per shipment unless noted."""

    n_shipments: int = 200
    seed: int = 0
    sample_s: int = 600
    min_hours: float = 24.0
    max_hours: float = 96.0
    first_start_s: int = DEFAULT_START_S
    start_spacing_s: int = 4 * 3600
    profiles: tuple[str, ...] = ("refrigerated", "frozen", "ultracold", "crt")
    p_reefer: float = 0.55
    p_power_failure: float = 0.3
    p_stuck_thermostat: float = 0.05
    p_hot_day: float = 0.35
    door_openings_per_day: float = 2.0
    p_long_gap: float = 0.06
    p_missing_reading: float = 0.01
    noise_c: float = 0.15


@dataclass(frozen=True, eq=False)
class SimulatedShipment:
    """One simulated shipment: what the logger recorded and what the rules decided at delivery."""

    shipment_id: str
    profile: str
    start_s: int
    delivered_s: int
    readings: Readings
    outcome: RuleVerdict


# (setpoint, evaporator offset K, hysteresis K) for reefers; (coolant °C or None) for passive shippers.
_REEFER = {"refrigerated": (5.0, -10.0, 1.5), "frozen": (-20.0, -12.0, 2.0), "ultracold": (-75.0, -20.0, 4.0)}
_COOLANT = {"refrigerated": 4.0, "frozen": -22.0, "ultracold": -78.5, "crt": None}


def _check(config: SimulatorConfig) -> None:
    if config.n_shipments < 1 or config.sample_s < 60 or config.sample_s % 60:
        raise ValidationError("need n_shipments >= 1 and sample_s a positive multiple of 60", reason="config")
    if not 1.0 <= config.min_hours <= config.max_hours:
        raise ValidationError("need 1 <= min_hours <= max_hours", reason="config")


def simulate_shipments(config: SimulatorConfig | None = None) -> tuple[SimulatedShipment, ...]:
    """Simulate ``config.n_shipments`` shipments. Same config (including ``seed``) → identical output."""
    cfg = config or SimulatorConfig()
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    profiles = {name: load_profile(name) for name in cfg.profiles}
    n = cfg.n_shipments
    step = 60.0
    hours = rng.uniform(cfg.min_hours, cfg.max_hours, n)
    n_steps = int(np.ceil(hours.max() * 3600 / step)) + 1
    t = np.arange(n_steps) * step  # seconds since each shipment's start
    names = rng.choice(np.array(cfg.profiles), n)
    reefer = np.array([nm in _REEFER for nm in names]) & (rng.random(n) < cfg.p_reefer)
    starts = cfg.first_start_s + np.arange(n) * cfg.start_spacing_s + rng.integers(0, 3600, n)
    # Ambient: diurnal sine around a per-shipment mean, plus an optional hot day (a smooth bump).
    amb_mean, amb_amp = rng.uniform(10.0, 32.0, n), rng.uniform(3.0, 8.0, n)
    phase = rng.uniform(0, 86400, n)
    hot = np.where(rng.random(n) < cfg.p_hot_day, rng.uniform(5.0, 12.0, n), 0.0)
    hot_day = rng.uniform(0, np.maximum(hours - 24, 0.0)) * 3600
    tt = t[None, :]
    in_hot = (tt >= hot_day[:, None]) & (tt < hot_day[:, None] + 86400)
    bump = np.where(in_hot, np.square(nm.sin(np.pi * (tt - hot_day[:, None]) / 86400)), 0.0)
    ambient = (
        amb_mean[:, None]
        + amb_amp[:, None] * nm.sin(2 * np.pi * (tt + phase[:, None] + starts[:, None]) / 86400)
        + hot[:, None] * bump
    )
    # Door openings (Poisson arrivals) as a per-step mask.
    door = np.zeros((n, n_steps), dtype=bool)
    for i in range(n):
        for _ in range(rng.poisson(cfg.door_openings_per_day * hours[i] / 24)):
            k = int(rng.integers(0, max(int(hours[i] * 60), 1)))
            door[i, k : k + int(rng.integers(2, 11))] = True
    # Power failures and stuck thermostats as per-step masks (reefers only).
    fail_at = rng.uniform(0, hours * 3600)
    fail_len = rng.uniform(1, 12, n) * 3600
    failed = (rng.random(n) < cfg.p_power_failure) & reefer
    power_off = failed[:, None] & (tt >= fail_at[:, None]) & (tt < (fail_at + fail_len)[:, None])
    stuck_at, stuck_len = rng.uniform(0, hours * 3600), rng.uniform(2, 8, n) * 3600
    stuck = (rng.random(n) < cfg.p_stuck_thermostat) & reefer
    stuck_on = stuck[:, None] & (tt >= stuck_at[:, None]) & (tt < (stuck_at + stuck_len)[:, None])
    tau_wall = np.where(reefer, rng.uniform(6, 12, n), rng.uniform(10, 30, n)) * 3600
    setpoint = np.array([_REEFER.get(nm, (22.5, 0.0, 0.0))[0] for nm in names])
    evap = setpoint + np.array([_REEFER.get(nm, (0.0, -8.0, 0.0))[1] for nm in names])
    hyst = np.array([_REEFER.get(nm, (0.0, 0.0, 1.0))[2] for nm in names])
    coolant_c = np.array([np.nan if _COOLANT[nm] is None else _COOLANT[nm] for nm in names])
    capacity_h = np.where(np.isnan(coolant_c), 0.0, rng.uniform(30, 140, n))
    # Coolant is sized for the shipper: capacity is hold time against a 25 °C outside.
    design_k = np.where(np.isnan(coolant_c), 1.0, 25.0 - np.nan_to_num(coolant_c))
    band_mid = np.array([(profiles[nm].band_low_c + profiles[nm].band_high_c) / 2 for nm in names])
    temp = np.where(reefer, setpoint, np.where(np.isnan(coolant_c), band_mid, coolant_c + 1.0))
    compressor = np.zeros(n, dtype=bool)
    used_h = np.zeros(n)
    series = np.empty((n, n_steps))
    for k in range(n_steps):
        amb = ambient[:, k]
        compressor = np.where(
            temp > setpoint + hyst, True, np.where(temp < setpoint - hyst, False, compressor)
        )
        cooling = reefer & ((compressor & ~power_off[:, k]) | stuck_on[:, k])
        coolant_on = ~reefer & ~np.isnan(coolant_c) & (used_h < capacity_h)
        r_wall = 1.0 / tau_wall
        r_cold = np.where(cooling, 1 / 1800.0, 0.0) + np.where(coolant_on, 1 / 3600.0, 0.0)
        r_door = np.where(door[:, k], 1 / 1080.0, 0.0)
        cold = np.where(cooling, evap, np.nan_to_num(coolant_c))
        rate = r_wall + r_cold + r_door
        target = ((r_wall + r_door) * amb + r_cold * cold) / rate
        temp = target + (temp - target) * nm.exp(-rate * step)
        used_h += np.where(coolant_on, step / 3600 * np.maximum(amb - temp, 0.0) / design_k, 0.0)
        series[:, k] = temp
    return tuple(
        _logger(i, cfg, rng, profiles[str(names[i])], int(starts[i]), hours[i], series[i], door[i])
        for i in range(n)
    )


def _logger(
    i: int,
    cfg: SimulatorConfig,
    rng: np.random.Generator,
    profile: ProductProfile,
    start_s: int,
    hours: float,
    truth: np.ndarray,
    door: np.ndarray,
) -> SimulatedShipment:
    per = cfg.sample_s // 60
    duration_s = int(hours * 3600) // cfg.sample_s * cfg.sample_s
    idx = np.arange(0, duration_s // 60 + 1, per)
    temp = truth[idx] + rng.normal(0.0, cfg.noise_c, idx.shape[0])
    opened = np.array([door[max(k - per + 1, 0) : k + 1].any() for k in idx], dtype=np.float64)
    elapsed_h = idx / 60.0
    battery = np.clip(rng.uniform(0.4, 1.0) - rng.uniform(0.001, 0.009) * elapsed_h, 0.0, 1.0)
    keep = (battery > 0.0) & (rng.random(idx.shape[0]) >= cfg.p_missing_reading)
    keep[0] = True
    if rng.random() < cfg.p_long_gap and idx.shape[0] > 20:
        a = int(rng.integers(5, idx.shape[0] - 10))
        keep[a : a + int(rng.integers(4, 19))] = False
    ts = start_s + idx[keep] * 60
    readings = make_readings(ts, np.round(temp[keep], 2), door_open=opened[keep], battery=battery[keep])
    delivered_s = start_s + duration_s
    outcome = evaluate_rules(readings, profile, now=delivered_s, delivered=True)
    return SimulatedShipment(f"sim-{cfg.seed}-{i:05d}", profile.name, start_s, delivered_s, readings, outcome)


def shipments_to_frame(shipments: tuple[SimulatedShipment, ...]) -> pd.DataFrame:
    """Long table in the training CSV layout: shipment_id, profile, ts (UNIX s), temp_c, door_open,
    battery, delivered_ts (UNIX s, repeated per row)."""
    parts = [
        pd.DataFrame(
            {
                "shipment_id": s.shipment_id,
                "profile": s.profile,
                "ts": s.readings.ts_s,
                "temp_c": s.readings.temp_c,
                "door_open": s.readings.door_open,
                "battery": s.readings.battery,
                "delivered_ts": s.delivered_s,
            }
        )
        for s in shipments
    ]
    return pd.concat(parts, ignore_index=True)
