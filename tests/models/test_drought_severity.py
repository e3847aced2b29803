"""The drought severity model: deterministic training, a real gain over baselines, scores and factors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models.drought.features import CLASSES, FEATURES
from models.drought.severity import DEFAULT_MODEL_DIRECTORY, DroughtSeverityModel, load_shipped
from models.drought.spi import spi_cube
from models.drought.synthetic import SyntheticConfig, generate
from models.drought.training import (
    HEADLINE,
    TrainingResult,
    calibration_last_year,
    holdout_intervals,
    time_split,
    train_default,
    train_severity_model,
)
from models.registry import model_id_for
from oracle.errors import ValidationError

_BASE = SyntheticConfig(n_regions=16, n_years=20, seed=11)
# Indices calibrated on the training years only, as train_default does: no look-ahead into the holdout.
SMALL = replace(_BASE, calibration_last_year=calibration_last_year(_BASE))


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    return generate(SMALL)


@pytest.fixture(scope="module")
def trained(world: pd.DataFrame) -> TrainingResult:
    return train_severity_model(world, seed=3)


def test_synthetic_world_is_reproducible_and_varied(world: pd.DataFrame) -> None:
    again = generate(SMALL)
    pd.testing.assert_frame_equal(world, again)
    assert set(world["usdm_class"]) == set(CLASSES)
    assert (world["precip_mm"] == 0.0).mean() > 0.03  # arid regions have dry months
    assert world[list(FEATURES)].notna().all().all()
    # Labels follow the latent state: D2+ months are much drier than "none" months.
    dry = world[world["usdm_class"].isin(["D2", "D3", "D4"])]
    assert dry["spi_3"].mean() < world[world["usdm_class"] == "none"]["spi_3"].mean() - 1.0


def test_indices_are_calibrated_on_the_training_years_only(world: pd.DataFrame) -> None:
    cut = SMALL.calibration_last_year
    assert cut is not None
    valid_from, _ = time_split(world["date"], valid_share=0.1, test_share=0.2)
    assert cut == valid_from.year - 1  # the last whole year before the validation months
    # SPI: gamma fits on the calibration years, not on the whole record. The frame starts in June 1991,
    # so its own 3-month sums reproduce every calibration sum of the calendar months August…December.
    rain = world.pivot(index="date", columns="region", values="precip_mm")
    spi3 = world.pivot(index="date", columns="region", values="spi_3").to_numpy()
    late = np.asarray(rain.index.month >= 8)
    fits = {
        "calibration years": spi_cube(rain.to_numpy(), scale=3, calibration=(1991, cut), start_year=1991),
        "whole record": spi_cube(rain.to_numpy(), scale=3),
    }
    assert np.allclose(spi3[late], fits["calibration years"][late], rtol=1e-8, atol=1e-8)
    assert not np.allclose(spi3[late], fits["whole record"][late], atol=1e-3)
    # Mid-rank percentiles and z-scores against a climatology average exactly 50 and 0 over that
    # climatology's own years: over the calibration years they do, over the later years they need not
    # (calendar months June…December, whose calibration years are all in the frame).
    summer_on = world[world["date"].dt.month >= 6]
    by_cell = summer_on.groupby(
        [summer_on["region"], summer_on["date"].dt.month, summer_on["date"].dt.year <= cut]
    )
    pct = by_cell["sm_percentile"].mean().unstack()
    z = by_cell["ndvi_anomaly"].mean().unstack()
    assert np.allclose(pct[True], 50.0, atol=1e-6)
    assert np.allclose(z[True], 0.0, atol=1e-6)
    assert not np.allclose(pct[False], 50.0, atol=1.0)
    assert world["vhi"].between(0.0, 100.0).all()  # VCI/TCI beyond the calibration range are clipped
    with pytest.raises(ValidationError) as error:
        generate(replace(SMALL, calibration_last_year=1991))  # one year is no climatology
    assert error.value.reason == "calibration"
    with pytest.raises(ValidationError) as error:
        train_default(config=replace(SMALL, calibration_last_year=cut + 1))
    assert error.value.reason == "look_ahead"


def test_training_is_bit_identical(world: pd.DataFrame, trained: TrainingResult) -> None:
    again = train_severity_model(world.copy(), seed=3)
    assert again.artifact == trained.artifact
    assert again.training_data_hash == trained.training_data_hash
    # Row order of the input does not matter: training puts rows in a canonical order.
    shuffled = world.sample(frac=1.0, random_state=0)
    assert train_severity_model(shuffled, seed=3).artifact == trained.artifact
    assert train_severity_model(world, seed=4).artifact != trained.artifact


def test_beats_trivial_baselines_on_time_holdout(trained: TrainingResult) -> None:
    m, prior, rule = trained.metrics, trained.prior_baseline, trained.spi_rule_baseline
    assert m.rows == prior.rows == rule.rows > 300
    assert m.log_loss < 0.7 * prior.log_loss
    assert m.brier < 0.7 * prior.brier
    assert m.macro_f1 > prior.macro_f1 + 0.2
    assert m.macro_f1 > rule.macro_f1
    assert m.score_mae < rule.score_mae
    assert m.accuracy > prior.accuracy
    train, test = trained.split["train"], trained.split["test"]
    assert train.split("..")[1] < test.split("..")[0]  # the holdout is strictly later
    # The gain over the SPI-3 rule is more than resampling noise: the paired 95 % interval excludes 0.
    gain = trained.holdout_ci95["model_minus_spi3_rule"]
    assert gain["accuracy"][0] > 0.0
    assert gain["score_mae"][1] < 0.0


def test_holdout_intervals_come_with_sample_sizes(trained: TrainingResult) -> None:
    ci, sizes = trained.holdout_ci95, trained.sample_sizes
    assert ci["rows"] == sizes["test"]["rows"] == trained.metrics.rows
    assert ci["months"] == sizes["test"]["months"] == 47  # 20 % of 235 months
    assert sizes["train"]["rows"] + sizes["valid"]["rows"] + sizes["test"]["rows"] == 16 * 235
    for key, metrics in (("model", trained.metrics), ("baseline_spi3_rule", trained.spi_rule_baseline)):
        for name in HEADLINE:
            low, high = ci[key][name]
            assert low <= getattr(metrics, name) <= high, (key, name)
            assert high - low < 0.2


def test_block_bootstrap_is_deterministic_and_paired() -> None:
    rng = np.random.default_rng(0)
    months = np.repeat(np.arange(24), 10)
    codes = rng.integers(0, 6, months.size)
    proba = rng.dirichlet(np.ones(6), months.size)
    other = rng.dirichlet(np.ones(6), months.size)
    once = holdout_intervals(month_index=months, codes=codes, model_proba=proba, rule_proba=other)
    assert once == holdout_intervals(month_index=months, codes=codes, model_proba=proba, rule_proba=other)
    assert once != holdout_intervals(
        month_index=months, codes=codes, model_proba=proba, rule_proba=other, seed=1
    )
    assert (once["rows"], once["months"]) == (240, 24)
    # The same predictions on the same resampled months: the difference is exactly 0 in every replicate.
    same = holdout_intervals(month_index=months, codes=codes, model_proba=proba, rule_proba=proba)
    assert all(same["model_minus_spi3_rule"][name] == [0.0, 0.0] for name in HEADLINE)
    # A perfect model is perfect in every resample.
    perfect = np.eye(6)[codes]
    exact = holdout_intervals(month_index=months, codes=codes, model_proba=perfect, rule_proba=other)
    assert exact["model"] == {"accuracy": [1.0, 1.0], "macro_f1": [1.0, 1.0], "score_mae": [0.0, 0.0]}


def test_predict_scores_and_top_factors(world: pd.DataFrame, trained: TrainingResult) -> None:
    model = DroughtSeverityModel.load(trained.artifact)
    rows = world.tail(400).reset_index(drop=True)
    scores = model.predict(rows)
    assert len(scores) == 400
    for score in scores:
        assert set(score.probabilities) == set(CLASSES)
        assert sum(score.probabilities.values()) == pytest.approx(1.0)
        expected = sum(k * score.probabilities[name] for k, name in enumerate(CLASSES))
        assert score.score == pytest.approx(expected)
        assert 0.0 <= score.score <= 5.0
        assert len(score.top_factors) == 3
        assert len({f.feature for f in score.top_factors}) == 3
        magnitudes = [abs(f.contribution) for f in score.top_factors]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert all(f.feature in FEATURES for f in score.top_factors)
    worst = max(range(400), key=lambda i: scores[i].score)
    calm = min(range(400), key=lambda i: scores[i].score)
    assert rows.loc[worst, "drought_blend"] < rows.loc[calm, "drought_blend"]
    # The most severe row is pushed up by its factors, the calmest pulled down.
    assert scores[worst].top_factors[0].contribution > 0
    assert scores[calm].top_factors[0].contribution < 0


def test_factor_attribution_is_the_softmax_linearisation(
    trained: TrainingResult, world: pd.DataFrame
) -> None:
    """Σ_f contribution_f ≈ S(x) − S(bias only) to first order; check the sign and size agree."""
    model = DroughtSeverityModel.load(trained.artifact)
    rows = world.tail(200).reset_index(drop=True)
    scores = model.predict(rows)
    booster = model.booster
    matrix = rows[list(FEATURES)].to_numpy()
    contrib = np.asarray(booster.predict(matrix, pred_contrib=True)).reshape(
        len(rows), len(CLASSES), len(FEATURES) + 1
    )
    proba = model.predict_proba(rows)
    levels = np.arange(len(CLASSES))
    expected = (proba * (levels - (proba @ levels)[:, None]))[:, :, None] * contrib[:, :, :-1]
    for i, score in enumerate(scores):
        for factor in score.top_factors:
            j = FEATURES.index(factor.feature)
            assert factor.contribution == pytest.approx(expected[i, :, j].sum(), abs=1e-9)


def test_missing_inputs_are_allowed_but_bad_features_refused(
    trained: TrainingResult, world: pd.DataFrame
) -> None:
    model = DroughtSeverityModel.load(trained.artifact)
    row = world.tail(1).copy()
    row["vhi"] = np.nan  # a cloudy month: the model still scores
    assert len(model.predict(row)) == 1
    with pytest.raises(ValidationError) as error:
        model.predict(row.drop(columns=["spi_3"]))
    assert error.value.reason == "missing_feature"
    bad = row.copy()
    bad["sm_percentile"] = 0.4 * 1000  # a fraction ×1000, not a percentile
    with pytest.raises(ValidationError) as error:
        model.predict(bad)
    assert error.value.reason == "out_of_range"
    with pytest.raises(ValidationError) as error:
        DroughtSeverityModel.load(b"not a model")
    assert error.value.reason == "bad_artifact"


def test_labelled_data_with_integer_classes(world: pd.DataFrame) -> None:
    labelled = world.copy()
    labelled["usdm_class"] = labelled["usdm_class"].map({name: k for k, name in enumerate(CLASSES)})
    labelled["date"] = labelled["date"].dt.strftime("%Y-%m-%d")
    result = train_severity_model(labelled, seed=3)
    assert result.metrics.rows > 0
    labelled.loc[0, "usdm_class"] = 9
    with pytest.raises(ValidationError) as error:
        train_severity_model(labelled, seed=3)
    assert error.value.reason == "bad_label"
    with pytest.raises(ValidationError) as error:
        train_severity_model(labelled.drop(columns=["date"]))
    assert error.value.reason == "missing_column"


def test_shipped_model_is_reproducible_and_small() -> None:
    model, card = load_shipped()
    artifact = (DEFAULT_MODEL_DIRECTORY / f"{card.name}-{card.model_id_hex[:16]}.txt").read_bytes()
    assert len(artifact) < 1_000_000
    assert model_id_for(artifact).hex() == card.model_id_hex
    rebuilt, rebuilt_card = train_default()
    assert rebuilt == artifact
    assert rebuilt_card.metrics == card.metrics
    assert rebuilt_card.description == card.description
    holdout, prior = card.metrics["holdout"], card.metrics["baseline_prior"]
    assert holdout["macro_f1"] > prior["macro_f1"]
    assert model.predict(generate(SMALL).tail(5))[0].score >= 0.0


def test_shipped_card_states_what_its_figures_mean() -> None:
    _, card = load_shipped()
    ci = card.metrics["holdout_ci95"]
    assert ci["rows"] == card.metrics["holdout"]["rows"] == card.metrics["sample_sizes"]["test"]["rows"]
    assert ci["months"] == card.metrics["sample_sizes"]["test"]["months"]
    assert "calibration_last_year=2011" in card.description
    assert "not observed droughts" in card.description
    for name in HEADLINE:  # model and SPI-3 rule side by side, each with its interval
        assert f"{name} {card.metrics['holdout'][name]:.3f}" in card.description
        assert f"{name} {card.metrics['baseline_spi3_rule'][name]:.3f}" in card.description
