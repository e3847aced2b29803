"""Training and time-holdout evaluation of the drought severity model.

Training input is a frame with a ``date`` column, the ``FEATURES`` columns and ``usdm_class``
("none", "D0"…"D4" or 0…5): the synthetic world of ``models.drought.synthetic`` or real labelled data.

The split is by time, never random (neighbouring months of a drought are near-copies of each other,
so a random split would leak): the latest ``test_share`` of distinct months is the holdout, the
``valid_share`` before it picks the number of boosting rounds (early stopping), and everything
earlier is training data. Training is deterministic: fixed seed, ``deterministic=True``,
``num_threads=1``, ``force_row_wise=True``; the same frame gives a bit-identical artifact.

Every holdout figure comes with the SPI-3 rule and the training-class prior as baselines, and the
headline figures (accuracy, macro-F1, score MAE) with 95 % intervals from a moving-block bootstrap
over holdout months (:func:`holdout_intervals`): the rows of a month, and of its neighbours, share one
weather, so rows are not independent draws and months are what gets resampled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models import numerics as nm
from models.drought.features import CLASSES, FEATURES, class_codes, feature_matrix
from models.drought.severity import MODEL_NAME
from models.drought.synthetic import SyntheticConfig, generate, record_months
from models.errors import ValidationError
from models.registry import ModelCard, model_id_for, training_data_hash

MODEL_KIND = "lightgbm-multiclass"
MAX_ROUNDS = 60
EARLY_STOPPING_ROUNDS = 10
MIN_ROWS = 200
VALID_SHARE = 0.1
TEST_SHARE = 0.2
#: Moving-block bootstrap of the holdout: blocks of consecutive months (droughts persist for months,
#: so neighbouring months' errors are alike), this many replicates, this seed (same card every run).
BOOTSTRAP_BLOCK_MONTHS = 6
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 17
HEADLINE = ("accuracy", "macro_f1", "score_mae")


def default_params(seed: int) -> dict[str, Any]:
    """LightGBM parameters: small trees (keeps the artifact < 1 MB) and full determinism."""
    return {
        "objective": "multiclass",
        "num_class": len(CLASSES),
        "learning_rate": 0.1,
        "num_leaves": 8,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "force_row_wise": True,
        "verbosity": -1,
    }


@dataclass(frozen=True)
class Metrics:
    """Holdout figures: ``accuracy`` and ``macro_f1`` in [0, 1]; ``log_loss``; ``brier`` (multiclass,
    sum over classes, 0…2); ``score_mae`` = mean |expected score − true level| in classes."""

    accuracy: float
    macro_f1: float
    log_loss: float
    brier: float
    score_mae: float
    rows: int

    def as_dict(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "log_loss": self.log_loss,
            "brier": self.brier,
            "score_mae": self.score_mae,
            "rows": float(self.rows),
        }


@dataclass(frozen=True)
class TrainingResult:
    """The artifact (LightGBM text model, UTF-8), its metrics on the holdout and the baselines'."""

    artifact: bytes
    params: Mapping[str, Any]
    metrics: Metrics
    prior_baseline: Metrics
    spi_rule_baseline: Metrics
    training_data_hash: str
    split: Mapping[str, str]
    best_iteration: int
    sample_sizes: Mapping[str, Mapping[str, int]]
    holdout_ci95: Mapping[str, Any]


def evaluate(proba: np.ndarray, codes: np.ndarray) -> Metrics:
    """Metrics of class probabilities ``proba`` (rows × 6) against integer labels ``codes`` 0…5."""
    levels = np.arange(len(CLASSES))
    predicted = proba.argmax(axis=1)
    onehot = (codes[:, None] == levels[None, :]).astype(np.float64)
    f1s = []
    for k in levels:
        tp = float(np.sum((predicted == k) & (codes == k)))
        fp = float(np.sum((predicted == k) & (codes != k)))
        fn = float(np.sum((predicted != k) & (codes == k)))
        if tp + fp + fn > 0:  # classes absent from both truth and prediction do not count
            f1s.append(2 * tp / (2 * tp + fp + fn))
    eps = 1e-15
    return Metrics(
        accuracy=float(np.mean(predicted == codes)),
        macro_f1=float(np.mean(f1s)),
        log_loss=float(-np.mean(nm.log(np.clip(proba[np.arange(codes.size), codes], eps, 1.0)))),
        brier=float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
        score_mae=float(np.mean(np.abs(nm.weighted_sum(proba, levels) - codes))),
        rows=int(codes.size),
    )


