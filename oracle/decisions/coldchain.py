"""Cold-chain evaluation of one shipment: signed telemetry batches → readings → rules (the on-chain
verdict) and the breach model (alerts), every step recorded like a drought decision.

Inputs: the content-store batches that carried the shipment's accepted readings (signed envelopes), the
product profile's YAML, the scheduled hand-over when the terms carry one (:func:`schedule_document`: the
expected delivery both parties agreed on in the escrow, for the early warning's forecast), and — once the
shipment is handed over — the delivery confirmation. The verdict is the deterministic rule engine's:
BREACH voids the escrow and refunds the buyer; DELIVERED without a breach releases payment to the seller;
otherwise no report is posted (the shipment is still travelling and fine). The model's probabilities and
the early warning raise alerts; they void a shipment only when its terms say so
(``model_void_threshold``), never by default.

Report: subject ``shipment:<id>``, kind COLDCHAIN_VERDICT, value 1 (BREACH) or 2 (DELIVERED),
observedAt = the evaluation time (the last reading's time, or the delivery time), epoch = 1 + revision.
``modelId`` is the breach model artifact pinned for the decision.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cbor2
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.numerics import quantise
from oracle.decisions.record import DecisionOutcome, lacking_inputs, record_decision
from oracle.decisions.trace import Trace, canonical_json, step_boundary
from oracle.errors import NotFound, ValidationError
from oracle.provenance import merkle_root
from oracle.reports import Report, ReportKind, Verdict, subject_id
from oracle.storage.blobs import BlobStore
from oracle.storage.tables import Blob, DeviceBinding, Observation, Shipment, TelemetryReading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShipmentTerms:
    """Off-chain terms of a shipment. ``model_void_threshold``: void on the model's probability alone
    when it reaches this value (None: the rules decide, the model only alerts)."""

    profile: str | None = None
    model_void_threshold: float | None = None
    alert_threshold: float = 0.5
    #: What flagged readings (stuck sensor, impossible rate, spike) do: "exclude" them from the rules,
    #: "hold" the decision for review, or only "record" them. Clock faults always hold: excluding them
    #: would open a data gap that is itself a breach.
    quality_mode: str = "exclude"
    #: Scheduled hand-over (UNIX seconds) of a shipment with no escrow; a registered escrow's own
    #: ``expectedDelivery`` (the terms both parties agreed on) takes precedence.
    expected_delivery_s: int | None = None


def profile_name(profile: bytes) -> str:
    """The profile name from the escrow's bytes32 (ASCII, right-padded with zeros)."""
    name = profile.rstrip(b"\x00").decode("ascii", errors="replace")
    if not name.isidentifier():
        raise ValidationError(
            f"shipment profile {profile.hex()} is not a known profile name", reason="bad_profile"
        )
    return name


def profile_bytes32(name: str) -> bytes:
    raw = name.encode("ascii")
    if len(raw) > 32:
        raise ValidationError(f"profile name {name!r} longer than 32 bytes", reason="bad_profile")
    return raw.ljust(32, b"\x00")


# -- pure steps ----------------------------------------------------------------------------------------


def readings_step(batches: list[bytes], params: dict[str, Any]) -> dict[str, Any]:
    """The shipment's readings, taken from the signed batches: readings of its devices inside their binding
    windows, minus the ones refused at ingest (``excluded``), first occurrence of each (device, seq)."""
    from ingest.telemetry.envelope import parse_envelope, validate_reading

    windows = {d: (int(w[0]), None if w[1] is None else int(w[1])) for d, w in params["devices"].items()}
    excluded = {(d, int(q)) for d, q in params["excluded"]}
    seen: set[tuple[str, int]] = set()
    rows: list[dict[str, Any]] = []
    for batch in batches:
        for message in cbor2.loads(batch):
            device = str(message["device"])
            if device not in windows:
                continue
            try:
                envelope = parse_envelope(bytes(message["payload"]))
            except ValidationError:
                continue
            start, end = windows[device]
            for item in envelope.items:
                try:
                    r = validate_reading(item)
                except ValidationError:
                    continue
                key = (device, int(r.seq))
                if key in seen or key in excluded or r.ts_ms < start or (end is not None and r.ts_ms >= end):
                    continue
                seen.add(key)
                rows.append(
                    {
                        "device": device,
                        "seq": int(r.seq),
                        "ts_ms": int(r.ts_ms),
                        "temp_c": float(r.temp_c),
                        "door_open": bool(r.door_open) if r.door_open is not None else None,
                        "battery_pct": float(r.battery_pct) if r.battery_pct is not None else None,
                    }
                )
    rows.sort(key=lambda r: (r["ts_ms"], r["device"], r["seq"]))
    return {"shipment": params["shipment"], "readings": rows}


