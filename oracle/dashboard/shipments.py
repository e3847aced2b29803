"""Shipments for the dashboard: the escrowed shipments and the telemetry streams, joined by subject, and one
shipment's temperature series against its product profile's band with breach and early-warning markers.

A shipment is known on-chain by its subject ``subject_id("shipment", name)`` and to telemetry by its name;
the escrow's ``profile`` is a bytes32 holding a shipped profile's name in ASCII, zero-padded
(:func:`oracle.decisions.coldchain.profile_bytes32`, the one convention). Anything else is shown as an
unknown profile, without a band.

Markers (UNIX seconds):

* ``breach``: the instant each rule of the profile fired (:func:`models.coldchain.rules.evaluate_rules`);
* ``warning``: the start of each excursion out of the labelled band that has not (yet) become a breach:
  the early sign an operator can still act on.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oracle.dashboard.views import SETTLEMENT_TOKEN, Token, token_amount
from oracle.errors import NotFound, ValidationError
from oracle.reports import ReportKind, subject_id
from oracle.storage.tables import ReportRow, Shipment, TelemetryReading

#: The chart never needs more points than a screen is wide; longer series are bucketed (min and max kept).
MAX_POINTS = 1_500


@functools.cache
def _profile_hashes() -> dict[str, str]:
    from models.coldchain.profiles import profile_names
    from oracle.decisions.coldchain import profile_bytes32

    return {"0x" + profile_bytes32(name).hex(): name for name in profile_names()}


def profile_name(profile_hash: str | None) -> str | None:
    """The shipped profile a stored bytes32 names, or None."""
    if not profile_hash:
        return None
    return _profile_hashes().get(profile_hash.lower())


def _names_by_subject(s: Session) -> dict[str, str]:
    names: dict[str, str] = {}
    for (shipment_id,) in s.execute(select(TelemetryReading.shipment_id).distinct()):
        names["0x" + subject_id("shipment", shipment_id).hex()] = shipment_id
    for subject, name in s.execute(
        select(ReportRow.subject, ReportRow.subject_name)
        .where(ReportRow.kind == int(ReportKind.COLDCHAIN_VERDICT), ReportRow.subject_name != "")
        .distinct()
    ):
        names.setdefault(subject, name.removeprefix("shipment:"))
    return names


def shipments_view(s: Session, *, limit: int = 200, token: Token = SETTLEMENT_TOKEN) -> list[dict[str, Any]]:
    """Every escrowed shipment and every telemetry stream, newest readings first. ``status`` is the
    escrow's as the listener projected it (open, voided, released, reclaimed), or "not escrowed"."""
    names = _names_by_subject(s)
    stats = {
        shipment_id: (n, last)
        for shipment_id, n, last in s.execute(
            select(
                TelemetryReading.shipment_id,
                func.count(TelemetryReading.id),
                func.max(TelemetryReading.ts_ms),
            ).group_by(TelemetryReading.shipment_id)
        )
    }
    rows = {r.subject: r for r in s.scalars(select(Shipment))}
    out = []
    for subject in sorted(set(rows) | set(names)):
        row = rows.get(subject)
        name = names.get(subject)
        n, last = stats.get(name or "", (0, None))
        out.append(
            {
                "subject": subject,
                "name": name,
                "status": row.status if row is not None else "not escrowed",
                "profile": profile_name(row.profile) if row is not None else None,
                "profile_hash": row.profile if row is not None else None,
                "amount": row.amount if row is not None else None,
                "amount_display": token_amount(row.amount, token) if row is not None else None,
                "buyer": row.buyer if row is not None else None,
                "seller": row.seller if row is not None else None,
                "deadline": row.deadline if row is not None else None,
                "settled_tx": row.settled_tx if row is not None else None,
                "readings": n,
                "last_reading_ms": last,
            }
        )
    out.sort(key=lambda x: (-int(x["last_reading_ms"] or 0), str(x["name"] or ""), str(x["subject"])))
    return out[:limit]


