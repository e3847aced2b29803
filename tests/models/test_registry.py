"""Model registry: content-hash ids, model cards, round trip on disk and tamper detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.registry import ModelCard, list_models, load_model, model_id_for, save_model, training_data_hash
from oracle.errors import IntegrityError, NotFound, ValidationError


def card_for(
    artifact: bytes, *, name: str = "toy", created_at: str = "2026-01-01T00:00:00+00:00"
) -> ModelCard:
    return ModelCard(
        name=name,
        kind="lightgbm-multiclass",
        model_id_hex=model_id_for(artifact).hex(),
        training_data_hash="sha256:" + "0" * 64,
        features=("spi_3", "vhi"),
        params={"num_leaves": 8, "seed": np.int64(3)},
        metrics={"holdout": {"accuracy": 0.8}},
        created_at=created_at,
        description="a toy",
    )


def test_model_id_is_sha256_of_the_bytes() -> None:
    artifact = b"tree\nversion=v4\n"
    assert model_id_for(artifact) == hashlib.sha256(artifact).digest()
    assert len(model_id_for(artifact)) == 32


def test_card_json_round_trip() -> None:
    card = card_for(b"abc")
    text = card.to_json()
    assert json.loads(text)["params"]["seed"] == 3  # numpy scalars become JSON numbers
    again = ModelCard.from_json(text)
    assert again.features == card.features
    assert again.model_id_hex == card.model_id_hex
    assert again.to_json() == text
    with pytest.raises(ValidationError) as error:
        ModelCard.from_json('{"name": "x"}')
    assert error.value.reason == "bad_card"


def test_save_load_list(tmp_path: Path) -> None:
    first, second = b"model one", b"model two"
    path = save_model(tmp_path, artifact=first, card=card_for(first))
    save_model(tmp_path, artifact=second, card=card_for(second, created_at="2026-02-01T00:00:00+00:00"))
    assert path.name == f"toy-{model_id_for(first).hex()[:16]}.txt"
    assert path.with_name(path.name.removesuffix(".txt") + ".card.json").exists()
    artifact, card = load_model(tmp_path, "0x" + model_id_for(first).hex().upper())
    assert artifact == first
    assert card.description == "a toy"
    assert [c.model_id_hex for c in list_models(tmp_path)] == [
        model_id_for(first).hex(),
        model_id_for(second).hex(),
    ]
    assert list_models(tmp_path / "nowhere") == []
    with pytest.raises(NotFound):
        load_model(tmp_path, "ab" * 32)


def test_tampered_artifact_is_detected(tmp_path: Path) -> None:
    artifact = b"the real model"
    path = save_model(tmp_path, artifact=artifact, card=card_for(artifact))
    path.write_bytes(b"the real modeL")
    with pytest.raises(IntegrityError, match="hashes to"):
        load_model(tmp_path, model_id_for(artifact).hex())


def test_card_must_match_artifact_and_name_must_be_safe(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as error:
        save_model(tmp_path, artifact=b"one", card=card_for(b"two"))
    assert error.value.reason == "id_mismatch"
    with pytest.raises(ValidationError) as error:
        save_model(tmp_path, artifact=b"one", card=card_for(b"one", name="../escape"))
    assert error.value.reason == "bad_name"


def test_training_data_hash_is_deterministic_and_sensitive() -> None:
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-01", "2020-02-01"]),
            "spi_3": [0.1, -1.2],
            "usdm_class": ["none", "D1"],
        }
    )
    digest = training_data_hash(frame)
    assert digest.startswith("sha256:")
    assert len(digest) == 7 + 64
    assert training_data_hash(frame.copy()) == digest
    changed = frame.copy()
    changed.loc[1, "spi_3"] = -1.2000000000000002  # one ulp: still a different training set
    assert training_data_hash(changed) != digest
    assert training_data_hash(frame.rename(columns={"spi_3": "spi_6"})) != digest
