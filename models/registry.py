"""Model registry: content-addressed model artifacts with model cards.

A model's id is the SHA-256 of its artifact bytes; it becomes the report's ``modelId``, so anyone
holding the artifact can check which model produced a report. On disk a model is two files::

    <dir>/<name>-<model_id_hex[:16]>.txt         the artifact (e.g. LightGBM text model)
    <dir>/<name>-<model_id_hex[:16]>.card.json   its ModelCard

Loading re-hashes the artifact and refuses bytes that do not match the card (tampering, corruption).
This is the only module under ``models/`` that touches files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from models.errors import IntegrityError, NotFound, ValidationError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CARD_SUFFIX = ".card.json"


def model_id_for(artifact: bytes) -> bytes:
    """SHA-256 of the artifact bytes (32 bytes): the report's ``modelId``."""
    return hashlib.sha256(artifact).digest()


@dataclass(frozen=True)
class ModelCard:
    """What a model is, what it was trained on, how well it did and whether it may be used.

    ``training_data_hash`` is :func:`training_data_hash` of the training frame; ``metrics`` are the
    holdout figures; ``approval`` is "pending" until a person signs it off ("approved", "rejected").
    ``created_at`` is an ISO-8601 UTC timestamp.
    """

    name: str
    kind: str
    model_id_hex: str
    training_data_hash: str
    features: tuple[str, ...]
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    created_at: str
    approval: str = "pending"
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, 2-space indent, trailing newline)."""
        data = asdict(self)
        data["features"] = list(self.features)
        return json.dumps(data, sort_keys=True, indent=2, default=_jsonable) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card written by :meth:`to_json`.

        :raises ValidationError: malformed JSON or missing/ill-typed fields (``reason`` = "bad_card").
        """
        try:
            data = json.loads(text)
            card = cls(
                name=str(data["name"]),
                kind=str(data["kind"]),
                model_id_hex=str(data["model_id_hex"]),
                training_data_hash=str(data["training_data_hash"]),
                features=tuple(str(f) for f in data["features"]),
                params=dict(data["params"]),
                metrics=dict(data["metrics"]),
                created_at=str(data["created_at"]),
                approval=str(data.get("approval", "pending")),
                description=str(data.get("description", "")),
                extra=dict(data.get("extra", {})),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"model card is malformed: {exc}", reason="bad_card") from exc
        if not _HEX64.match(card.model_id_hex):
            raise ValidationError("model card model_id_hex is not 64 lowercase hex digits", reason="bad_card")
        return card


def _jsonable(value: object) -> object:
    # numpy scalars and tuples in params/metrics; anything else is a programming error.
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _stem(name: str, model_id_hex: str) -> str:
    return f"{name}-{model_id_hex[:16]}"


def save_model(directory: Path, *, artifact: bytes, card: ModelCard) -> Path:
    """Write the artifact and its card into ``directory`` (created if needed); return the artifact path.

    :raises ValidationError: the card's id is not the artifact's hash, or the name is unsafe for a file name.
    """
    if not _NAME.match(card.name):
        raise ValidationError(f"model name {card.name!r} must match {_NAME.pattern}", reason="bad_name")
    if model_id_for(artifact).hex() != card.model_id_hex:
        raise ValidationError("card model_id_hex is not the SHA-256 of the artifact", reason="id_mismatch")
    directory.mkdir(parents=True, exist_ok=True)
    artifact_path = directory / f"{_stem(card.name, card.model_id_hex)}.txt"
    card_path = directory / f"{_stem(card.name, card.model_id_hex)}{CARD_SUFFIX}"
    artifact_path.write_bytes(artifact)
    card_path.write_text(card.to_json(), encoding="utf-8")
    return artifact_path


def load_model(directory: Path, model_id_hex: str) -> tuple[bytes, ModelCard]:
    """Load the artifact and card with this id (64 hex digits, optional 0x) and verify the hash.

    :raises NotFound: no card with that id in ``directory``.
    :raises IntegrityError: the artifact's SHA-256 is not ``model_id_hex`` (tampered or corrupted).
    """
    wanted = model_id_hex.lower().removeprefix("0x")
    if not _HEX64.match(wanted):
        raise ValidationError("model id must be 64 hex digits", reason="bad_model_id")
    for card in list_models(directory):
        if card.model_id_hex != wanted:
            continue
        artifact_path = directory / f"{_stem(card.name, card.model_id_hex)}.txt"
        try:
            artifact = artifact_path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"model artifact {artifact_path.name} is missing") from exc
        actual = model_id_for(artifact).hex()
        if actual != wanted:
            raise IntegrityError(f"model artifact {artifact_path.name} hashes to {actual}, expected {wanted}")
        return artifact, card
    raise NotFound(f"no model {wanted} in {directory}")


def list_models(directory: Path) -> list[ModelCard]:
    """Every model card in ``directory``, sorted by name then creation time (empty if no directory)."""
    if not directory.is_dir():
        return []
    cards = [
        ModelCard.from_json(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob(f"*{CARD_SUFFIX}"))
    ]
    return sorted(cards, key=lambda card: (card.name, card.created_at, card.model_id_hex))


def training_data_hash(df: pd.DataFrame) -> str:
    """Deterministic ``sha256:<hex>`` of a training frame's columns, dtypes and values (row order matters).

    Floats are written with 17 significant digits, so equal frames hash equal across runs and
    machines, and any changed value changes the hash.
    """
    digest = hashlib.sha256()
    header = [f"{name}:{dtype}" for name, dtype in zip(df.columns, df.dtypes, strict=True)]
    digest.update(json.dumps(header).encode())
    body = df.to_csv(
        index=False, header=False, lineterminator="\n", float_format="%.17g", date_format="%Y-%m-%dT%H:%M:%S"
    )
    digest.update(body.encode())
    return f"sha256:{digest.hexdigest()}"
