"""Regions, decisions and the provenance graph.

A *decision* is one evaluation of one subject for one period (a region-month, a shipment): its status,
value, confidence, top-3 factors and the CID of its manifest — the JSON document in the content store that
lists every input CID, every step and its parameters, so ``oracle verify`` can recompute it.

The provenance graph is stored as steps (one output CID made from input CIDs by named code at a version,
with parameters) and one row per step input, indexed by CID, so both "what made this" (upstream) and
"what was made from this" (downstream) are index look-ups.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from oracle.storage.tables import Base, utcnow


class Region(Base):
    __tablename__ = "regions"
    region_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    subject: Mapped[str] = mapped_column(String(66), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    geometry: Mapped[dict[str, Any]] = mapped_column()
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cid: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("kind", "subject_name", "period", "manifest_cid", name="uq_decision_manifest"),
        Index("ix_decision_subject", "kind", "subject_name", "period"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject_name: Mapped[str] = mapped_column(String(120))
    subject: Mapped[str] = mapped_column(String(66))
    period: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[str | None] = mapped_column(String(80))
    confidence: Mapped[float | None] = mapped_column()
    factors: Mapped[list[Any]] = mapped_column(default=list)
    flags: Mapped[list[Any]] = mapped_column(default=list)
    model_id: Mapped[str] = mapped_column(String(66), default="")
    inputs_root: Mapped[str] = mapped_column(String(66), default="")
    manifest_cid: Mapped[str] = mapped_column(String(100))
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProvenanceStep(Base):
    __tablename__ = "provenance_steps"
    __table_args__ = (UniqueConstraint("name", "output_cid", name="uq_step_output"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    output_cid: Mapped[str] = mapped_column(String(100), index=True)
    code_version: Mapped[str] = mapped_column(String(60))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProvenanceInput(Base):
    __tablename__ = "provenance_inputs"
    step_id: Mapped[int] = mapped_column(ForeignKey("provenance_steps.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    cid: Mapped[str] = mapped_column(String(100), index=True)
