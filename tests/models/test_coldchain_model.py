"""Simulator determinism, causal features, deterministic training, holdout quality and lead time."""

from __future__ import annotations

import numpy as np
import pytest

from models import registry
from models.coldchain.breach_model import (
    FEATURE_NAMES,
    load_breach_model,
    score,
    train,
)
from models.coldchain.features import feature_matrix
from models.coldchain.profiles import load_profile
from models.coldchain.simulator import SimulatorConfig, shipments_to_frame, simulate_shipments
from oracle.errors import ValidationError

SMALL = SimulatorConfig(n_shipments=90, seed=3, min_hours=24.0, max_hours=60.0)


@pytest.fixture(scope="module")
def trained() -> registry.ModelCard:
    return train(simulator=SMALL, seed=3)  # type: ignore[return-value]


def test_simulator_is_seeded_deterministic() -> None:
    cfg = SimulatorConfig(n_shipments=12, seed=5, min_hours=12.0, max_hours=24.0)
    a, b = shipments_to_frame(simulate_shipments(cfg)), shipments_to_frame(simulate_shipments(cfg))
    assert a.equals(b)
    other = shipments_to_frame(simulate_shipments(SimulatorConfig(n_shipments=12, seed=6, min_hours=12.0)))
    assert not a.equals(other)


def test_simulator_gives_both_outcomes_and_several_breach_kinds() -> None:
    shipments = simulate_shipments(SMALL)
    breached = [s for s in shipments if s.outcome.breaches]
    assert 0.1 < len(breached) / len(shipments) < 0.7
    kinds = {b.kind for s in breached for b in s.outcome.breaches}
    assert len(kinds) >= 4
    steps = np.diff(shipments[0].readings.ts_s)
    assert np.median(steps) == 600


def test_features_are_causal() -> None:
    shipment = simulate_shipments(SimulatorConfig(n_shipments=3, seed=11))[0]
    profile = load_profile(shipment.profile)
    full = feature_matrix(shipment.readings, profile)
    k = len(shipment.readings) // 2
    prefix = feature_matrix(shipment.readings.until(int(shipment.readings.ts_s[k])), profile)
    np.testing.assert_allclose(prefix, full[: k + 1])
    assert full.shape == (len(shipment.readings), len(FEATURE_NAMES))


def test_training_is_deterministic_and_beats_baseline(trained) -> None:  # type: ignore[no-untyped-def]
    again = train(simulator=SMALL, seed=3)
    assert again.artifact == trained.artifact
    assert again.card == trained.card
    assert len(trained.artifact) < 1_000_000
    m = trained.card.metrics
    assert m["warning_log_loss"] < m["warning_baseline_log_loss"]
    assert m["compromised_log_loss"] < m["compromised_baseline_log_loss"]
    assert m["median_lead_time_min"] > 0
    assert m["breached_shipments_warned_share"] > 0
    assert 0 < m["warning_precision"] <= 1


def test_holdout_is_by_start_time(trained) -> None:  # type: ignore[no-untyped-def]
    m = trained.card.metrics
    assert m["train_shipments"] + m["holdout_shipments"] <= SMALL.n_shipments
    assert m["holdout_shipments"] == pytest.approx(SMALL.n_shipments * 0.25, abs=2)
    assert "start time" in trained.card.params["holdout"]


def test_save_load_and_score_with_top3_factors(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry.save_model(tmp_path, artifact=trained.artifact, card=trained.card)
    artifact, card = registry.load_model(tmp_path, trained.card.model_id_hex)
    model = load_breach_model(artifact)
    assert model.model_id_hex == card.model_id_hex
    shipment = next(s for s in simulate_shipments(SMALL) if s.outcome.first_breach_s is not None)
    before = shipment.readings.until(int(shipment.outcome.first_breach_s) - 1)  # type: ignore[arg-type]
    result = score(model, before, load_profile(shipment.profile))
    assert 0.0 <= result.p_compromised <= 1.0
    assert 0.0 <= result.p_breach_2h <= 1.0
    assert len(result.warning_factors) == 3
    assert len(result.compromised_factors) == 3
    assert {f.feature for f in result.warning_factors} <= set(FEATURE_NAMES)
    contributions = [abs(f.contribution) for f in result.warning_factors]
    assert contributions == sorted(contributions, reverse=True)


def test_training_from_a_labelled_frame_and_bad_frames() -> None:
    frame = shipments_to_frame(simulate_shipments(SimulatorConfig(n_shipments=40, seed=9, max_hours=40.0)))
    iso = frame.assign(ts=frame["ts"].map(lambda s: f"{np.datetime64(int(s), 's')}Z"))
    assert train(iso, seed=1).card.training_data_hash == registry.training_data_hash(iso)
    with pytest.raises(ValidationError, match="lacks columns: temp_c"):
        train(frame.drop(columns=["temp_c"]))
    with pytest.raises(ValidationError) as info:
        train(frame.assign(profile="cryogenic"))
    assert info.value.reason == "unknown_profile"
    with pytest.raises(ValidationError):
        load_breach_model(b"not json")


def test_shipped_artifact_loads_and_matches_its_card() -> None:
    from models.coldchain.breach_model import DEFAULT_ARTIFACT_DIR, MODEL_NAME

    cards = [c for c in registry.list_models(DEFAULT_ARTIFACT_DIR) if c.name == MODEL_NAME]
    assert cards
    artifact, card = registry.load_model(DEFAULT_ARTIFACT_DIR, cards[-1].model_id_hex)
    assert load_breach_model(artifact).model_id_hex == card.model_id_hex
    assert card.metrics["median_lead_time_min"] > 0
    assert tuple(card.features) == FEATURE_NAMES
