"""What a disposition report says about one shipment, assembled from the record.

Everything comes from what the oracle stored: the shipment's latest cold-chain decision and its manifest
in the content store (the readings the rules saw, the product profile's YAML, the rules' output: breaches,
MKT, budget used), the attestation of its report (signers, transaction, block), the escrow as the chain
listener projected it, and the decision's chain of custody. No wall-clock time enters, so the same record
always gives the same :func:`content_sha256`; a sign-off names that hash, and a record that changed since
(a transaction confirmed, a new decision) no longer matches it.

Shape of :func:`build_disposition` (JSON-ready)::

    {"format", "shipment": {name, subject, status, escrow, buyer, seller, amount, amount_display,
     deadline, settled_tx}, "profile": {name, description, band_low_c, band_high_c, hard_min_c,
     hard_max_c, mkt_max_c, mkt_window_s, budget_reference_c, budget_allowed_s, duration_limits},
     "decision": {id, status, reason, verdict, manifest_cid, inputs_root, model_id, recorded_at},
     "readings": {count, first_s, last_s, t, temp_c}, "excursions": [{kind, start_s, end_s,
     duration_s, peak_c}], "breaches": [...], "mkt_c", "max_window_mkt_c", "budget_used",
     "time_out_of_range_s", "attestation": {...} | None, "audit": {custody, chain_events}}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from oracle.decisions.trace import canonical_json
from oracle.errors import NotFound, OracleError
from oracle.reports import ReportKind, Verdict, subject_id
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Decision
from oracle.storage.tables import ChainEvent, OutboxRow, ReportRow, Shipment

FORMAT = "disposition/1"


@dataclass(frozen=True)
class Excursion:
    """One run of readings outside the band. ``kind``: ``above`` or ``below``; times UNIX s; a reading
    stands until the next one (sample-and-hold), the last one for one more median interval."""

    kind: str
    start_s: int
    end_s: int
    peak_c: float

    @property
    def duration_s(self) -> int:
        return self.end_s - self.start_s


def excursions(ts_s: list[int], temp_c: list[float], *, low_c: float, high_c: float) -> list[Excursion]:
    """The runs of readings above ``high_c`` or below ``low_c``, in time order (pure)."""
    if not ts_s:
        return []
    steps = sorted(b - a for a, b in itertools.pairwise(ts_s))
    last_step = steps[len(steps) // 2] if steps else 0
    out: list[Excursion] = []
    run: tuple[str, int, float] | None = None  # (kind, start index, peak)
    for i, t in enumerate(temp_c):
        kind = "above" if t > high_c else "below" if t < low_c else None
        if run is not None and kind != run[0]:
            out.append(Excursion(run[0], ts_s[run[1]], ts_s[i], run[2]))
            run = None
        if kind is not None:
            if run is None:
                run = (kind, i, t)
            else:
                run = (kind, run[1], max(run[2], t) if kind == "above" else min(run[2], t))
    if run is not None:
        out.append(Excursion(run[0], ts_s[run[1]], ts_s[-1] + last_step, run[2]))
    return out


def content_sha256(content: dict[str, Any]) -> str:
    """Hex SHA-256 of the content's canonical JSON: what a sign-off signs."""
    return hashlib.sha256(canonical_json(content)).hexdigest()


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def resolve_shipment(s: Session, shipment: str) -> tuple[str, str]:
    """(telemetry name, 0x subject) of ``shipment``, given as either. Raises NotFound."""
    # A subject is 0x + 64 hex digits; a shipment name also begins with 0x (its buyer's address) but has
    # a ":" after 40 digits.
    if re.fullmatch(r"0x[0-9a-fA-F]{64}", shipment):
        subject = shipment.lower()
        name = s.scalar(
            select(Decision.subject_name).where(Decision.kind == "coldchain", Decision.subject == subject)
        )
        if name is None:
            raise NotFound(f"no cold-chain decision for shipment subject {shipment}")
        return name, subject
    return shipment, "0x" + subject_id("shipment", shipment).hex()


