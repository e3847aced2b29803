"""Recording each step of a decision so it can be recomputed and checked bit for bit.

A step takes input CIDs, runs named code at a version with parameters, and stores its output in the
content store as canonical JSON (keys sorted, no whitespace, floats in Python's shortest round-trip
repr), so the same inputs always give the same output CID. The manifest of a decision is the list of
its steps plus the raw inputs; ``oracle verify`` replays the steps and compares CIDs.

**Same bits on every machine.** Independent nodes recompute every decision and must reach the same digest
on any CPU and thread count, so the steps follow the rule written in :mod:`models.numerics`: computation
uses only operations with defined rounding (IEEE basic operations, fixed-order sums, the transcendental
functions of ``models.numerics``; no BLAS, no numpy SIMD ``exp``/``log``/``sin``/``cos``), and every
step that *computes* floats is marked :func:`step_boundary`, which quantises its output canonically
(9 significant digits, correctly rounded) before it is recorded or handed to the next step. Steps that
only parse inputs (readings, feeds) pass the inputs' own numbers through unchanged.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.numerics import quantise
from oracle import __version__
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import ProvenanceInput, ProvenanceStep

CODE_VERSION = f"oracle-{__version__}"

_P = ParamSpec("_P")


def step_boundary(step: Callable[_P, dict[str, Any]]) -> Callable[_P, dict[str, Any]]:
    """Mark a pure decision step whose output floats are quantised canonically (see the module doc).

    The evaluation and ``oracle verify`` call the same decorated function, so both see the quantised
    output, and the next step starts from it.
    """

    @functools.wraps(step)
    def quantised(*args: _P.args, **kwargs: _P.kwargs) -> dict[str, Any]:
        out: dict[str, Any] = quantise(step(*args, **kwargs))
        return out

    return quantised


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
