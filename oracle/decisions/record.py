"""Recording a decision: its manifest in the content store, its row, and its steps in the provenance graph.

The manifest is canonical JSON: kind, subject, period, status and reason, the raw input CIDs, the model
artifact's CID, every step, and the report fields (all but the epoch). Recording the same manifest twice
returns the first decision: that is what makes a re-evaluation with unchanged inputs a no-op. The
``revision`` counts earlier, different complete decisions for the same subject and period; it feeds the
epoch so a corrected decision (late data) gets a higher one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from oracle.decisions.trace import Step, Trace, canonical_json, save_steps
from oracle.errors import IntegrityError, NotFound
from oracle.reports import Report
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Decision


@dataclass(frozen=True)
class DecisionOutcome:
    decision_id: int
    status: str
    reason: str
    report: Report | None
    score: float | None
    factors: list[dict[str, Any]]
    manifest_cid: str
    steps: list[Step] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)


def lacking_inputs(blobs: BlobStore, cids: Sequence[str]) -> list[str]:
    """Why each of ``cids`` cannot be read, for a decision that must then stay incomplete.

    A node of a network asks its peers for what it lacks (the store is then
    :class:`oracle.network.inputs.PeerBackedBlobStore`); the reasons name what each peer answered.
    """
    out = []
    for cid in cids:
        if blobs.has(cid):
            continue
        try:
            blobs.get(cid)
        except (NotFound, IntegrityError) as e:
            out.append(f"input unavailable: {e}")
    return out


def record_decision(
    sessions: sessionmaker[Session],
    trace: Trace,
    *,
    kind: str,
    subject_name: str,
    subject: str,
    period: str,
    raw_inputs: list[str],
    model_cid: str | None,
    status: str,
    reason: str,
    fields: dict[str, Any] | None,
    confidence: float | None,
    factors: list[dict[str, Any]],
    flags: list[dict[str, Any]] | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> tuple[int, int, str]:
    """Store the manifest and the decision (once per manifest).

    Returns (decision id, revision, manifest CID).
    """
    manifest = {
        "kind": kind,
        "subject": subject_name,
        "period": period,
        "status": status,
        "reason": reason,
        "inputs": raw_inputs,
        "model": model_cid,
        "steps": [s.to_json() for s in trace.steps],
        "report": fields,
        "flags": flags or [],
        **(manifest_extra or {}),
    }
    manifest_cid = trace.blobs.put(canonical_json(manifest))
    with sessions() as s:
        existing = s.scalar(
            select(Decision).where(
                Decision.kind == kind,
                Decision.subject_name == subject_name,
                Decision.period == period,
                Decision.manifest_cid == manifest_cid,
            )
        )
        if existing is None:
            revision = len(
                s.scalars(
                    select(Decision.id).where(
                        Decision.kind == kind,
                        Decision.subject_name == subject_name,
                        Decision.period == period,
                        Decision.status == "complete",
                    )
                ).all()
            )
            existing = Decision(
                kind=kind,
                subject_name=subject_name,
                subject=subject,
                period=period,
                status=status,
                reason=reason,
                value=fields["value"] if fields else None,
                confidence=confidence,
                factors=factors,
                model_id=fields["modelId"] if fields else "",
                inputs_root=fields["inputsRoot"] if fields else "",
                manifest_cid=manifest_cid,
                flags=[{"revision": revision}, *(flags or [])],
            )
            s.add(existing)
            try:
                s.flush()
            except sa_exc.IntegrityError:
                # A concurrent evaluation of the same inputs recorded this very manifest first: it is
                # the same decision, so take that row.
                s.rollback()
                existing = s.scalars(
                    select(Decision).where(
                        Decision.kind == kind,
                        Decision.subject_name == subject_name,
                        Decision.period == period,
                        Decision.manifest_cid == manifest_cid,
                    )
                ).one()
            else:
                save_steps(s, trace.steps, decision_id=existing.id)
                s.commit()
        revision = int(existing.flags[0].get("revision", 0)) if existing.flags else 0
        return existing.id, revision, manifest_cid