def _decision(s: Session, name: str) -> Decision:
    rows = s.scalars(
        select(Decision)
        .where(Decision.kind == "coldchain", Decision.subject_name == name)
        .order_by(Decision.id)
    ).all()
    if not rows:
        raise NotFound(f"no shipment {name!r} with a cold-chain decision: nothing to report yet")
    attested = [d for d in rows if d.report_id is not None]
    complete = [d for d in rows if d.status == "complete"]
    return (attested or complete or rows)[-1]


def _json_blob(blobs: BlobStore, cid: str) -> Any:
    try:
        return json.loads(blobs.get(cid))
    except (OracleError, OSError, ValueError) as e:
        raise NotFound(f"record {cid} of the decision is unreadable: {e.__class__.__name__}") from None


def _profile(raw: bytes) -> dict[str, Any]:
    from models.coldchain.profiles import parse_profile

    p = parse_profile(raw.decode())
    return {
        "name": p.name,
        "description": p.description,
        "band_low_c": p.band_low_c,
        "band_high_c": p.band_high_c,
        "hard_min_c": p.hard_min_c,
        "hard_max_c": p.hard_max_c,
        "mkt_max_c": p.mkt.max_c,
        "mkt_window_s": p.mkt.window_s,
        "budget_reference_c": p.budget.reference_c,
        "budget_allowed_s": p.budget.allowed_s,
        "gap_limit_s": p.gap_limit_s,
        "duration_limits": [d.describe() for d in p.duration_limits],
    }


def _shipment(s: Session, subject: str) -> dict[str, Any]:
    from oracle.dashboard.views import SETTLEMENT_TOKEN, token_amount

    row = s.get(Shipment, subject)
    if row is None:
        return {"status": "not escrowed"}
    return {
        "status": row.status,
        "escrow": row.escrow,
        "buyer": row.buyer,
        "seller": row.seller,
        "amount": row.amount,
        "amount_display": token_amount(row.amount, SETTLEMENT_TOKEN),
        "deadline": row.deadline,
        "settled_tx": row.settled_tx,
    }


def _attestation(s: Session, report_id: int | None, domain: tuple[int, str] | None) -> dict[str, Any] | None:
    from oracle.dashboard.views import CHAIN_REPORT_STATES, attestation_state, network_word
    from oracle.reports import Report, report_digest

    r = s.get(ReportRow, report_id) if report_id is not None else None
    if r is None:
        return None
    tx = s.scalars(select(OutboxRow).where(OutboxRow.report_id == r.id).order_by(OutboxRow.id)).first()
    on_chain = r.status in CHAIN_REPORT_STATES
    chain_tx, chain_block = r.detail.get("tx_hash"), r.detail.get("block")
    use_chain = isinstance(chain_tx, str) and (on_chain or tx is None)
    network = network_word(s, r)
    digest = None
    if domain is not None:
        report = Report(
            subject=bytes.fromhex(r.subject[2:]),
            kind=ReportKind(r.kind),
            value=int(r.value),
            epoch=int(r.epoch),
            observed_at=int(r.observed_at),
            inputs_root=bytes.fromhex(r.inputs_root[2:]),
            model_id=bytes.fromhex(r.model_id[2:]),
        )
        digest = "0x" + report_digest(report, chain_id=domain[0], router=domain[1]).hex()
    return {
        "report_id": r.id,
        "epoch": int(r.epoch),
        "value": r.value,
        "observed_at": int(r.observed_at),
        "digest": digest,
        "signers": [x for x in r.detail.get("signers", []) if isinstance(x, str)],
        "network": network,
        "state": attestation_state(r.status, tx.status if tx is not None else None),
        "tx_hash": chain_tx if use_chain else (tx.tx_hash if tx is not None else None),
        "block_number": chain_block
        if use_chain and isinstance(chain_block, int)
        else (tx.block_number if tx is not None else None),
    }


