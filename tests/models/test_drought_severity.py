"""The drought severity model: deterministic training, a real gain over baselines, scores and factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.drought.features import CLASSES, FEATURES
from models.drought.severity import DEFAULT_MODEL_DIRECTORY, DroughtSeverityModel, load_shipped
from models.drought.synthetic import SyntheticConfig, generate
from models.drought.training import TrainingResult, train_default, train_severity_model
from models.registry import model_id_for
from oracle.errors import ValidationError

SMALL = SyntheticConfig(n_regions=16, n_years=20, seed=11)


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
    contrib = booster.predict(matrix, pred_contrib=True).reshape(len(rows), len(CLASSES), len(FEATURES) + 1)
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
    assert rebuilt_card.metrics["holdout"] == card.metrics["holdout"]
    holdout, prior = card.metrics["holdout"], card.metrics["baseline_prior"]
    assert holdout["macro_f1"] > prior["macro_f1"]
    assert model.predict(generate(SMALL).tail(5))[0].score >= 0.0
