"""One region's drought history for the dashboard: every decision by period with its severity, top-3
factors and the SPI values the model saw.

The SPI values come from the decision's ``features`` step: its output is canonical JSON in the content
store (the step's ``output_cid``), the same document ``oracle verify`` recomputes. A missing or unreadable
blob leaves the SPI fields empty and says so, rather than failing the whole view.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from oracle.dashboard.views import fixed_to_float, severity_class, top_factors
from oracle.errors import NotFound, OracleError
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Decision, ProvenanceStep, Region

#: Feature names shown as the SPI history (months of accumulation: 1, 3, 6).
SPI_FEATURES: tuple[str, ...] = ("spi_1", "spi_3", "spi_6")


def _features(s: Session, blobs: BlobStore, decision_id: int) -> tuple[dict[str, Any], str]:
    cid = s.scalar(
        select(ProvenanceStep.output_cid).where(
            ProvenanceStep.decision_id == decision_id, ProvenanceStep.name == "features"
        )
    )
    if cid is None:
        return {}, ""
    try:
        doc = json.loads(blobs.get(cid))
    except (OracleError, OSError, ValueError) as e:
        return {}, f"features {cid} unreadable: {e.__class__.__name__}"
    return (doc if isinstance(doc, dict) else {}), ""


def region_history(s: Session, blobs: BlobStore, region_id: str, *, limit: int = 120) -> dict[str, Any]:
    """The region and its decisions, oldest period first. Raises NotFound for an unknown region."""
    region = s.get(Region, region_id)
    if region is None:
        raise NotFound(f"region {region_id!r} is not registered")
    decisions = s.scalars(
        select(Decision)
        .where(Decision.kind == "drought", Decision.subject_name == region_id)
        .order_by(Decision.period.desc(), Decision.id.desc())
        .limit(limit)
    ).all()
    history = []
    for d in reversed(decisions):
        features, problem = _features(s, blobs, d.id) if d.status == "complete" else ({}, "")
        severity = fixed_to_float(d.value)
        history.append(
            {
                "decision_id": d.id,
                "period": d.period,
                "status": d.status,
                "reason": d.reason,
                "severity": severity,
                "class": severity_class(severity),
                "confidence": d.confidence,
                "factors": top_factors(d.factors),
                "spi": {k: features.get(k) for k in SPI_FEATURES},
                "features": {k: v for k, v in features.items() if isinstance(v, int | float) or v is None},
                "manifest_cid": d.manifest_cid,
                "report_id": d.report_id,
                "note": problem,
            }
        )
    current = next((h for h in reversed(history) if h["status"] == "complete"), None)
    return {
        "region_id": region.region_id,
        "name": region.name or region.region_id,
        "subject": region.subject,
        "severity": current["severity"] if current else None,
        "class": current["class"] if current else "unknown",
        "period": current["period"] if current else None,
        "factors": current["factors"] if current else [],
        "history": history,
    }