def _custody(s: Session, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    from oracle.dashboard.custody import custody_view, name_raw_inputs, unproduced_inputs

    view = custody_view(manifest, name_raw_inputs(s, manifest, unproduced_inputs(manifest)))
    return [
        {
            "index": st["index"],
            "name": st["name"],
            "code_version": st["code_version"],
            "output": st["output"],
            "inputs": [f"{i['what']}: {i['label']}".strip(": ") for i in st["inputs"]],
        }
        for st in view["steps"]
    ]


def build_disposition(
    s: Session, blobs: BlobStore, shipment: str, *, domain: tuple[int, str] | None = None
) -> dict[str, Any]:
    """The disposition content of ``shipment`` (telemetry name or 0x subject). ``domain`` (chain id,
    router address) lets the report's EIP-712 digest be shown. Raises NotFound: no such shipment, no
    decision yet, or a decision without a rule evaluation (nothing to dispose of)."""
    name, subject = resolve_shipment(s, shipment)
    decision = _decision(s, name)
    manifest = _json_blob(blobs, decision.manifest_cid)
    steps = {st.get("name"): st for st in manifest.get("steps") or [] if isinstance(st, dict)}
    rules_step = steps.get("rules")
    if rules_step is None or len(rules_step.get("inputs") or []) < 2:
        raise NotFound(
            f"shipment {name!r}: decision {decision.id} has no rule evaluation "
            f"({decision.status}: {decision.reason or 'no readings'})"
        )
    rules = _json_blob(blobs, rules_step["output"])
    readings = _json_blob(blobs, rules_step["inputs"][0])["readings"]
    profile = _profile(blobs.get(rules_step["inputs"][1]))
    by_second: dict[int, float] = {}
    for r in readings:
        by_second.setdefault(int(r["ts_ms"]) // 1000, float(r["temp_c"]))
    ts = sorted(by_second)
    temps = [by_second[t] for t in ts]
    found = excursions(ts, temps, low_c=profile["band_low_c"], high_c=profile["band_high_c"])
    verdict = int(decision.value) if decision.value is not None else int(rules["verdict"])
    events: list[dict[str, Any]] = []
    attestation = _attestation(s, decision.report_id, domain)
    ship = _shipment(s, subject)
    hashes = {h for h in (ship.get("settled_tx"), (attestation or {}).get("tx_hash")) if isinstance(h, str)}
    if hashes:
        for ev in s.scalars(
            select(ChainEvent)
            .where(ChainEvent.tx_hash.in_(hashes))
            .order_by(ChainEvent.block_number, ChainEvent.log_index)
        ):
            events.append(
                {
                    "name": ev.name,
                    "contract": ev.contract,
                    "tx_hash": ev.tx_hash,
                    "block_number": ev.block_number,
                }
            )
    return {
        "format": FORMAT,
        "shipment": {"name": name, "subject": subject, **ship},
        "profile": profile,
        "decision": {
            "id": decision.id,
            "status": decision.status,
            "reason": decision.reason,
            "verdict": Verdict(verdict).name,
            "manifest_cid": decision.manifest_cid,
            "inputs_root": decision.inputs_root,
            "model_id": decision.model_id,
            "recorded_at": _iso(decision.created_at),
        },
        "readings": {
            "count": len(ts),
            "first_s": ts[0] if ts else None,
            "last_s": ts[-1] if ts else None,
            "t": ts,
            "temp_c": temps,
        },
        "excursions": [
            {
                "kind": e.kind,
                "start_s": e.start_s,
                "end_s": e.end_s,
                "duration_s": e.duration_s,
                "peak_c": e.peak_c,
            }
            for e in found
        ],
        "breaches": rules["breaches"],
        "mkt_c": rules["mkt_c"],
        "max_window_mkt_c": rules["max_window_mkt_c"],
        "budget_used": rules["budget_used"],
        "time_out_of_range_s": rules["time_out_of_range_s"],
        "attestation": attestation,
        "audit": {"custody": _custody(s, manifest), "chain_events": events},
    }


def record_time(content: dict[str, Any]) -> dt.datetime:
    """The time the record speaks for (the decision's recording), for the PDF's metadata dates."""
    raw = content["decision"].get("recorded_at")
    if isinstance(raw, str):
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return dt.datetime.fromtimestamp(int(content["readings"]["last_s"] or 0), dt.UTC)


__all__ = [
    "Excursion",
    "build_disposition",
    "content_sha256",
    "excursions",
    "record_time",
    "resolve_shipment",
]