def _bucket(ts: np.ndarray, temp: np.ndarray) -> tuple[list[int], list[float]]:
    if len(ts) <= MAX_POINTS:
        return [int(t) for t in ts], [float(v) for v in temp]
    out_t: list[int] = []
    out_v: list[float] = []
    for chunk in np.array_split(np.arange(len(ts)), MAX_POINTS // 2):
        lo, hi = int(chunk[np.argmin(temp[chunk])]), int(chunk[np.argmax(temp[chunk])])
        for i in sorted({lo, hi}):
            out_t.append(int(ts[i]))
            out_v.append(float(temp[i]))
    return out_t, out_v


def _markers(
    ts: np.ndarray, temp: np.ndarray, profile_key: str, *, delivered: bool
) -> tuple[list[dict[str, Any]], str]:
    from models.coldchain.profiles import load_profile
    from models.coldchain.readings import make_readings
    from models.coldchain.rules import evaluate_rules

    profile = load_profile(profile_key)
    try:
        verdict = evaluate_rules(make_readings(ts, temp), profile, delivered=delivered)
    except ValidationError as e:
        return [], f"rules not evaluated: {e}"
    markers: list[dict[str, Any]] = [
        {
            "type": "breach",
            "at_s": b.at_s,
            "kind": b.kind.value,
            "rule": b.rule,
            "measured": b.measured,
            "limit": b.limit,
            "unit": b.unit,
        }
        for b in verdict.breaches
    ]
    outside = (temp < profile.band_low_c) | (temp > profile.band_high_c)
    starts = np.flatnonzero(outside & ~np.concatenate(([False], outside[:-1])))
    first_breach = verdict.first_breach_s
    for i in starts:
        at = int(ts[i])
        if first_breach is None or at < first_breach:
            markers.append(
                {
                    "type": "warning",
                    "at_s": at,
                    "kind": "excursion",
                    "rule": f"left the {profile.band_low_c:g}-{profile.band_high_c:g} °C band",
                    "measured": float(temp[i]),
                    "limit": profile.band_high_c if temp[i] > profile.band_high_c else profile.band_low_c,
                    "unit": "°C",
                }
            )
    markers.sort(key=lambda m: (m["at_s"], m["type"]))
    return markers, verdict.verdict.name


def _disposition_links(s: Session, name: str | None) -> dict[str, str] | None:
    """Where the shipment's disposition report is (:mod:`oracle.api.routes.dispositions`), once a
    cold-chain decision exists to report on."""
    from urllib.parse import quote

    from oracle.storage.decision_tables import Decision

    if not name:
        return None
    decided = s.scalar(select(Decision.id).where(Decision.kind == "coldchain", Decision.subject_name == name))
    if decided is None:
        return None
    base = f"/v1/shipments/{quote(name, safe='')}/disposition"
    return {"pdf": base + ".pdf", "html": base + ".html", "json": base}


def shipment_detail(s: Session, subject_or_name: str) -> dict[str, Any]:
    """One shipment's chart: ``series`` (UNIX s, °C), the profile ``band`` and ``markers``, its
    ``devices`` with how each signs (HS256 marked weaker: the oracle holds its secret), and the
    ``disposition`` report's URLs (None before the shipment has a decision).

    ``subject_or_name`` is the 0x subject or the telemetry shipment name. Raises NotFound."""
    overview = {x["subject"]: x for x in shipments_view(s, limit=10_000)}
    item = overview.get(subject_or_name.lower())
    if item is None:
        item = next((x for x in overview.values() if x["name"] == subject_or_name), None)
    if item is None:
        raise NotFound(f"no shipment {subject_or_name!r} (neither escrowed nor seen in telemetry)")
    rows = (
        s.execute(
            select(TelemetryReading.ts_ms, TelemetryReading.temp_c)
            .where(TelemetryReading.shipment_id == item["name"])
            .order_by(TelemetryReading.ts_ms, TelemetryReading.id)
        ).all()
        if item["name"]
        else []
    )
    # Two loggers in one box may stamp the same second; the rules need one reading per instant.
    seen: dict[int, float] = {}
    for ts_ms, temp_c in rows:
        seen.setdefault(int(ts_ms) // 1000, float(temp_c))
    ts = np.fromiter(seen.keys(), dtype=np.int64, count=len(seen))
    temp = np.fromiter(seen.values(), dtype=np.float64, count=len(seen))
    band: dict[str, float] | None = None
    markers: list[dict[str, Any]] = []
    rules_verdict: str | None = None
    note = ""
    if item["profile"] is not None:
        from models.coldchain.profiles import load_profile

        p = load_profile(item["profile"])
        band = {"low_c": p.band_low_c, "high_c": p.band_high_c}
        if len(ts):
            markers, rules_verdict = _markers(
                ts, temp, item["profile"], delivered=item["status"] in ("released", "voided")
            )
    else:
        note = "unknown product profile: no band or rule markers" if item["profile_hash"] else ""
    if rules_verdict is not None and rules_verdict.startswith("rules not"):
        note, rules_verdict = rules_verdict, None
    chart_t, chart_v = _bucket(ts, temp)
    devices: list[dict[str, Any]] = []
    if item["name"]:
        from oracle.devices import device_views
        from oracle.storage.tables import DeviceBinding

        bound = s.scalars(select(DeviceBinding.device_id).where(DeviceBinding.shipment_id == item["name"]))
        devices = list(device_views(s, bound).values())
    return {
        **item,
        "disposition": _disposition_links(s, item["name"]),
        "devices": devices,
        "band": band,
        "series": {"t": chart_t, "temp_c": chart_v},
        "markers": markers,
        "rules_verdict": rules_verdict,
        "note": note,
    }
