"""The dashboard's overview: regions with their current drought severity, policies, payouts, the
attestation log and rejected inputs, as plain JSON-ready dicts.

Everything here is read-only and bounded (at most ``limit`` rows per list), so a poll every few seconds
stays cheap. Internal columns that may hold secrets or noise (raw transactions, RPC error texts) are never
read into a view.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oracle.reports import VALUE_SCALE, ReportKind, Verdict
from oracle.storage.decision_tables import Decision, Region
from oracle.storage.tables import (
    ChainEvent,
    OutboxRow,
    Payout,
    Policy,
    Reject,
    ReportRow,
    Shipment,
    TelemetryReading,
)

#: US Drought Monitor classes by severity level 0…5 (the DROUGHT_SEVERITY value rounds down to one).
SEVERITY_CLASSES: tuple[str, ...] = ("none", "D0", "D1", "D2", "D3", "D4")


@dataclass(frozen=True, slots=True)
class Token:
    """An ERC-20 as the page shows it: amounts on-chain are integers of ``10**-decimals`` ``symbol``."""

    symbol: str
    decimals: int


#: What the pool pays and the escrow holds: ``TestStablecoin`` as ``deploy_all`` deploys it ("tUSD",
#: ``decimals() == 6``; a test reads both back from a deployed copy).
SETTLEMENT_TOKEN = Token(symbol="tUSD", decimals=6)

#: Report states that come from the chain (the listener saw ``ReportAccepted``; a network round saw its
#: digest land, or a later one take its place). They outrank this node's own transaction, which may still
#: read pending or sent, or reverted because another member's copy of the report landed first.
CHAIN_REPORT_STATES = ("accepted", "confirmed", "superseded")


def token_amount(base_units: str | int | None, token: Token) -> str | None:
    """``base_units`` (an on-chain integer, as stored: a decimal string) in token units with thousands
    separators and the symbol: ``10000000000`` of a 6-decimal "tUSD" is ``"10,000.00 tUSD"``. At least
    two decimals are shown, and every further one that is not zero, so nothing is rounded away. None when
    absent or not an integer."""
    if base_units is None:
        return None
    try:
        n = int(base_units)
    except ValueError:
        return None
    whole, frac = divmod(abs(n), 10**token.decimals)
    digits = str(frac).rjust(token.decimals, "0").rstrip("0") if token.decimals else ""
    if token.decimals:
        digits = digits.ljust(min(2, token.decimals), "0")
    sign = "-" if n < 0 else ""
    return f"{sign}{whole:,}{'.' + digits if digits else ''} {token.symbol}"


def attestation_state(report_status: str, tx_status: str | None) -> str:
    """The one word the attestation log shows: the chain's when it has spoken (``CHAIN_REPORT_STATES``),
    else this node's transaction's (pending, signed, sent, confirmed, reverted), else the report's own
    (pending, queued)."""
    if report_status in CHAIN_REPORT_STATES:
        return report_status
    return tx_status or report_status


def fixed_to_float(value: str | None) -> float | None:
    """A stored fixed-point decimal string (× ``VALUE_SCALE``) as a float; None when absent or garbled."""
    if value is None:
        return None
    try:
        return float(int(value) / VALUE_SCALE)
    except ValueError:
        return None


def severity_class(severity: float | None) -> str:
    """``none``/``D0``…``D4`` for a severity 0…5; ``unknown`` when there is none."""
    if severity is None:
        return "unknown"
    level = min(len(SEVERITY_CLASSES) - 1, max(0, int(severity)))
    return SEVERITY_CLASSES[level]


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:  # SQLite hands back naive datetimes that were written as UTC
        t = t.replace(tzinfo=dt.UTC)
    return t.isoformat()


def top_factors(raw: Any, n: int = 3) -> list[dict[str, Any]]:
    """The first ``n`` explanation factors as ``{"name", "value", "contribution"}``.

    Decisions store ``{"feature", "value", "contribution"}``; older or manual reports may use
    ``{"name", "weight"}``. Anything else is skipped rather than shown half-parsed."""
    out: list[dict[str, Any]] = []
    if not isinstance(raw, list):
        return out
    for f in raw:
        if not isinstance(f, dict):
            continue
        name = f.get("feature", f.get("name"))
        if not isinstance(name, str):
            continue
        contribution = f.get("contribution", f.get("weight"))
        value = f.get("value")
        out.append(
            {
                "name": name,
                "value": value if isinstance(value, int | float) else None,
                "contribution": contribution if isinstance(contribution, int | float) else None,
            }
        )
        if len(out) == n:
            break
    return out


def regions_view(s: Session) -> list[dict[str, Any]]:
    """Every region with its geometry and its latest complete decision (the current severity)."""
    regions = s.scalars(select(Region).order_by(Region.region_id)).all()
    latest: dict[str, Decision] = {}
    decisions = s.scalars(
        select(Decision).where(Decision.kind == "drought").order_by(Decision.period, Decision.id)
    ).all()
    last_any: dict[str, Decision] = {}
    for dec in decisions:
        last_any[dec.subject_name] = dec
        if dec.status == "complete":
            latest[dec.subject_name] = dec
    out = []
    for r in regions:
        d: Decision | None = latest.get(r.region_id)
        severity = fixed_to_float(d.value) if d is not None else None
        newest = last_any.get(r.region_id)
        out.append(
            {
                "region_id": r.region_id,
                "name": r.name or r.region_id,
                "subject": r.subject,
                "geometry": r.geometry,
                "severity": severity,
                "class": severity_class(severity),
                "period": d.period if d is not None else None,
                "confidence": d.confidence if d is not None else None,
                "factors": top_factors(d.factors) if d is not None else [],
                "latest_status": newest.status if newest is not None else None,
                "latest_reason": newest.reason if newest is not None else "",
            }
        )
    return out


def policies_view(s: Session, *, limit: int = 200, token: Token = SETTLEMENT_TOKEN) -> list[dict[str, Any]]:
    """Policies with their terms as severities, the insured region's name and what they were paid, if
    anything: ``payout`` is the sum of their payouts, ``payout_tx`` the latest one's transaction.
    ``limit``/``payout`` are base units; ``*_display`` the same in ``token`` units."""
    names = {r.subject: r.name or r.region_id for r in s.scalars(select(Region))}
    totals: dict[tuple[str, int], int] = {}
    latest: dict[tuple[str, int], str] = {}
    for row in s.scalars(select(Payout).order_by(Payout.block_number, Payout.log_index)):
        totals[(row.pool, row.policy_id)] = totals.get((row.pool, row.policy_id), 0) + int(row.amount)
        latest[(row.pool, row.policy_id)] = row.tx_hash
    out = []
    for p in s.scalars(select(Policy).order_by(Policy.pool, Policy.policy_id).limit(limit)):
        total = totals.get((p.pool, p.policy_id))
        out.append(
            {
                "pool": p.pool,
                "policy_id": p.policy_id,
                "insured": p.insured,
                "region": names.get(p.region_subject, p.region_subject),
                "coverage_start": p.coverage_start,
                "coverage_end": p.coverage_end,
                "trigger": fixed_to_float(p.trigger),
                "exit": fixed_to_float(p.exit),
                "limit": p.limit,
                "limit_display": token_amount(p.limit, token),
                "status": p.status,
                "payout": str(total) if total is not None else None,
                "payout_display": token_amount(str(total), token) if total is not None else None,
                "payout_tx": latest.get((p.pool, p.policy_id)),
            }
        )
    return out


def payouts_view(s: Session, *, limit: int = 200, token: Token = SETTLEMENT_TOKEN) -> list[dict[str, Any]]:
    rows = s.scalars(select(Payout).order_by(Payout.block_number.desc(), Payout.id.desc()).limit(limit))
    return [
        {
            "pool": p.pool,
            "policy_id": p.policy_id,
            "insured": p.insured,
            "amount": p.amount,
            "amount_display": token_amount(p.amount, token),
            "epoch": p.epoch,
            "tx_hash": p.tx_hash,
            "block_number": p.block_number,
        }
        for p in rows
    ]


def _display_value(kind: int, value: str) -> str:
    if kind == int(ReportKind.DROUGHT_SEVERITY):
        f = fixed_to_float(value)
        return f"{f:.3f}" if f is not None else value
    if kind == int(ReportKind.COLDCHAIN_VERDICT):
        try:
            return Verdict(int(value)).name
        except ValueError:
            return value
    return value


def attestations_view(s: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest reports with their transaction (hash, status, block, gas) and top-3 factors.

    ``state`` is what to show (:func:`attestation_state`). Once the chain accepted a report, its ``tx_hash``
    and ``block_number`` are those of the transaction that carried it, whoever sent it."""
    reports = s.scalars(select(ReportRow).order_by(ReportRow.id.desc()).limit(limit)).all()
    ids = [r.id for r in reports]
    txs = {
        o.report_id: o
        for o in s.scalars(select(OutboxRow).where(OutboxRow.report_id.in_(ids)).order_by(OutboxRow.id)).all()
    }
    out = []
    for r in reports:
        tx = txs.get(r.id)
        on_chain = r.status in CHAIN_REPORT_STATES
        chain_tx = _str_or_none(r.detail.get("tx_hash"))
        chain_block = r.detail.get("block")
        kind_name = ReportKind(r.kind).name if r.kind in ReportKind._value2member_map_ else str(r.kind)
        out.append(
            {
                "id": r.id,
                "subject": r.subject,
                "subject_name": r.subject_name,
                "kind": kind_name,
                "value": r.value,
                "display_value": _display_value(r.kind, r.value),
                "epoch": r.epoch,
                "observed_at": r.observed_at,
                "inputs_root": r.inputs_root,
                "model_id": r.model_id,
                "status": r.status,
                "state": attestation_state(r.status, tx.status if tx is not None else None),
                "created_at": _iso(r.created_at),
                "factors": top_factors(r.detail.get("factors")),
                "signers": [x for x in r.detail.get("signers", []) if isinstance(x, str)],
                "manifest_cid": r.detail.get("manifest_cid")
                if isinstance(r.detail.get("manifest_cid"), str)
                else None,
                # On a network node that did not transmit, the transaction another member sent.
                "tx_hash": chain_tx
                if chain_tx is not None and (on_chain or tx is None)
                else (tx.tx_hash if tx is not None else None),
                "tx_status": tx.status if tx is not None else None,
                "block_number": chain_block
                if isinstance(chain_block, int) and (on_chain or tx is None)
                else (tx.block_number if tx is not None else None),
                "gas_used": tx.gas_used if tx is not None else None,
                "revert_reason": tx.revert_reason if tx is not None else None,
                "network": network_word(s, r),
            }
        )
    return out


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def network_word(s: Session, report: ReportRow) -> dict[str, Any] | None:
    """On a network node: which members signed this report's digest, which signed another one (a
    disagreement), whose signatures this node combined, and who transmitted. ``None`` on a single node."""
    from oracle.storage.network_tables import NetworkRound, PeerSignature

    rnd = s.scalar(select(NetworkRound).where(NetworkRound.report_id == report.id))
    if rnd is None:
        return None
    sigs = s.scalars(
        select(PeerSignature)
        .where(PeerSignature.subject == rnd.subject, PeerSignature.epoch == rnd.epoch)
        .order_by(PeerSignature.node_id)
    ).all()
    transmitted = report.detail.get("transmitted_by")
    return {
        "round": rnd.status,
        "signed": [x.node_id for x in sigs if x.digest == rnd.digest],
        "disagreed": [x.node_id for x in sigs if x.digest != rnd.digest],
        "combined": list(rnd.combined),
        "transmitted_by": transmitted if isinstance(transmitted, str) else None,
    }


