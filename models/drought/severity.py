"""Scoring with the drought severity model: class probabilities, expected severity and its top factors.

The model is a LightGBM multiclass booster over ``models.drought.features.FEATURES`` with one class per
US Drought Monitor level (none, D0 … D4). The **expected severity score** is S = Σ_k k·p_k with
k = 0 (none) … 5 (D4), so S runs 0…5 and ``oracle.reports`` publishes S × 10**6.

**Top factors.** ``pred_contrib=True`` gives, for every class j, additive SHAP contributions
c_{j,f} of each feature f to that class's raw score z_j (a logit). S is not linear in the z_j
(softmax), so per-class contributions cannot simply be summed. We attribute S through the softmax
Jacobian at the row's own prediction: ∂S/∂z_j = p_j·(j − S), hence

    contribution_f = Σ_j p_j·(j − S)·c_{j,f}

is the first-order change of the expected score due to feature f (in severity-score units: +0.8
means "this feature pushes the score up by about 0.8 classes"). It is exact for small contributions
and keeps sign and ranking meaningful for large ones; it is a local linearisation, not an exact
decomposition of S. The three features with the largest |contribution_f| are reported, largest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models import numerics as nm
from models.drought.features import CLASSES, FEATURES, feature_matrix
from models.errors import NotFound, ValidationError
from models.paths import DROUGHT_MODEL_DIR
from models.registry import ModelCard, list_models, load_model

TOP_FACTORS = 3

#: Where the shipped drought model and its card live (``models/artifacts/drought``).
DEFAULT_MODEL_DIRECTORY = DROUGHT_MODEL_DIR
MODEL_NAME = "drought-severity"


@dataclass(frozen=True)
class Factor:
    """One feature's share of a score: ``contribution`` in severity-score units (+ = more severe)."""

    feature: str
    value: float
    contribution: float


@dataclass(frozen=True)
class SeverityScore:
    """A scored row: ``probabilities`` per class (sum 1), ``score`` = Σ k·p_k in [0, 5], top factors."""

    probabilities: Mapping[str, float]
    score: float
    most_likely: str
    top_factors: tuple[Factor, ...]


class DroughtSeverityModel:
    """A loaded drought severity booster. Create with :meth:`load`; thread-compatible for reading."""

    def __init__(self, booster: lgb.Booster) -> None:
        names = tuple(booster.feature_name())
        if names != FEATURES:
            raise ValidationError(
                f"model features {names} do not match the expected {FEATURES}", reason="model_features"
            )
        if booster.num_model_per_iteration() != len(CLASSES):
            raise ValidationError("model is not a six-class drought model", reason="model_classes")
        self._booster = booster

    @classmethod
    def load(cls, artifact: bytes) -> DroughtSeverityModel:
        """Load from artifact bytes (LightGBM text model, UTF-8).

        :raises ValidationError: the bytes are not a LightGBM model of the expected shape.
        """
        try:
            text = artifact.decode("utf-8")
            booster = lgb.Booster(model_str=text)
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
            raise ValidationError("artifact is not a LightGBM text model", reason="bad_artifact") from exc
        return cls(booster)

    @property
    def booster(self) -> lgb.Booster:
        return self._booster

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape (rows, 6), columns in ``CLASSES`` order."""
        matrix = feature_matrix(features).to_numpy()
        proba: np.ndarray = np.asarray(self._booster.predict(matrix, num_threads=1), dtype=np.float64)
        return proba

    def predict(self, features: pd.DataFrame) -> list[SeverityScore]:
        """Score every row of ``features`` (must hold the ``FEATURES`` columns; NaN = missing input).

        :raises ValidationError: missing, non-numeric or out-of-range feature columns.
        """
        matrix = feature_matrix(features).to_numpy()
        if matrix.shape[0] == 0:
            return []
        proba = np.asarray(self._booster.predict(matrix, num_threads=1), dtype=np.float64)
        contrib = np.asarray(
            self._booster.predict(matrix, pred_contrib=True, num_threads=1), dtype=np.float64
        )
        levels = np.arange(len(CLASSES), dtype=np.float64)
        scores = nm.weighted_sum(proba, levels)
        # contrib is (rows, classes × (features + 1)); the last column of each block is the bias.
        per_class = contrib.reshape(matrix.shape[0], len(CLASSES), len(FEATURES) + 1)[:, :, :-1]
        weights = proba * (levels[None, :] - scores[:, None])  # ∂S/∂z_j
        to_score = np.sum(weights[:, :, None] * per_class, axis=1)
        results = []
        for row in range(matrix.shape[0]):
            order = np.argsort(-np.abs(to_score[row]), kind="stable")[:TOP_FACTORS]
            factors = tuple(
                Factor(feature=FEATURES[i], value=float(matrix[row, i]), contribution=float(to_score[row, i]))
                for i in order
            )
            results.append(
                SeverityScore(
                    probabilities={name: float(p) for name, p in zip(CLASSES, proba[row], strict=True)},
                    score=float(np.clip(scores[row], 0.0, len(CLASSES) - 1.0)),
                    most_likely=CLASSES[int(np.argmax(proba[row]))],
                    top_factors=factors,
                )
            )
        return results


def load_shipped(
    directory: Path = DEFAULT_MODEL_DIRECTORY, model_id_hex: str | None = None
) -> tuple[DroughtSeverityModel, ModelCard]:
    """Load a registered drought model, hash-verified by the registry.

    With ``model_id_hex`` that exact model; otherwise the newest "approved" one, or failing that the
    newest of any approval (the shipped default is "pending": trained on synthetic data).

    :raises NotFound: no drought model in ``directory``.
    :raises oracle.errors.IntegrityError: the artifact does not match its id.
    """
    if model_id_hex is None:
        cards = [card for card in list_models(directory) if card.name == MODEL_NAME]
        if not cards:
            raise NotFound(f"no {MODEL_NAME} model in {directory}")
        approved = [card for card in cards if card.approval == "approved"]
        model_id_hex = max(approved or cards, key=lambda card: card.created_at).model_id_hex
    artifact, card = load_model(directory, model_id_hex)
    return DroughtSeverityModel.load(artifact), card