def spi3_rule_proba(frame: pd.DataFrame) -> np.ndarray:
    """The classic rule as a (one-hot) baseline: USDM class from SPI-3 alone (D0 ≤ −0.5 … D4 ≤ −2.0)."""
    spi3 = frame["spi_3"].to_numpy(dtype=np.float64)
    codes = np.zeros(spi3.size, dtype=np.int64)
    for level, threshold in enumerate((-0.5, -0.8, -1.3, -1.6, -2.0), start=1):
        codes = np.where(spi3 <= threshold, level, codes)
    proba = np.full((spi3.size, len(CLASSES)), 0.01 / (len(CLASSES) - 1))
    proba[np.arange(spi3.size), codes] = 0.99
    return proba


def _month_counts(
    predicted: np.ndarray, score: np.ndarray, codes: np.ndarray, month_index: np.ndarray, n_months: int
) -> dict[str, np.ndarray]:
    """Per-month sufficient statistics of the headline figures: rows, hits, Σ|score − level| and the
    per-class tp/fp/fn (months × classes)."""

    def rows_per_month(mask: np.ndarray) -> np.ndarray:
        return np.bincount(month_index[mask], minlength=n_months)

    levels = range(len(CLASSES))
    return {
        "rows": np.bincount(month_index, minlength=n_months),
        "hits": rows_per_month(predicted == codes),
        "tp": np.stack([rows_per_month((predicted == k) & (codes == k)) for k in levels], axis=1),
        "fp": np.stack([rows_per_month((predicted == k) & (codes != k)) for k in levels], axis=1),
        "fn": np.stack([rows_per_month((predicted != k) & (codes == k)) for k in levels], axis=1),
        # bincount adds the weights in row order: one fixed accumulation order on every machine.
        "abs_error": np.bincount(month_index, weights=np.abs(score - codes), minlength=n_months),
    }