def rejects_view(s: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = s.scalars(select(Reject).order_by(Reject.id.desc()).limit(limit))
    return [
        {
            "id": r.id,
            "source": r.source,
            "reason": r.reason,
            "message": r.message,
            "subject": r.subject,
            "cid": r.cid,
            "received_at": _iso(r.received_at),
        }
        for r in rows
    ]


def change_cursor(s: Session) -> str:
    """A short token that changes whenever anything the dashboard shows changes: the page polls it and
    re-fetches only when it moves."""
    parts = [
        s.scalar(select(func.max(ReportRow.id))),
        s.scalar(select(func.count(ReportRow.id)).where(ReportRow.status.in_(CHAIN_REPORT_STATES))),
        # Every event the listener projects (a report accepted, a shipment voided or released, a policy
        # paid) is stored with its effect, so the newest one moves the cursor whatever it changed.
        s.scalar(select(func.max(ChainEvent.id))),
        s.scalar(select(func.max(OutboxRow.updated_at))),
        s.scalar(select(func.count(OutboxRow.id)).where(OutboxRow.tx_hash.is_not(None))),
        s.scalar(select(func.max(Decision.id))),
        s.scalar(select(func.count(Region.region_id))),
        s.scalar(select(func.count(Policy.policy_id))),
        s.scalar(select(func.count(Policy.policy_id)).where(Policy.status != "active")),
        s.scalar(select(func.max(Payout.id))),
        s.scalar(select(func.count(Shipment.subject))),
        s.scalar(select(func.count(Shipment.subject)).where(Shipment.status != "open")),
        s.scalar(select(func.max(TelemetryReading.id))),
        s.scalar(select(func.max(Reject.id))),
    ]
    return ".".join("" if p is None else str(p) for p in parts)


def overview(s: Session, *, token: Token = SETTLEMENT_TOKEN) -> dict[str, Any]:
    """Everything the page's panels list, in one answer; ``token`` is what amounts are counted in."""
    from oracle.dashboard.shipments import shipments_view

    return {
        "cursor": change_cursor(s),
        "token": {"symbol": token.symbol, "decimals": token.decimals},
        "regions": regions_view(s),
        "policies": policies_view(s, token=token),
        "payouts": payouts_view(s, token=token),
        "shipments": shipments_view(s, token=token),
        "attestations": attestations_view(s),
        "rejects": rejects_view(s),
    }
