"""The chain of custody of one attestation: the decision manifest's steps in order, each input named by
what it is, and a compact stage graph for drawing.

The manifest (canonical JSON in the content store, see :mod:`oracle.decisions.record`) is found through the
report row's ``detail["manifest_cid"]``. Inputs that no step produced are the raw inputs; they are named
from the database (an observation's kind, variable, date and source; a region's geometry; a telemetry
batch's readings) or from the manifest itself (its ``model`` is the model artifact; the input the cold-chain
``rules`` step reads next to the readings is the product profile). A report without a manifest (a manual
attestation) or with an unreadable one gives empty steps and a ``note``, not an error.

Shape: ``{"report_id", "manifest_cid", "decision": {kind, subject, period, status, reason} | None,
"steps": [{index, name, code_version, params, inputs: [{cid, from_step, what, label}], output}],
"raw_inputs": [{cid, what, label, source}], "stages": [{id, kind, name, count, column}],
"links": [{source, target}], "note"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oracle.errors import NotFound, OracleError
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Region
from oracle.storage.tables import Observation, ReportRow, TelemetryReading

#: Step parameters shown on the page: scalars only, so a long list (devices, calibration) stays off it.
_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class RawInput:
    """What a raw input CID is: ``what`` is its category (one box in the stage graph), ``label`` a line
    for a person, ``source`` where it came from (may be empty)."""

    cid: str
    what: str
    label: str
    source: str = ""


def _observation_input(o: Observation) -> RawInput:
    meta = o.meta or {}
    what = {"raster": "raster", "weather": "weather feed", "delivery": "delivery record"}.get(o.kind, o.kind)
    parts = [o.variable] if o.variable else []
    if o.kind == "raster":
        parts.append(str(meta.get("date", "")))
        if meta.get("cadence"):
            parts.append(str(meta["cadence"]))
    elif o.kind == "weather":
        parts.append(f"{meta.get('first', '?')} … {meta.get('last', '?')}")
        if meta.get("frequency"):
            parts.append(str(meta["frequency"]))
    elif o.subject:
        parts.append(o.subject)
    if meta.get("name"):
        parts.append(str(meta["name"]))
    return RawInput(cid=o.cid, what=what, label=" · ".join(p for p in parts if p), source=o.source)


def unproduced_inputs(manifest: dict[str, Any]) -> list[str]:
    """The manifest's raw inputs, its model and every step input no step produced, each once, in order."""
    steps = [s for s in manifest.get("steps") or [] if isinstance(s, dict)]
    outputs = {s.get("output") for s in steps}
    seen: dict[str, None] = {}
    candidates: list[Any] = [*(manifest.get("inputs") or []), manifest.get("model")]
    for s in steps:
        candidates.extend(s.get("inputs") or [])
    for c in candidates:
        if isinstance(c, str) and c not in outputs:
            seen.setdefault(c, None)
    return list(seen)


def name_raw_inputs(s: Session, manifest: dict[str, Any], cids: Iterable[str]) -> dict[str, RawInput]:
    """Each CID's :class:`RawInput`, from the observations, regions and telemetry tables and the manifest;
    a CID nothing names is an ``unknown input``."""
    wanted = list(cids)
    out: dict[str, RawInput] = {}
    model = manifest.get("model")
    if isinstance(model, str):
        # The scoring step names the model card it loaded; the artifact itself carries no name.
        names = [
            str((step.get("params") or {}).get("model"))
            for step in manifest.get("steps") or []
            if isinstance(step, dict)
            and model in (step.get("inputs") or [])
            and isinstance((step.get("params") or {}).get("model"), str)
        ]
        out[model] = RawInput(cid=model, what="model artifact", label=names[0] if names else "trained model")
    for step in manifest.get("steps") or []:
        # The cold-chain rules read (readings, profile, [delivery]); the profile's name is a parameter.
        if isinstance(step, dict) and step.get("name") == "rules" and len(step.get("inputs") or []) >= 2:
            profile = step["inputs"][1]
            name = (step.get("params") or {}).get("profile", "")
            out[profile] = RawInput(cid=profile, what="product profile", label=str(name))
    rest = [c for c in wanted if c not in out]
    if rest:
        for o in s.scalars(select(Observation).where(Observation.cid.in_(rest)).order_by(Observation.id)):
            out.setdefault(o.cid, _observation_input(o))
        for r in s.scalars(select(Region).where(Region.cid.in_(rest))):
            out.setdefault(r.cid, RawInput(cid=r.cid, what="region geometry", label=r.name or r.region_id))
        batches = s.execute(
            select(
                TelemetryReading.batch_cid,
                func.count(TelemetryReading.id),
                func.min(TelemetryReading.device_id),
                func.min(TelemetryReading.shipment_id),
                func.min(TelemetryReading.source),
            )
            .where(TelemetryReading.batch_cid.in_(rest))
            .group_by(TelemetryReading.batch_cid)
        ).all()
        from oracle.devices import device_views

        auth = device_views(s, {str(b[2]) for b in batches})
        for cid, count, device, shipment, source in batches:
            signed = auth.get(device)
            how = ""
            if signed is not None:
                how = f" · {signed['alg']}" + (
                    " (weaker: the oracle holds the secret)" if signed["strength"] == "weaker" else ""
                )
            label = f"{count} readings from {device} · shipment {shipment}{how}"
            out.setdefault(cid, RawInput(cid=cid, what="telemetry batch", label=label, source=source))
    for c in wanted:
        out.setdefault(c, RawInput(cid=c, what="unknown input", label="not in the database"))
    return {c: out[c] for c in wanted}