def _headline_from_counts(counts: Mapping[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and score MAE of each replicate; ``weights`` (replicates × months) says how
    many times each month was drawn."""
    rows = np.sum(weights * counts["rows"][None, :], axis=1)
    hits = np.sum(weights * counts["hits"][None, :], axis=1)
    abs_error = np.sum(weights * counts["abs_error"][None, :], axis=1)
    tp, fp, fn = (np.sum(weights[:, :, None] * counts[k][None, :, :], axis=1) for k in ("tp", "fp", "fn"))
    denominator = 2 * tp + fp + fn
    # Classes absent from both truth and prediction in a replicate do not count (as in evaluate).
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * tp / denominator, np.nan)
    return {"accuracy": hits / rows, "macro_f1": np.nanmean(f1, axis=1), "score_mae": abs_error / rows}


def holdout_intervals(
    *,
    month_index: np.ndarray,
    codes: np.ndarray,
    model_proba: np.ndarray,
    rule_proba: np.ndarray,
    block_months: int = BOOTSTRAP_BLOCK_MONTHS,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """95 % percentile intervals of the headline figures of a model and of the SPI-3 rule on a holdout,
    and of their paired difference (model − rule, on the same resampled months).

    Moving-block bootstrap: each replicate strings together blocks of ``block_months`` consecutive
    holdout months, each starting at a uniformly drawn month (circularly, so every month is drawn
    equally often), until it has as many months as the holdout; every row of a drawn month comes along.
    Deterministic for a given ``seed``.

    :param month_index: holdout month of each row, 0 … months − 1 in time order.
    :param codes: true levels 0…5 per row; ``model_proba``, ``rule_proba``: rows × 6 probabilities of
        the model and of the SPI-3 rule (:func:`spi3_rule_proba`).
    :returns: ``{"model": {figure: [low, high]}, "baseline_spi3_rule": …, "model_minus_spi3_rule": …}``
        plus ``rows``, ``months``, ``block_months``, ``replicates``, ``seed`` and ``method``.
    """
    n_months = int(month_index.max()) + 1
    block = min(block_months, n_months)
    levels = np.arange(len(CLASSES))
    rng = np.random.default_rng(seed)
    n_blocks = -(-n_months // block)
    starts = rng.integers(0, n_months, size=(replicates, n_blocks))
    drawn = ((starts[:, :, None] + np.arange(block)[None, None, :]) % n_months).reshape(replicates, -1)
    drawn = drawn[:, :n_months]
    weights = np.stack([np.bincount(row, minlength=n_months) for row in drawn])

    figures = {}
    for name, proba in (("model", model_proba), ("baseline_spi3_rule", rule_proba)):
        counts = _month_counts(
            proba.argmax(axis=1), nm.weighted_sum(proba, levels), codes, month_index, n_months
        )
        figures[name] = _headline_from_counts(counts, weights)
    figures["model_minus_spi3_rule"] = {
        k: figures["model"][k] - figures["baseline_spi3_rule"][k] for k in HEADLINE
    }

    def interval(values: np.ndarray) -> list[float]:
        low, high = np.quantile(values, [0.025, 0.975])
        return [float(nm.quantise(low)), float(nm.quantise(high))]

    return {name: {k: interval(stats[k]) for k in HEADLINE} for name, stats in figures.items()} | {
        "rows": int(codes.size),
        "months": n_months,
        "block_months": block,
        "replicates": replicates,
        "seed": seed,
        "method": "moving-block bootstrap over holdout months (circular), 2.5th and 97.5th percentiles",
    }


def time_split(
    dates: pd.Series, *, valid_share: float, test_share: float
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Cut dates (first valid month, first test month) so the latest months form the holdout."""
    months = np.sort(pd.to_datetime(dates).unique())
    if months.size < 10:
        raise ValidationError(
            f"need at least 10 distinct dates for a time split, got {months.size}", reason="too_few_dates"
        )
    n_test = max(1, round(months.size * test_share))
    n_valid = max(1, round(months.size * valid_share))
    return pd.Timestamp(months[-(n_test + n_valid)]), pd.Timestamp(months[-n_test])


def train_severity_model(
    frame: pd.DataFrame, *, seed: int = 42, valid_share: float = VALID_SHARE, test_share: float = TEST_SHARE
) -> TrainingResult:
    """Train on ``frame`` (``date``, ``FEATURES``, ``usdm_class``) with a time-based holdout.

    :raises ValidationError: missing columns, bad labels or features, unparseable dates or too
        little data (``reason`` says which).
    """
    if "date" not in frame.columns or "usdm_class" not in frame.columns:
        raise ValidationError("training data needs 'date' and 'usdm_class' columns", reason="missing_column")
    if len(frame) < MIN_ROWS:
        raise ValidationError(
            f"training data has {len(frame)} rows; need at least {MIN_ROWS}", reason="too_few_rows"
        )
    try:
        dates = pd.to_datetime(frame["date"], utc=False)
    except (ValueError, TypeError) as exc:
        raise ValidationError("column 'date' is not parseable as dates", reason="bad_date") from exc
    # Canonical quantisation of the inputs (models.numerics): real data with more digits than any sensor
    # resolves trains the same model on every machine.
    features = feature_matrix(frame).apply(lambda column: nm.quantise(column.to_numpy()))
    codes = class_codes(frame["usdm_class"])
    # Canonical row order (date, then label and feature values): the artifact depends on the rows,
    # not on the order a file happened to list them in.
    keys = [features[name].to_numpy() for name in reversed(FEATURES)]
    order = np.lexsort((*keys, codes, dates.to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    dates = dates.iloc[order].reset_index(drop=True)
    features = features.iloc[order].reset_index(drop=True)
    codes = codes[order]
    valid_from, test_from = time_split(dates, valid_share=valid_share, test_share=test_share)
    train_rows = (dates < valid_from).to_numpy()
    valid_rows = ((dates >= valid_from) & (dates < test_from)).to_numpy()
    test_rows = (dates >= test_from).to_numpy()

    params = default_params(seed)
    train_set = lgb.Dataset(
        features[train_rows], label=codes[train_rows], params={"verbosity": -1}, free_raw_data=False
    )
    valid_set = lgb.Dataset(features[valid_rows], label=codes[valid_rows], reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = booster.best_iteration or MAX_ROUNDS
    artifact = booster.model_to_string(num_iteration=best).encode("utf-8")

    test_x = features[test_rows].to_numpy()
    proba = np.asarray(lgb.Booster(model_str=artifact.decode()).predict(test_x, num_threads=1))
    prior = np.bincount(codes[train_rows], minlength=len(CLASSES)) / train_rows.sum()
    rule_proba = spi3_rule_proba(frame[test_rows])
    _, test_month_index = np.unique(dates[test_rows].to_numpy(), return_inverse=True)

    def sizes(rows: np.ndarray) -> dict[str, int]:
        return {"rows": int(rows.sum()), "months": int(dates[rows].nunique())}

    return TrainingResult(
        artifact=artifact,
        params=params,
        metrics=evaluate(proba, codes[test_rows]),
        prior_baseline=evaluate(np.tile(prior, (int(test_rows.sum()), 1)), codes[test_rows]),
        spi_rule_baseline=evaluate(rule_proba, codes[test_rows]),
        training_data_hash=training_data_hash(frame[["date", *FEATURES, "usdm_class"]]),
        split={
            "train": f"{dates.iloc[0].date()}..{(valid_from - pd.Timedelta(days=1)).date()}",
            "valid": f"{valid_from.date()}..{(test_from - pd.Timedelta(days=1)).date()}",
            "test": f"{test_from.date()}..{dates.iloc[-1].date()}",
        },
        best_iteration=int(best),
        sample_sizes={"train": sizes(train_rows), "valid": sizes(valid_rows), "test": sizes(test_rows)},
        holdout_ci95=holdout_intervals(
            month_index=test_month_index.astype(np.int64),
            codes=codes[test_rows],
            model_proba=proba,
            rule_proba=rule_proba,
        ),
    )


def model_card(result: TrainingResult, *, description: str, created_at: str | None = None) -> ModelCard:
    """The card for a training result (approval "pending")."""
    return ModelCard(
        name=MODEL_NAME,
        kind=MODEL_KIND,
        model_id_hex=model_id_for(result.artifact).hex(),
        training_data_hash=result.training_data_hash,
        features=FEATURES,
        params=dict(result.params) | {"num_boost_round": result.best_iteration},
        metrics={
            "holdout": result.metrics.as_dict(),
            "baseline_prior": result.prior_baseline.as_dict(),
            "baseline_spi3_rule": result.spi_rule_baseline.as_dict(),
            "holdout_ci95": dict(result.holdout_ci95),
            "sample_sizes": {name: dict(sizes) for name, sizes in result.sample_sizes.items()},
            "split": dict(result.split),
        },
        created_at=created_at or datetime.now(UTC).replace(microsecond=0).isoformat(),
        description=description,
        extra={"classes": list(CLASSES), "score": "sum_k k*p_k, k=0 (none) .. 5 (D4)"},
    )


def calibration_last_year(
    config: SyntheticConfig, *, valid_share: float = VALID_SHARE, test_share: float = TEST_SHARE
) -> int:
    """The last calendar year wholly before the validation period that :func:`train_severity_model`
    cuts from ``generate(config)``: the calibration cut that keeps holdout values out of the features."""
    months = pd.Series(record_months(config))
    valid_from, _ = time_split(months, valid_share=valid_share, test_share=test_share)
    return int(valid_from.year) - 1


def holdout_summary(result: TrainingResult) -> str:
    """One sentence per line of the holdout, model beside the SPI-3 rule, with sizes and 95 % intervals."""
    ci = result.holdout_ci95
    sizes = result.sample_sizes["test"]

    def line(label: str, metrics: Metrics, key: str) -> str:
        parts = [
            f"{name} {getattr(metrics, name):.3f} [{ci[key][name][0]:.3f}, {ci[key][name][1]:.3f}]"
            for name in HEADLINE
        ]
        return f"{label}: " + ", ".join(parts)

    gain = ", ".join(
        f"{name} {getattr(result.metrics, name) - getattr(result.spi_rule_baseline, name):+.3f} "
        f"[{ci['model_minus_spi3_rule'][name][0]:+.3f}, {ci['model_minus_spi3_rule'][name][1]:+.3f}]"
        for name in HEADLINE
    )
    return (
        f"Holdout {result.split['test']}: {sizes['rows']} region-months in {sizes['months']} months; "
        f"95 % intervals from a {ci['block_months']}-month moving-block bootstrap ({ci['replicates']} "
        f"replicates). {line('Model', result.metrics, 'model')}. "
        f"{line('SPI-3 rule', result.spi_rule_baseline, 'baseline_spi3_rule')}. "
        f"Model minus rule: {gain}."
    )


def train_default(*, seed: int = 42, config: SyntheticConfig | None = None) -> tuple[bytes, ModelCard]:
    """Train the shipped default model on the synthetic world (default ``SyntheticConfig()``), its
    indices calibrated on the training years only (:func:`calibration_last_year` unless ``config``
    sets an earlier cut).

    :returns: (artifact bytes, model card).
    :raises ValidationError: ``config.calibration_last_year`` reaches into the validation or test
        months (``reason`` = "look_ahead").
    """
    config = config or SyntheticConfig()
    cut = calibration_last_year(config)
    if config.calibration_last_year is None:
        config = replace(config, calibration_last_year=cut)
    elif config.calibration_last_year > cut:
        raise ValidationError(
            f"calibration_last_year {config.calibration_last_year} reaches past {cut}, the last year "
            "before the validation months: the holdout would calibrate its own features",
            reason="look_ahead",
        )
    result = train_severity_model(generate(config), seed=seed)
    description = (
        "Drought severity (USDM none/D0..D4) from SPI-1/3/6, VHI, NDVI anomaly, dry spell, soil-moisture "
        f"percentile, LST anomaly and month. Trained on models.drought.synthetic ({config}); every index "
        f"calibrated on {config.start_year}..{config.calibration_last_year} only, before the time-based "
        "validation and test months. The labels are a synthetic formula of the simulator's latent state "
        "(a blend of SPI-3, SPI-6, the soil-moisture percentile and the noise-free NDVI z-score, plus "
        "noise and 5 % class flips), not observed droughts; SPI-3, SPI-6 and the soil-moisture "
        "percentile are also model inputs, so these figures measure recovery of a known formula, not "
        f"agreement with the US Drought Monitor. {holdout_summary(result)} Synthetic data only: "
        "recalibrate and re-measure on labelled regional data before real payouts."
    )
    return result.artifact, model_card(result, description=description)
