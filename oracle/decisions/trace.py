"""Recording each step of a decision so it can be recomputed and checked bit for bit.

A step takes input CIDs, runs named code at a version with parameters, and stores its output in the
content store as canonical JSON (keys sorted, no whitespace, floats in Python's shortest round-trip
repr), so the same inputs always give the same output CID. The manifest of a decision is the list of
its steps plus the raw inputs; ``oracle verify`` replays the steps and compares CIDs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from oracle import __version__
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import ProvenanceInput, ProvenanceStep

CODE_VERSION = f"oracle-{__version__}"


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes; NaN and infinities become null (JSON has no such numbers)."""
    return json.dumps(
        _clean(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Step:
    name: str
    inputs: tuple[str, ...]
    output: str
    params: dict[str, Any]
    code_version: str = CODE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": list(self.inputs),
            "output": self.output,
            "params": self.params,
            "code_version": self.code_version,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Step:
        return cls(
            name=str(d["name"]),
            inputs=tuple(d["inputs"]),
            output=str(d["output"]),
            params=dict(d.get("params") or {}),
            code_version=str(d.get("code_version", CODE_VERSION)),
        )


@dataclass
class Trace:
    """Steps of one decision, in order; outputs go to ``blobs`` as they are produced."""

    blobs: BlobStore
    steps: list[Step] = field(default_factory=list)

    def record(
        self, name: str, *, inputs: list[str], output: Any, params: dict[str, Any] | None = None
    ) -> str:
        cid = self.blobs.put(canonical_json(output))
        self.steps.append(Step(name=name, inputs=tuple(inputs), output=cid, params=dict(params or {})))
        return cid

    def load(self, cid: str) -> Any:
        return json.loads(self.blobs.get(cid))


def save_steps(session: Session, steps: list[Step], *, decision_id: int | None) -> None:
    """Add the steps to the provenance graph (once per (name, output))."""
    for step in steps:
        existing = session.scalar(
            select(ProvenanceStep.id).where(
                ProvenanceStep.name == step.name, ProvenanceStep.output_cid == step.output
            )
        )
        if existing is not None:
            continue
        row = ProvenanceStep(
            name=step.name,
            output_cid=step.output,
            code_version=step.code_version,
            params=step.params,
            decision_id=decision_id,
        )
        session.add(row)
        session.flush()
        for i, cid in enumerate(step.inputs):
            session.add(ProvenanceInput(step_id=row.id, position=i, cid=cid))