def _params(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, _SCALAR) or v is None}


def custody_view(manifest: dict[str, Any], raw: dict[str, RawInput]) -> dict[str, Any]:
    """Steps with labelled inputs, the raw inputs, and the stage graph (pure: no I/O)."""
    steps = [s for s in manifest.get("steps") or [] if isinstance(s, dict)]
    produced_by: dict[str, int] = {}
    out_steps: list[dict[str, Any]] = []
    stage_of_step: list[str] = []
    stages: dict[str, dict[str, Any]] = {}
    links: dict[tuple[str, str], None] = {}
    for i, step in enumerate(steps):
        name = str(step.get("name", "?"))
        stage = f"step:{name}"
        inputs = []
        sources = []
        for cid in step.get("inputs") or []:
            cid = str(cid)
            if cid in produced_by:
                j = produced_by[cid]
                inputs.append({"cid": cid, "from_step": j, "what": "step output", "label": steps[j]["name"]})
                sources.append(stage_of_step[j])
            else:
                r = raw.get(cid) or RawInput(cid=cid, what="unknown input", label="")
                inputs.append({"cid": cid, "from_step": None, "what": r.what, "label": r.label})
                src = f"input:{r.what}"
                stages.setdefault(src, {"id": src, "kind": "input", "name": r.what, "cids": set()})
                stages[src]["cids"].add(cid)
                sources.append(src)
        entry = stages.setdefault(stage, {"id": stage, "kind": "step", "name": name, "cids": set()})
        entry["cids"].add(str(step.get("output", "")))
        for src in sources:
            if src != stage:
                links.setdefault((src, stage), None)
        output = str(step.get("output", ""))
        produced_by.setdefault(output, i)
        stage_of_step.append(stage)
        out_steps.append(
            {
                "index": i,
                "name": name,
                "code_version": str(step.get("code_version", "")),
                "params": _params(step.get("params")),
                "inputs": inputs,
                "output": output,
            }
        )
    columns = _columns(stages, list(links))
    return {
        "steps": out_steps,
        "raw_inputs": [asdict(r) for r in sorted(raw.values(), key=lambda r: (r.what, r.label, r.cid))],
        "stages": [
            {"id": k, "kind": v["kind"], "name": v["name"], "count": len(v["cids"]), "column": columns[k]}
            for k, v in stages.items()
        ],
        "links": [{"source": a, "target": b} for a, b in links],
    }


def _columns(stages: dict[str, dict[str, Any]], links: list[tuple[str, str]]) -> dict[str, int]:
    """Layer of each stage: a step one right of its furthest source; an input just left of its first
    consumer (so the model artifact sits next to the scoring step, not with the rasters)."""
    col: dict[str, int] = {}
    step_ids = [k for k, v in stages.items() if v["kind"] == "step"]
    for sid in step_ids:  # steps come in recorded order, so every source step is placed already
        srcs = [a for a, b in links if b == sid and stages[a]["kind"] == "step"]
        col[sid] = 1 + max((col.get(a, 0) for a in srcs), default=0)
    for k, v in stages.items():
        if v["kind"] == "input":
            targets = [col[b] for a, b in links if a == k and b in col]
            col[k] = max(0, min(targets, default=1) - 1)
    return col


def attestation_custody(s: Session, blobs: BlobStore, report_id: str) -> dict[str, Any]:
    """The custody view of report ``report_id``. Raises NotFound for an unknown (or non-numeric) id."""
    row = s.get(ReportRow, int(report_id)) if report_id.isdigit() else None
    if row is None:
        raise NotFound(f"attestation {report_id!r} is not known")
    cid = row.detail.get("manifest_cid")
    empty: dict[str, Any] = {"steps": [], "raw_inputs": [], "stages": [], "links": []}
    base: dict[str, Any] = {"report_id": row.id, "manifest_cid": None, "decision": None, "note": ""}
    if not isinstance(cid, str):
        return (
            base
            | empty
            | {"note": "no decision manifest: this report was attested without a recorded decision"}
        )
    base["manifest_cid"] = cid
    try:
        manifest = json.loads(blobs.get(cid))
    except (OracleError, OSError, ValueError) as e:
        return base | empty | {"note": f"manifest {cid} unreadable: {e.__class__.__name__}"}
    if not isinstance(manifest, dict):
        return base | empty | {"note": f"manifest {cid} is not a JSON object"}
    base["decision"] = {k: manifest.get(k) for k in ("kind", "subject", "period", "status", "reason")}
    raw = name_raw_inputs(s, manifest, unproduced_inputs(manifest))
    return base | custody_view(manifest, raw)