CLOCK_REASONS = ("clock_backwards", "clock_jump", "clock_offset")


def screen_step(readings: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Fault and poisoning screen: flags per reading (models.quality), the readings kept for the rules,
    device reputations, and whether the decision must be held for review."""
    from models.quality import apply_policy, device_reputations, flag_readings, kept_readings

    rows = readings["readings"]
    flags = flag_readings(rows)
    sensor = [f for f in flags if f.reason not in CLOCK_REASONS]
    clock = [f for f in flags if f.reason in CLOCK_REASONS]
    outcome = apply_policy(sensor, mode=params["mode"])
    hold = outcome.hold or bool(clock)
    return {
        "shipment": readings["shipment"],
        "readings": [dict(r) for r in kept_readings(rows, outcome)],
        # The readings pass through as the devices sent them; only computed figures are quantised.
        "flags": quantise(
            [
                {
                    "device": f.device,
                    "seq": f.seq,
                    "reason": str(f.reason),
                    "measured": f.measured,
                    "threshold": f.threshold,
                    "unit": f.unit,
                    "detail": f.detail,
                }
                for f in flags
            ]
        ),
        "dropped": sorted([str(d), int(q)] for d, q in (cast(tuple[str, int], k) for k in outcome.drop)),
        "hold": hold,
        "reputation": {d: round(v, 6) for d, v in sorted(device_reputations(rows, flags).items())},
    }


def _readings_arrays(readings: dict[str, Any]) -> Any:
    import numpy as np

    from models.coldchain.readings import make_readings

    rows = readings["readings"]
    if not rows:
        raise ValidationError("no readings for this shipment yet", reason="no_readings")
    # Two devices may report the same second; the rule engine wants strictly increasing times.
    by_second: dict[int, dict[str, Any]] = {}
    for r in rows:
        by_second.setdefault(r["ts_ms"] // 1000, r)
    ts = np.array(sorted(by_second), dtype=np.int64)
    return make_readings(
        ts,
        [by_second[t]["temp_c"] for t in ts],
        door_open=[1.0 if by_second[t]["door_open"] else 0.0 for t in ts],
        battery=[np.nan if by_second[t]["battery_pct"] is None else by_second[t]["battery_pct"] for t in ts],
    )


@step_boundary
def rules_step(readings: dict[str, Any], profile_yaml: bytes, params: dict[str, Any]) -> dict[str, Any]:
    from models.coldchain.profiles import parse_profile
    from models.coldchain.rules import evaluate_rules

    profile = parse_profile(profile_yaml.decode())
    arrays = _readings_arrays(readings)
    now = params.get("now")
    if now is not None:
        now = max(int(now), int(arrays.ts_s[-1]))
    v = evaluate_rules(arrays, profile, now=now, delivered=bool(params["delivered"]))
    return {
        "verdict": int(v.verdict),
        "breaches": [
            {
                "kind": b.kind.value,
                "rule": b.rule,
                "start_s": int(b.start_s),
                "end_s": int(b.end_s),
                "at_s": int(b.at_s),
                "measured": float(b.measured),
                "limit": float(b.limit),
                "unit": b.unit,
            }
            for b in v.breaches
        ],
        "time_out_of_range_s": float(v.time_out_of_range_s),
        "mkt_c": float(v.mkt_c),
        "max_window_mkt_c": None if v.max_window_mkt_c is None else float(v.max_window_mkt_c),
        "budget_used": float(v.budget_used),
        "first_breach_s": v.first_breach_s,
        "evaluated_until_s": int(v.evaluated_until_s),
    }


SCHEDULE_FORMAT = "coldchain-schedule/1"


def schedule_document(
    shipment_id: str,
    expected_delivery_s: int,
    *,
    source: str,
    escrow: str | None = None,
    terms_hash: str | None = None,
    tx_hash: str | None = None,
) -> dict[str, Any]:
    """The scheduled hand-over as a decision input (stored as canonical JSON, so content-addressed).

    ``source`` is ``escrow`` (the ``expectedDelivery`` of the escrow's ShipmentProposed event whose terms
    the seller accepted: ``escrow``, ``terms_hash`` and ``tx_hash`` let an auditor check it on-chain) or
    ``terms`` (the off-chain :class:`ShipmentTerms` of a shipment with no escrow). Integers and strings
    only: the same bytes on every node that reads the same chain."""
    doc: dict[str, Any] = {
        "format": SCHEDULE_FORMAT,
        "shipment": shipment_id,
        "expected_delivery_s": int(expected_delivery_s),
        "source": source,
    }
    extra = {"escrow": escrow, "terms_hash": terms_hash, "tx_hash": tx_hash}
    doc.update({k: v.lower() for k, v in extra.items() if v is not None})
    return doc


def scheduled_delivery_s(schedule: dict[str, Any] | None) -> int | None:
    """The hand-over time of a :func:`schedule_document` (None: no schedule)."""
    if schedule is None:
        return None
    if schedule.get("format") != SCHEDULE_FORMAT or not isinstance(schedule.get("expected_delivery_s"), int):
        raise ValidationError("not a cold-chain schedule document", reason="bad_schedule")
    return int(schedule["expected_delivery_s"])


def _agreed_schedule(session: Session, on_chain: Shipment) -> dict[str, Any] | None:
    """The ShipmentProposed event of ``on_chain``'s escrow whose terms the seller accepted: the latest
    proposal of that id by the registered buyer to the registered seller (a cancelled proposal may come
    before it), as the chain listener recorded it."""
    from oracle.storage.tables import ChainEvent

    events = session.scalars(
        select(ChainEvent)
        .where(
            ChainEvent.contract == "ColdChainEscrow",
            ChainEvent.name == "ShipmentProposed",
            ChainEvent.args["shipmentId"].as_string() == on_chain.subject,
        )
        .order_by(ChainEvent.block_number, ChainEvent.log_index)
    ).all()
    agreed = [
        e
        for e in events
        if str(e.args.get("buyer", "")).lower() == on_chain.buyer.lower()
        and str(e.args.get("seller", "")).lower() == on_chain.seller.lower()
    ]
    if not agreed:
        return None
    a = agreed[-1].args
    return {
        "expected_delivery_s": int(a["expectedDelivery"]),
        "escrow": on_chain.escrow,
        "terms_hash": str(a["termsHash"]),
        "tx_hash": agreed[-1].tx_hash,
    }


@step_boundary
def model_step(
    readings: dict[str, Any],
    profile_yaml: bytes,
    artifact: bytes,
    schedule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The breach model's scores and the early warning at the last reading. ``schedule``: the scheduled
    hand-over (:func:`schedule_document`), which the warning's thermal forecast ends at."""
    from models.coldchain.breach_model import load_breach_model, score
    from models.coldchain.profiles import parse_profile

    delivery_s = scheduled_delivery_s(schedule)
    s = score(
        load_breach_model(artifact),
        _readings_arrays(readings),
        parse_profile(profile_yaml.decode()),
        delivery_s=delivery_s,
    )

    def factors(fs: Any) -> list[dict[str, Any]]:
        return [
            {"feature": f.feature, "value": float(f.value), "contribution": float(f.contribution)} for f in fs
        ]

    fit = s.forecast.fit if s.forecast is not None else None
    return {
        "p_compromised": s.p_compromised,
        "p_breach_2h": s.p_breach_2h,
        "warning": bool(s.warning),
        "model_warning": bool(s.model_warning),
        # The thermal forecast (models.coldchain.thermal): when the first-order fit to the last readings
        # reaches a rule breach, and the fit itself. An alert only, like the rest of this step.
        "forecast": {
            "breach_at_s": s.forecast.breach_at_s if s.forecast is not None else None,
            "kind": s.forecast.kind if s.forecast is not None else None,
            "tau_s": fit.tau_s if fit is not None else None,
            "asymptote_c": fit.asymptote_c if fit is not None else None,
            "rmse_c": fit.rmse_c if fit is not None else None,
            # The hand-over the forecast ended at (only present when the terms carry a schedule).
            **({"scheduled_delivery_s": delivery_s} if delivery_s is not None else {}),
        },
        "compromised_factors": factors(s.compromised_factors),
        "warning_factors": factors(s.warning_factors),
    }


@step_boundary
def verdict_report_step(
    rules: dict[str, Any], model: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    verdict = int(rules["verdict"])
    threshold = params.get("model_void_threshold")
    if verdict == int(Verdict.NO_DECISION) and threshold is not None and model["p_compromised"] >= threshold:
        verdict = int(Verdict.BREACH)
    return {
        "subject": "0x" + subject_id("shipment", params["shipment"]).hex(),
        "kind": int(ReportKind.COLDCHAIN_VERDICT),
        "value": str(verdict),
        "observedAt": int(params["observed_at"]),
        "inputsRoot": params["inputs_root"],
        "modelId": params["model_id"],
    }


# -- the evaluation -------------------------------------------------------------------------------------


def message_inputs(blobs: BlobStore, ingest_batches: list[str], devices: set[str]) -> dict[str, bytes]:
    """Each signed message of ``devices`` in the ingest batches, as a batch of one ``{device, payload}``
    (content-addressed and stored): the decision's telemetry inputs.

    An ingest batch is this node's commit unit (its grouping and receive times are its own); the signed
    message is what the device sent, the same bytes on every node that received it. Inputs built from
    messages make the same readings give the same inputs root everywhere.
    """
    out: dict[str, bytes] = {}
    for cid in ingest_batches:
        for message in cbor2.loads(blobs.get(cid)):
            device = str(message["device"])
            if device not in devices:
                continue
            data = cbor2.dumps([{"device": device, "payload": bytes(message["payload"])}], canonical=True)
            out[blobs.put(data)] = data
    return out


def _batches_through(
    batches: list[bytes], cids: list[str], params: dict[str, Any], until_s: int, *, strict: bool
) -> frozenset[str]:
    """The CIDs of the batches holding a reading of the shipment before ``until_s`` (``strict``) or at
    or before it."""
    keep = set()
    for cid, batch in zip(cids, batches, strict=True):
        rows = readings_step([batch], params)["readings"]
        if not rows:
            continue
        earliest = min(r["ts_ms"] for r in rows) / 1000
        if earliest < until_s or (not strict and earliest <= until_s):
            keep.add(cid)
    return frozenset(keep)


def mark_delivered(
    sessions: sessionmaker[Session], blobs: BlobStore, shipment_id: str, *, delivered_at: dt.datetime, by: str
) -> str:
    """Record the hand-over as an input (a small JSON document in the content store); returns its CID."""
    doc = {"shipment": shipment_id, "delivered_at": delivered_at.astimezone(dt.UTC).isoformat(), "by": by}
    raw = canonical_json(doc)
    cid = blobs.put(raw)
    with sessions() as s:
        if s.get(Blob, cid) is None:
            s.add(Blob(cid=cid, size=len(raw), media_type="application/json"))
            s.flush()
        if (
            s.scalar(select(Observation.id).where(Observation.kind == "delivery", Observation.cid == cid))
            is None
        ):
            s.add(
                Observation(
                    kind="delivery",
                    variable="delivery",
                    subject=shipment_id,
                    cid=cid,
                    source=by,
                    observed_at=delivered_at,
                    meta=doc,
                )
            )
        s.commit()
    return cid


def _ms(t: dt.datetime | None) -> int | None:
    if t is None:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


class CutDoesNotHold(Exception):
    """A trial of a cut (``evaluate_shipment(..., breach_at=…)``) whose first breach is not at that
    instant; internal to :func:`evaluate_shipment`."""


def evaluate_shipment(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    *,
    shipment_id: str,
    terms: ShipmentTerms | None = None,
    model_dir: Path | None = None,
    now: int | None = None,
    only_batches: frozenset[str] | None = None,
    breach_at: int | None = None,
) -> DecisionOutcome:
    """Evaluate ``shipment_id`` and record the decision; does not post anything.

    ``now`` (UNIX seconds) bounds the data-gap rule: a logger silent since its last reading until ``now``
    is a gap (missing data is not safe). Without it the record is treated as closed at its last reading.

    A breach is decided on the *first* batches that establish it, so the breach report does not depend
    on when this process looked or how its ingest grouped the messages: every node of a network that has
    received those batches computes the same report, bit for bit, whatever arrived after. The cut is the
    batches whose earliest reading comes *before* the first breach instant, when they alone give a
    breach at that same instant (a duration limit reached at 2:00 is established by the readings up to
    1:50, the last standing one interval as in a closed record: a node that has not yet received the
    message starting at 2:00 decides the same breach); else those whose earliest reading is at or before
    it (a hard limit crossed by the reading at that instant); else all of them. (Stop 22's CI run failed
    on exactly that: the cut took the message starting at the breach instant when present, so the node
    that evaluated before it arrived signed a different report and could not sign its peers'.)
    ``only_batches`` restricts the evaluation to those batch CIDs (that cut, or a replay); with
    ``breach_at`` the evaluation is a trial of a cut and raises :class:`CutDoesNotHold`, recording
    nothing, when the cut does not give its first breach at that instant.
    """
    from models.coldchain.breach_model import DEFAULT_ARTIFACT_DIR
    from models.coldchain.profiles import PROFILE_DIR
    from models.registry import list_models, load_model, model_id_for

    terms = terms or ShipmentTerms()
    subject = "0x" + subject_id("shipment", shipment_id).hex()
    # A network node first fetches from its peers, by CID, the signed messages their reports for this
    # shipment read and it lacks; its own ingest re-verifies each device signature and stores them
    # (oracle.network.inputs). What no peer can provide keeps the decision incomplete, unsigned.
    gather = getattr(blobs, "gather_telemetry", None)
    unavailable: list[str] = gather(shipment_id, subject) if gather and only_batches is None else []
    with sessions() as s:
        on_chain = s.get(Shipment, subject)
        name = terms.profile or (profile_name(bytes.fromhex(on_chain.profile[2:])) if on_chain else None)
        if name is None:
            raise NotFound(f"shipment {shipment_id!r} is not registered on-chain and no profile was given")
        agreed = _agreed_schedule(s, on_chain) if on_chain is not None else None
        bindings = s.scalars(select(DeviceBinding).where(DeviceBinding.shipment_id == shipment_id)).all()
        if not bindings:
            raise NotFound(
                f"no device is bound to shipment {shipment_id!r} (oracle devices add … --shipment)"
            )
        devices = {b.device_id: [_ms(b.valid_from), _ms(b.valid_to)] for b in bindings}
        stored = s.execute(
            select(TelemetryReading.device_id, TelemetryReading.seq, TelemetryReading.batch_cid).where(
                TelemetryReading.shipment_id == shipment_id
            )
        ).all()
        delivery = s.scalars(
            select(Observation)
            .where(Observation.kind == "delivery", Observation.subject == shipment_id)
            .order_by(Observation.observed_at, Observation.id)
        ).first()
    accepted = {(row.device_id, int(row.seq)) for row in stored}
    ingest_batches = sorted({row.batch_cid for row in stored})
    lacking = [*unavailable, *lacking_inputs(blobs, ingest_batches)]
    if lacking:
        # Telemetry this node accepted but can no longer read (nor get from a peer): no verdict, unsigned.
        reason = "; ".join(lacking)
        _, _, manifest_cid = record_decision(
            sessions,
            Trace(blobs),
            kind="coldchain",
            subject_name=shipment_id,
            subject=subject,
            period="",
            raw_inputs=ingest_batches,
            model_cid=None,
            status="incomplete",
            reason=reason,
            fields=None,
            confidence=None,
            factors=[],
        )
        log.warning("shipment %s not decided: %s", shipment_id, reason)
        return DecisionOutcome(0, "incomplete", reason, None, None, [], manifest_cid, [])
    messages = message_inputs(blobs, ingest_batches, set(devices))
    if only_batches is not None:
        messages = {c: m for c, m in messages.items() if c in only_batches}
    batch_cids = sorted(messages)
    profile_yaml = (PROFILE_DIR / f"{name}.yaml").read_bytes()
    profile_cid = blobs.put(profile_yaml)
    batches = [messages[c] for c in batch_cids]
    # The scheduled hand-over, a fact both parties agreed on in advance (no look-ahead): an explicit,
    # content-addressed input of the early warning, so an auditor recomputes the warning from it.
    schedule: dict[str, Any] | None = None
    overridden: dict[str, Any] | None = None
    if agreed is not None:
        schedule = schedule_document(
            shipment_id, agreed.pop("expected_delivery_s"), source="escrow", **agreed
        )
        if (
            terms.expected_delivery_s is not None
            and terms.expected_delivery_s != schedule["expected_delivery_s"]
        ):
            # Both parties agreed on the escrow's hand-over; the off-chain terms say otherwise: the
            # escrow's wins, and the decision says so rather than drop the other silently.
            overridden = {
                "schedule": "the escrow's expected delivery overrides the off-chain terms'",
                "escrow_expected_delivery_s": schedule["expected_delivery_s"],
                "terms_expected_delivery_s": int(terms.expected_delivery_s),
            }
            log.warning("shipment %s: %s", shipment_id, overridden)
    elif terms.expected_delivery_s is not None:
        schedule = schedule_document(shipment_id, terms.expected_delivery_s, source="terms")
    schedule_cid = blobs.put(canonical_json(schedule)) if schedule is not None else None

    trace = Trace(blobs)
    # Readings present in the batches but refused at ingest (bad signature, replay, sensor fault) are
    # listed so the step reproduces exactly what was accepted.
    everything = readings_step(batches, {"shipment": shipment_id, "devices": devices, "excluded": []})
    excluded = sorted(
        [r["device"], r["seq"]] for r in everything["readings"] if (r["device"], r["seq"]) not in accepted
    )
    readings_params = {"shipment": shipment_id, "devices": devices, "excluded": excluded}
    # The same as readings_step(batches, readings_params), without parsing every batch a second time.
    refused = {(d, q) for d, q in excluded}
    raw_readings = {
        "shipment": shipment_id,
        "readings": [r for r in everything["readings"] if (r["device"], r["seq"]) not in refused],
    }
    raw_cid = trace.record("readings", inputs=batch_cids, output=raw_readings, params=readings_params)
    screen_params = {"mode": terms.quality_mode}
    readings = screen_step(raw_readings, screen_params) if raw_readings["readings"] else raw_readings
    readings_cid = (
        trace.record("screen", inputs=[raw_cid], output=readings, params=screen_params)
        if raw_readings["readings"]
        else raw_cid
    )

    raw_inputs = sorted(
        {
            *batch_cids,
            profile_cid,
            *([delivery.cid] if delivery else []),
            *([schedule_cid] if schedule_cid else []),
        }
    )
    if not readings["readings"]:
        _, _, manifest_cid = record_decision(
            sessions,
            trace,
            kind="coldchain",
            subject_name=shipment_id,
            subject=subject,
            period="",
            raw_inputs=raw_inputs,
            model_cid=None,
            status="incomplete",
            reason="no readings yet",
            fields=None,
            confidence=None,
            factors=[],
        )
        return DecisionOutcome(
            0, "incomplete", "no readings yet", None, None, [], manifest_cid, list(trace.steps)
        )

    delivered_at = delivery.observed_at if delivery is not None else None
    delivered_s = int(delivered_at.replace(tzinfo=dt.UTC).timestamp()) if delivered_at is not None else None
    last_s = int(readings["readings"][-1]["ts_ms"] // 1000)
    rules_params = {"profile": name, "delivered": delivery is not None, "now": delivered_s or now}
    rules = rules_step(readings, profile_yaml, rules_params)
    first_breach = rules["first_breach_s"]
    # A data gap in this node's record may be this node's alone (its worker was down, its database came
    # back from an older backup): a network node asks its peers for the signed messages they hold and
    # evaluates again with those it stored (oracle.network.inputs), rather than decide a breach on
    # readings the devices sent and it missed.
    fill_gap = getattr(blobs, "fill_gap", None)
    if (
        fill_gap is not None
        and only_batches is None
        and any(b["kind"] == "data_gap" for b in rules["breaches"])
        and fill_gap(shipment_id, subject)
    ):
        return evaluate_shipment(
            sessions, blobs, shipment_id=shipment_id, terms=terms, model_dir=model_dir, now=now
        )
    if breach_at is not None and first_breach != breach_at:
        raise CutDoesNotHold(f"{shipment_id}: first breach at {first_breach}, not {breach_at}")
    if only_batches is None and delivery is None and now is None and first_breach is not None:
        for strict in (True, False):
            cut = _batches_through(batches, batch_cids, readings_params, int(first_breach), strict=strict)
            if len(cut) == len(batch_cids):
                break  # every batch is in the cut: this evaluation is the cut's
            if not cut:
                continue
            try:
                at_cut = evaluate_shipment(
                    sessions,
                    blobs,
                    shipment_id=shipment_id,
                    terms=terms,
                    model_dir=model_dir,
                    only_batches=cut,
                    breach_at=int(first_breach),
                )
            except CutDoesNotHold:
                continue
            if at_cut.report is not None and at_cut.report.value == int(Verdict.BREACH):
                return at_cut
        else:
            log.warning(
                "shipment %s: the breach does not hold on its first batches; using them all", shipment_id
            )
    rules_inputs = [readings_cid, profile_cid, *([delivery.cid] if delivery else [])]
    rules_cid = trace.record("rules", inputs=rules_inputs, output=rules, params=rules_params)

    directory = model_dir or DEFAULT_ARTIFACT_DIR
    cards = list_models(directory)
    if not cards:
        raise NotFound(f"no cold-chain model in {directory}; run `oracle models train coldchain`")
    card = sorted(cards, key=lambda c: (c.approval == "approved", c.created_at, c.model_id_hex))[-1]
    artifact, _ = load_model(directory, card.model_id_hex)
    model_cid = blobs.put(artifact)
    scored = model_step(readings, profile_yaml, artifact, schedule)
    model_inputs = [readings_cid, profile_cid, model_cid, *([schedule_cid] if schedule_cid else [])]
    model_out_cid = trace.record("breach_model", inputs=model_inputs, output=scored)

    report_params = {
        "shipment": shipment_id,
        "observed_at": max(last_s, delivered_s or 0, rules["evaluated_until_s"]),
        "inputs_root": "0x" + merkle_root(raw_inputs).hex(),
        "model_id": "0x" + model_id_for(artifact).hex(),
        "model_void_threshold": terms.model_void_threshold,
    }
    fields = verdict_report_step(rules, scored, report_params)
    trace.record("verdict", inputs=[rules_cid, model_out_cid], output=fields, params=report_params)
    verdict = Verdict(int(fields["value"]))
    flags: list[dict[str, Any]] = [overridden] if overridden is not None else []
    for f in readings.get("flags", []):
        flags.append({"quality": f["reason"], "device": f["device"], "seq": f["seq"], "detail": f["detail"]})
    if readings.get("hold") and verdict != Verdict.NO_DECISION:
        flags.append({"held": "quality flags need review before this verdict is posted"})
        verdict = Verdict.NO_DECISION
    if scored["p_compromised"] >= terms.alert_threshold or scored["warning"]:
        flags.append(
            {
                "alert": "model",
                "p_compromised": scored["p_compromised"],
                "p_breach_2h": scored["p_breach_2h"],
                "forecast_breach_s": scored["forecast"]["breach_at_s"],
                "forecast_kind": scored["forecast"]["kind"],
                **{k: v for k, v in scored["forecast"].items() if k == "scheduled_delivery_s"},
            }
        )
    held = any("held" in f for f in flags)
    status = "held" if held else ("complete" if verdict != Verdict.NO_DECISION else "no_decision")
    reason = {"held": "held for review: flagged readings", "no_decision": "in transit, no breach so far"}.get(
        status, ""
    )
    factors = scored["compromised_factors"]
    decision_id, revision, manifest_cid = record_decision(
        sessions,
        trace,
        kind="coldchain",
        subject_name=shipment_id,
        subject=subject,
        period="",
        raw_inputs=raw_inputs,
        model_cid=model_cid,
        status=status,
        reason=reason,
        fields=fields if status == "complete" else None,
        confidence=scored["p_compromised"],
        factors=factors,
        flags=flags,
    )
    report = None
    if status == "complete":
        report = Report(
            subject=bytes.fromhex(subject[2:]),
            kind=ReportKind.COLDCHAIN_VERDICT,
            value=int(verdict),
            epoch=1 + revision,
            observed_at=int(fields["observedAt"]),
            inputs_root=bytes.fromhex(fields["inputsRoot"][2:]),
            model_id=bytes.fromhex(fields["modelId"][2:]),
        )
    log.info(
        "coldchain decision shipment=%s verdict=%s breaches=%d",
        shipment_id,
        verdict.name,
        len(rules["breaches"]),
    )
    return DecisionOutcome(
        decision_id=decision_id,
        status=status,
        reason=reason,
        report=report,
        score=scored["p_compromised"],
        factors=factors,
        manifest_cid=manifest_cid,
        steps=list(trace.steps),
        flags=flags,
    )


__all__ = [
    "ShipmentTerms",
    "evaluate_shipment",
    "mark_delivered",
    "profile_bytes32",
    "profile_name",
    "schedule_document",
    "scheduled_delivery_s",
]
