"""The report's sections as text, shared by the HTML and the PDF renderer so both say the same (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from oracle.disposition.signoffs import Signoff, utc_text


@dataclass(frozen=True)
class Section:
    """A titled block: ``pairs`` (label, value) and/or a table (``headers``, ``rows``), and a ``note``."""

    title: str
    pairs: list[tuple[str, str]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def when(s: int | None) -> str:
    """UNIX seconds as ``YYYY-MM-DD HH:MM UTC``."""
    if s is None:
        return "—"
    return dt.datetime.fromtimestamp(int(s), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(s: float | int | None) -> str:
    """Seconds as ``Hh MMm``."""
    if s is None:
        return "—"
    minutes = round(float(s) / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _num(x: Any, digits: int = 2, unit: str = "") -> str:
    if not isinstance(x, int | float):
        return "—"
    return f"{x:.{digits}f}{unit}"


def _text(x: Any) -> str:
    return "—" if x is None or x == "" else str(x)


def sections(content: dict[str, Any], signoffs: list[Signoff], sha256: str) -> list[Section]:
    """Every section of the report, in order. ``sha256`` is ``content``'s hash: sign-offs of another
    hash are shown as signing an earlier version of the record."""
    ship, profile, dec = content["shipment"], content["profile"], content["decision"]
    att = content.get("attestation")
    out = [
        Section(
            "Shipment and parties",
            pairs=[
                ("Shipment", ship["name"]),
                ("Subject", ship["subject"]),
                ("Escrow status", _text(ship.get("status"))),
                ("Escrow contract", _text(ship.get("escrow"))),
                ("Buyer", _text(ship.get("buyer"))),
                ("Seller", _text(ship.get("seller"))),
                ("Amount held", _text(ship.get("amount_display"))),
                ("Settlement tx", _text(ship.get("settled_tx"))),
            ],
        ),
        Section(
            "Product profile",
            pairs=[
                ("Profile", f"{profile['name']}: {profile['description']}"),
                ("Band", f"{profile['band_low_c']:g} to {profile['band_high_c']:g} °C"),
                ("Hard limits", f"{profile['hard_min_c']:g} / {profile['hard_max_c']:g} °C"),
                ("MKT limit", f"{profile['mkt_max_c']:g} °C over {duration(profile['mkt_window_s'])}"),
                (
                    "Stability budget",
                    f"{duration(profile['budget_allowed_s'])} at {profile['budget_reference_c']:g} °C",
                ),
                ("Duration rules", "; ".join(profile["duration_limits"]) or "—"),
            ],
        ),
        Section(
            "Verdict",
            pairs=[
                ("Verdict", dec["verdict"]),
                (
                    "Decision",
                    f"#{dec['id']} {dec['status']}" + (f" ({dec['reason']})" if dec["reason"] else ""),
                ),
                (
                    "Readings decided on",
                    f"{content['readings']['count']} from {when(content['readings']['first_s'])} "
                    f"to {when(content['readings']['last_s'])}",
                ),
                ("MKT (whole record)", _num(content["mkt_c"], 2, " °C")),
                ("Highest window MKT", _num(content["max_window_mkt_c"], 2, " °C")),
                (
                    "Budget used",
                    _num(100 * content["budget_used"], 1, " %")
                    if isinstance(content["budget_used"], int | float)
                    else "—",
                ),
                ("Time out of band", duration(content["time_out_of_range_s"])),
            ],
        ),
        Section(
            "Excursions",
            headers=["kind", "start", "duration", "peak"],
            rows=[
                [
                    f"{e['kind']} band",
                    when(e["start_s"]),
                    duration(e["duration_s"]),
                    _num(e["peak_c"], 2, " °C"),
                ]
                for e in content["excursions"]
            ],
            note="" if content["excursions"] else "No reading left the band.",
        ),
        Section(
            "Rule breaches",
            headers=["kind", "rule", "reached at", "measured", "limit"],
            rows=[
                [
                    b["kind"],
                    b["rule"],
                    when(b["at_s"]),
                    f"{_num(b['measured'])} {b['unit']}",
                    f"{_num(b['limit'])} {b['unit']}",
                ]
                for b in content["breaches"]
            ],
            note="" if content["breaches"] else "No rule fired.",
        ),
    ]
    if att is None:
        out.append(Section("Attestation", note="The verdict has not been attested on-chain."))
    else:
        net = att.get("network") or {}
        out.append(
            Section(
                "Attestation",
                pairs=[
                    ("Report", f"#{att['report_id']}, epoch {att['epoch']}, value {att['value']}"),
                    ("EIP-712 digest", _text(att.get("digest"))),
                    ("Signers", ", ".join(att["signers"]) or "—"),
                    ("Nodes that signed", ", ".join(net.get("signed") or []) or "—"),
                    ("Transmitted by", _text(net.get("transmitted_by"))),
                    ("State", _text(att.get("state"))),
                    ("Transaction", _text(att.get("tx_hash"))),
                    ("Block", _text(att.get("block_number"))),
                ],
            )
        )
    audit = content["audit"]
    out.append(
        Section(
            "Audit trail",
            pairs=[
                ("Decision manifest", dec["manifest_cid"]),
                ("Inputs root", _text(dec["inputs_root"])),
                ("Model", _text(dec["model_id"])),
                ("Recorded at", _text(dec["recorded_at"])),
            ],
            headers=["#", "step", "code", "output CID"],
            rows=[[str(st["index"]), st["name"], st["code_version"], st["output"]] for st in audit["custody"]]
            + [
                ["chain", ev["name"], f"block {ev['block_number']}", ev["tx_hash"]]
                for ev in audit["chain_events"]
            ],
        )
    )
    out.append(
        Section(
            "Electronic signatures (21 CFR Part 11 §11.50)",
            headers=["#", "printed name", "meaning", "signed at (UTC)", "signs"],
            rows=[
                [
                    str(x.seq),
                    x.printed_name,
                    x.meaning,
                    utc_text(x.signed_at),
                    "this record"
                    if x.content_sha256 == sha256
                    else f"an earlier version: {x.content_sha256}",
                ]
                for x in signoffs
            ],
            note=f"Content SHA-256 of this record: {sha256}. "
            + ("Each signature names the content hash it signs." if signoffs else "Not signed yet."),
        )
    )
    return out


__all__ = ["Section", "duration", "sections", "when"]
