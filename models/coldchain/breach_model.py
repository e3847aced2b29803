"""LightGBM breach model: (a) will this shipment end up compromised, (b) will a rule fire within 2 hours.

Both models score the features of :mod:`models.coldchain.features` at a reading time. Training rows are the
readings of each shipment *before* its first rule breach (afterwards the rules have decided and there is
nothing left to predict). Labels come from :func:`rules.evaluate_rules` on the full record at delivery:
(a) the shipment has any breach (or the CSV's ``compromised`` column), (b) the first breach fires within
``HORIZON_S`` after the reading.

The holdout is by time: the shipments that started last (``holdout_share`` of them) are held out, never a
random split. Training is deterministic (``deterministic``, one thread, row-wise histograms, fixed seed),
so the same data gives byte-identical artifacts and therefore the same model id.

Training CSV columns (one row per reading): ``shipment_id``, ``profile`` (a profile name), ``ts`` (UNIX
seconds or ISO-8601 UTC), ``temp_c``; optional ``door_open`` (0/1), ``battery`` (0…1), ``delivered_ts``
(UNIX seconds or ISO-8601, constant per shipment; default: last reading + one sampling interval),
``compromised`` (0/1, constant per shipment; default: the rule outcome).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models import numerics as nm
from models.errors import ValidationError
from models.paths import COLDCHAIN_MODEL_DIR

from .. import registry
from .features import FEATURE_NAMES, feature_matrix
from .profiles import ProductProfile, load_profile
from .readings import FloatArray, Readings, make_readings
from .rules import evaluate_rules
from .simulator import SimulatorConfig, shipments_to_frame, simulate_shipments
from .thermal import BreachForecast, forecast_breach

HORIZON_S = 7200
THRESHOLD = 0.5
MODEL_NAME = "coldchain-breach"
ARTIFACT_FORMAT = "coldchain-breach/1"
DEFAULT_ARTIFACT_DIR = COLDCHAIN_MODEL_DIR
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.08,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "num_threads": 1,
    "force_row_wise": True,
    "verbose": -1,
}
NUM_ROUNDS = 120
# Shipment outcome labels repeat over hundreds of correlated rows per shipment: the compromised model
# overfits unless its leaves are large and its trees few.
COMPROMISED_OVERRIDES: dict[str, Any] = {"num_leaves": 7, "min_data_in_leaf": 300, "learning_rate": 0.05}
COMPROMISED_ROUNDS = 60
# The physics forecast beside the model (models.coldchain.thermal), as tuned by bench/early_warning.py on
# the model's validation split of the simulation: fit the last 3 h, warn when all the fit's bands
# (trajectory ± 1 standard error, z = -1) reach a breach within 1 h, or when the model's p(breach within
# 2 h) reaches 0.7.
FORECAST_WINDOW_S = 10800
FORECAST_Z = -1.0
FORECAST_WITHIN_S = 3600
WARNING_P_THRESHOLD = 0.7


@dataclass(frozen=True)
class Factor:
    """One feature's contribution to a score, in log-odds, with the feature's value."""

    feature: str
    contribution: float
    value: float


@dataclass(frozen=True)
class BreachScore:
    """Scores at one reading time: probabilities 0…1 and the top-3 factors of each.

    ``warning``: the early warning, raised by the model (p_breach_2h >= ``WARNING_P_THRESHOLD``) or by
    the thermal forecast (``forecast``: a breach forecast within ``FORECAST_WITHIN_S``).
    ``model_warning``: the model's own warning at ``THRESHOLD`` (what it warned alone). A warning is an
    alert; it never decides a verdict.
    """

    p_compromised: float
    p_breach_2h: float
    warning: bool
    compromised_factors: tuple[Factor, ...]
    warning_factors: tuple[Factor, ...]
    model_warning: bool = False
    forecast: BreachForecast | None = None


@dataclass(frozen=True)
class TrainedModel:
    """A trained artifact (bytes, as stored and hashed) and its model card."""

    artifact: bytes
    card: registry.ModelCard


@dataclass(frozen=True)
class _Rows:
    """Pre-breach feature rows of many shipments, with labels and bookkeeping for the metrics."""

    x: FloatArray
    y_compromised: FloatArray
    y_warn: FloatArray
    shipment: np.ndarray
    ts: np.ndarray
    first_breach: FloatArray
    start: np.ndarray


def _parse_time(column: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValidationError(f"column {name} has missing or non-finite times", reason="bad_csv")
        return np.asarray(values, dtype=np.int64)
    try:
        parsed = pd.to_datetime(column, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"column {name} must be ISO-8601 UTC times or UNIX seconds", reason="bad_csv"
        ) from exc
    if parsed.isna().any():
        raise ValidationError(f"column {name} has empty times", reason="bad_csv")
    return np.asarray((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), dtype=np.int64)


def _column(group: pd.DataFrame, name: str) -> np.ndarray | None:
    return group[name].to_numpy(dtype=np.float64) if name in group else None


def _rows(frame: pd.DataFrame) -> _Rows:
    """Pre-breach feature rows and labels from a long readings table (see the module docstring)."""
    missing = {"shipment_id", "profile", "ts", "temp_c"} - set(frame.columns)
    if missing:
        raise ValidationError(f"training data lacks columns: {', '.join(sorted(missing))}", reason="bad_csv")
    if frame.empty:
        raise ValidationError("training data has no rows", reason="bad_csv")
    work = frame.assign(_ts=_parse_time(frame["ts"], "ts"))
    if "delivered_ts" in frame:
        work = work.assign(_delivered=_parse_time(frame["delivered_ts"], "delivered_ts"))
    profiles: dict[str, ProductProfile] = {}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "yc", "yw", "ship", "ts", "first", "start")}
    for shipment_id, group in work.groupby("shipment_id", sort=True):
        group = group.sort_values("_ts", kind="stable")
        name = str(group["profile"].iloc[0])
        profile = profiles.setdefault(name, load_profile(name))
        readings = make_readings(
            group["_ts"].to_numpy(),
            group["temp_c"].to_numpy(dtype=np.float64),
            door_open=_column(group, "door_open"),
            battery=_column(group, "battery"),
        )
        ts = readings.ts_s
        if "_delivered" in group:
            delivered = int(group["_delivered"].iloc[0])
        else:
            delivered = int(ts[-1] + (ts[-1] - ts[-2] if len(ts) > 1 else 0))
        outcome = evaluate_rules(readings, profile, now=delivered, delivered=True)
        compromised = float(bool(outcome.breaches))
        if "compromised" in group:
            compromised = float(group["compromised"].astype(float).max() > 0)
        first = float(outcome.first_breach_s) if outcome.first_breach_s is not None else np.inf
        before = ts < first  # after the first breach the rules have decided: nothing left to predict
        count = int(before.sum())
        cols["x"].append(feature_matrix(readings, profile)[before])
        cols["yc"].append(np.full(count, compromised))
        cols["yw"].append(((first - ts[before]) <= HORIZON_S).astype(np.float64))
        cols["ship"].append(np.full(count, str(shipment_id), dtype=object))
        cols["ts"].append(ts[before])
        cols["first"].append(np.full(count, first))
        cols["start"].append(np.full(count, int(ts[0])))
    return _Rows(
        x=np.vstack(cols["x"]),
        y_compromised=np.concatenate(cols["yc"]),
        y_warn=np.concatenate(cols["yw"]),
        shipment=np.concatenate(cols["ship"]),
        ts=np.concatenate(cols["ts"]),
        first_breach=np.concatenate(cols["first"]),
        start=np.concatenate(cols["start"]),
    )


def _select(rows: _Rows, mask: np.ndarray) -> _Rows:
    return _Rows(
        rows.x[mask],
        rows.y_compromised[mask],
        rows.y_warn[mask],
        rows.shipment[mask],
        rows.ts[mask],
        rows.first_breach[mask],
        rows.start[mask],
    )


def _fit(x: FloatArray, y: FloatArray, seed: int, *, overrides: dict[str, Any], rounds: int) -> lgb.Booster:
    if len(np.unique(y)) < 2:
        raise ValidationError(
            "training labels are all one class; need breached and clean shipments", reason="labels"
        )
    # Canonical quantisation of the training inputs (models.numerics): the same model on every CPU.
    data = lgb.Dataset(nm.quantise(x), label=y, feature_name=list(FEATURE_NAMES), free_raw_data=False)
    return lgb.train({**PARAMS, **overrides, "seed": seed}, data, num_boost_round=rounds)


def _log_loss(y: FloatArray, p: FloatArray) -> float:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * nm.log(q) + (1 - y) * nm.log(1 - q)))


def _precision_recall(y: FloatArray, p: FloatArray) -> tuple[float, float]:
    predicted = p >= THRESHOLD
    tp = float(np.sum(predicted & (y > 0)))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float((y > 0).sum()), 1.0)
    return precision, recall


def _lead_times(rows: _Rows, p_warn: FloatArray) -> tuple[list[float], int, int, int]:
    """Minutes by which the first warning (within the horizon) precedes the first rule breach.

    Returns (lead minutes per breached shipment warned in advance, breached shipments, clean shipments
    with a warning, clean shipments).
    """
    leads: list[float] = []
    breached = false_alarm = clean = 0
    for sid in np.unique(rows.shipment):
        mine = rows.shipment == sid
        first = float(rows.first_breach[mine][0])
        warned = rows.ts[mine][p_warn[mine] >= THRESHOLD]
        if np.isfinite(first):
            breached += 1
            in_horizon = warned[first - warned <= HORIZON_S]
            if in_horizon.size:
                leads.append((first - float(in_horizon[0])) / 60.0)
        else:
            clean += 1
            false_alarm += int(warned.size > 0)
    return leads, breached, false_alarm, clean


def _metrics(train: _Rows, test: _Rows, comp: lgb.Booster, warn: lgb.Booster) -> dict[str, float]:
    p_comp = np.asarray(comp.predict(test.x), dtype=np.float64)
    p_warn = np.asarray(warn.predict(test.x), dtype=np.float64)
    comp_precision, comp_recall = _precision_recall(test.y_compromised, p_comp)
    warn_precision, warn_recall = _precision_recall(test.y_warn, p_warn)
    leads, breached, false_alarm, clean = _lead_times(test, p_warn)
    base_comp = np.full(len(test.y_compromised), float(train.y_compromised.mean()))
    base_warn = np.full(len(test.y_warn), float(train.y_warn.mean()))
    return {
        "holdout_rows": float(len(test.y_warn)),
        "holdout_shipments": float(len(np.unique(test.shipment))),
        "train_shipments": float(len(np.unique(train.shipment))),
        "compromised_precision": comp_precision,
        "compromised_recall": comp_recall,
        "compromised_log_loss": _log_loss(test.y_compromised, p_comp),
        "compromised_baseline_log_loss": _log_loss(test.y_compromised, base_comp),
        "warning_precision": warn_precision,
        "warning_recall": warn_recall,
        "warning_log_loss": _log_loss(test.y_warn, p_warn),
        "warning_baseline_log_loss": _log_loss(test.y_warn, base_warn),
        "median_lead_time_min": float(np.median(leads)) if leads else 0.0,
        "breached_shipments_warned_share": len(leads) / breached if breached else 0.0,
        "clean_shipments_false_alarm_share": false_alarm / clean if clean else 0.0,
    }


def _artifact(comp: lgb.Booster, warn: lgb.Booster) -> bytes:
    document = {
        "format": ARTIFACT_FORMAT,
        "features": list(FEATURE_NAMES),
        "horizon_s": HORIZON_S,
        "threshold": THRESHOLD,
        "compromised": comp.model_to_string(),
        "early_warning": warn.model_to_string(),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def train(
    frame: pd.DataFrame | None = None,
    *,
    seed: int = 7,
    simulator: SimulatorConfig | None = None,
    holdout_share: float = 0.25,
    created_at: str | None = None,
) -> TrainedModel:
    """Train both models on ``frame`` (CSV layout of the module docstring) or, when None, on simulated
    shipments (``simulator``, default 240 shipments seeded with ``seed``).

    ``holdout_share`` of the shipments, those that started last, are held out for the metrics.
    ``created_at`` (ISO-8601) defaults to the newest reading in the data, so the card is reproducible too.
    Raises ValidationError for malformed data or when either class is missing from the training part.
    """
    if not 0.0 < holdout_share < 1.0:
        raise ValidationError("holdout_share must be between 0 and 1", reason="config")
    if frame is None:
        frame = shipments_to_frame(
            simulate_shipments(simulator or SimulatorConfig(n_shipments=240, seed=seed))
        )
    rows = _rows(frame)
    starts = np.unique(rows.start)
    if starts.shape[0] < 4:
        raise ValidationError("need at least 4 shipments for a time-based holdout", reason="bad_csv")
    cutoff = starts[int(np.floor(starts.shape[0] * (1.0 - holdout_share)))]
    train_rows, test_rows = _select(rows, rows.start < cutoff), _select(rows, rows.start >= cutoff)
    comp = _fit(
        train_rows.x,
        train_rows.y_compromised,
        seed,
        overrides=COMPROMISED_OVERRIDES,
        rounds=COMPROMISED_ROUNDS,
    )
    warn = _fit(train_rows.x, train_rows.y_warn, seed, overrides={}, rounds=NUM_ROUNDS)
    artifact = _artifact(comp, warn)
    stamp = created_at or datetime.fromtimestamp(int(rows.ts.max()), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    card = registry.ModelCard(
        name=MODEL_NAME,
        kind="coldchain",
        model_id_hex=registry.model_id_for(artifact).hex(),
        training_data_hash=registry.training_data_hash(frame),
        features=FEATURE_NAMES,
        params={
            **PARAMS,
            "seed": seed,
            "num_boost_round": NUM_ROUNDS,
            "compromised_overrides": {**COMPROMISED_OVERRIDES, "num_boost_round": COMPROMISED_ROUNDS},
            "horizon_s": HORIZON_S,
            "threshold": THRESHOLD,
            "holdout": f"last {holdout_share:.0%} of shipments by start time",
        },
        metrics=_metrics(train_rows, test_rows, comp, warn),
        created_at=stamp,
        description=(
            "LightGBM pair for cold-chain shipments: p(compromised) and p(rule breach within 2 h), scored on "
            "features at a reading time before any breach. Labels from the rule engine; time-based holdout."
        ),
    )
    return TrainedModel(artifact=artifact, card=card)


def train_default(directory: Path = DEFAULT_ARTIFACT_DIR, *, seed: int = 7) -> tuple[Path, TrainedModel]:
    """Train on the default simulation and save artifact + card into ``directory`` via the registry."""
    trained = train(seed=seed)
    return registry.save_model(directory, artifact=trained.artifact, card=trained.card), trained


@dataclass(frozen=True)
class BreachModel:
    """A loaded artifact, ready to score."""

    compromised: lgb.Booster
    early_warning: lgb.Booster
    model_id_hex: str


def load_breach_model(artifact: bytes) -> BreachModel:
    """Parse artifact bytes; ValidationError(``bad_artifact``) when they are not a breach-model artifact."""
    try:
        document = json.loads(artifact)
        if document.get("format") != ARTIFACT_FORMAT or tuple(document["features"]) != FEATURE_NAMES:
            raise ValueError("format or feature list does not match this code")
        comp = lgb.Booster(model_str=document["compromised"])
        warn = lgb.Booster(model_str=document["early_warning"])
    except (ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as exc:
        raise ValidationError(
            f"not a cold-chain breach model artifact: {exc}", reason="bad_artifact"
        ) from exc
    return BreachModel(comp, warn, registry.model_id_for(artifact).hex())


def _top3(contrib: FloatArray, values: FloatArray) -> tuple[Factor, ...]:
    shares = contrib[:-1]  # the last column is the bias
    order = sorted(range(len(FEATURE_NAMES)), key=lambda i: (-abs(float(shares[i])), i))[:3]
    return tuple(Factor(FEATURE_NAMES[i], float(shares[i]), float(values[i])) for i in order)


def warning_forecast(
    readings: Readings, profile: ProductProfile, *, delivery_s: int | None = None
) -> BreachForecast:
    """The thermal forecast the live warning uses, at the last reading of ``readings``.

    ``delivery_s``: the shipment's scheduled hand-over (UNIX seconds; the expected delivery the parties
    agreed on in the escrow terms), or None when the terms carry none. A schedule within the horizon ends
    the forecast record there, judged as delivered (see :func:`thermal.band_breaches`): a breach forecast
    after the hand-over does not warn, and a rule the hand-over decides (MKT over a short record) does.
    """
    return forecast_breach(
        readings,
        profile,
        horizon_s=HORIZON_S,
        window_s=FORECAST_WINDOW_S,
        z=FORECAST_Z,
        delivery_s=delivery_s,
    )


def warns(p_breach_2h: float, forecast: BreachForecast, last_s: int) -> bool:
    """The early-warning rule: the model's p(breach within 2 h) reaches ``WARNING_P_THRESHOLD``, or the
    thermal forecast reaches a breach within ``FORECAST_WITHIN_S`` of the last reading (``last_s``)."""
    physics = forecast.breach_at_s is not None and forecast.breach_at_s - last_s <= FORECAST_WITHIN_S
    return p_breach_2h >= WARNING_P_THRESHOLD or physics


def score(
    model: BreachModel, readings: Readings, profile: ProductProfile, *, delivery_s: int | None = None
) -> BreachScore:
    """Score at the last reading of ``readings`` (all readings so far), with each model's top-3 factors.

    ``delivery_s``: the scheduled hand-over, passed to the thermal forecast (:func:`warning_forecast`)."""
    row = feature_matrix(readings, profile)[-1:]
    p_comp = float(model.compromised.predict(row)[0])
    p_warn = float(model.early_warning.predict(row)[0])
    comp_contrib = np.asarray(model.compromised.predict(row, pred_contrib=True), dtype=np.float64)[0]
    warn_contrib = np.asarray(model.early_warning.predict(row, pred_contrib=True), dtype=np.float64)[0]
    forecast = warning_forecast(readings, profile, delivery_s=delivery_s)
    return BreachScore(
        p_compromised=p_comp,
        p_breach_2h=p_warn,
        warning=warns(p_warn, forecast, int(readings.ts_s[-1])),
        compromised_factors=_top3(comp_contrib, row[0]),
        warning_factors=_top3(warn_contrib, row[0]),
        model_warning=p_warn >= THRESHOLD,
        forecast=forecast,
    )
