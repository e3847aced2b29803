"""The live early warning knows the shipment's scheduled hand-over (issue 13 item 6).

Real parts: devices sign envelopes, the ingest pipeline stores them, ``evaluate_shipment`` decides; the
escrow test proposes and accepts terms on anvil and the chain listener records them. The schedule is the
expected delivery both parties agreed on, a content-addressed input of the ``breach_model`` step.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from oracle.chain.escrow import open_escrow as propose_and_accept
from oracle.chain.escrow import shipment_name_for
from oracle.chain.listener import ChainListener
from oracle.decisions.coldchain import (
    ShipmentTerms,
    evaluate_shipment,
    mark_delivered,
    profile_bytes32,
    schedule_document,
)
from oracle.decisions.record import DecisionOutcome
from oracle.decisions.trace import canonical_json
from oracle.reports import Verdict
from oracle.storage.blobs import FilesystemBlobStore, cid_for
from tests.coldchain.helpers import AMOUNT, STEP_S, Fleet
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import open_db, sqlite_url

HOURS = 12


@pytest.fixture
def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_db(sqlite_url(tmp_path)), FilesystemBlobStore(tmp_path / "blobs")


def warm(hours: float) -> list[float]:
    """A refrigerated (2-8 °C) load held a little warm, 8.2-8.6 °C: no rule fires in transit, but the
    mean kinetic temperature of a record shorter than its 24 h window is judged at delivery, and 8.4 °C
    is over the profile's 8 °C. Only the hand-over decides this breach."""
    return [round(8.4 + 0.2 * ((i * 7) % 5 - 2) / 2, 2) for i in range(int(hours * 3600 / STEP_S))]


def freezing(hours: float) -> list[float]:
    """A refrigerated load at 5 °C whose thermostat sticks 2.2 h before the end: it relaxes toward
    -15 °C with τ = 5 h, -1.7 °C at the last reading, about 40 minutes from the freezing rule (<= -0.5 °C
    for an hour) and the hard limit (-3 °C)."""
    out = []
    for i in range(int(hours * 3600 / STEP_S)):
        h = i * STEP_S / 3600
        cooling = max(h - (hours - 2.2), 0.0)
        jitter = 0.3 * ((i * 7) % 5 - 2) / 2 if cooling == 0 else 0.0
        out.append(round(-15.0 + 20.0 * math.exp(-cooling / 5.0) + jitter, 2))
    return out


def _publish(stores: Any, shipment: str, temps: list[float], *, last_s: int) -> int:
    """Publish ``temps`` for ``shipment`` (one signed logger) so the last reading is at ``last_s``."""
    sessions, blobs = stores
    fleet = Fleet(sessions, blobs)
    start = last_s - (len(temps) - 1) * STEP_S
    fleet.add(f"logger-{shipment}", shipment, start_s=start)
    assert fleet.publish(f"logger-{shipment}", temps, start_s=start) == len(temps)
    return start


def _model(stores: Any, outcome: DecisionOutcome) -> tuple[dict[str, Any], list[str]]:
    """The recorded breach_model step of ``outcome``: its output and its input CIDs."""
    _, blobs = stores
    (step,) = [s for s in outcome.steps if s.name == "breach_model"]
    return json.loads(blobs.get(step.output)), list(step.inputs)


def _evaluate(
    stores: Any, shipment: str, schedule: int | None, profile: str = "refrigerated"
) -> DecisionOutcome:
    sessions, blobs = stores
    terms = ShipmentTerms(profile=profile, expected_delivery_s=schedule)
    return evaluate_shipment(sessions, blobs, shipment_id=shipment, terms=terms)


def test_the_schedule_lets_the_warning_see_a_breach_the_hand_over_decides(stores) -> None:  # type: ignore[no-untyped-def]
    _, blobs = stores
    last = int(time.time()) - 600
    _publish(stores, "SHP-WARM", warm(HOURS), last_s=last)

    unscheduled = _evaluate(stores, "SHP-WARM", None)
    out, inputs = _model(stores, unscheduled)
    assert len(inputs) == 3  # readings, profile, model: no schedule known
    assert out["warning"] is False
    assert out["forecast"]["breach_at_s"] is None
    assert "scheduled_delivery_s" not in out["forecast"]

    hand_over = last + 1800  # expected delivery in 30 minutes
    scheduled = _evaluate(stores, "SHP-WARM", hand_over)
    out, inputs = _model(stores, scheduled)
    assert out["warning"] is True  # 30 min ahead of the breach, from the schedule alone
    assert out["p_breach_2h"] < 0.7  # not LightGBM's doing
    assert out["forecast"]["breach_at_s"] == hand_over
    assert out["forecast"]["kind"] == "mkt_window"
    assert out["forecast"]["scheduled_delivery_s"] == hand_over
    # The schedule is the fourth, content-addressed input, and a raw input of the decision.
    doc = json.loads(blobs.get(inputs[3]))
    assert doc == schedule_document("SHP-WARM", hand_over, source="terms")
    assert cid_for(canonical_json(doc)) == inputs[3]
    alert = next(f for f in scheduled.flags if f.get("alert") == "model")
    assert alert["scheduled_delivery_s"] == hand_over
    assert alert["forecast_kind"] == "mkt_window"
    # A warning is an alert: the shipment is still in transit, nothing is posted, nothing voided.
    assert scheduled.status == "no_decision"
    assert scheduled.report is None


def test_no_warning_when_the_hand_over_comes_before_the_forecast_breach(stores) -> None:  # type: ignore[no-untyped-def]
    last = int(time.time()) - 600
    _publish(stores, "SHP-COLD", freezing(HOURS), last_s=last)

    out, _ = _model(stores, _evaluate(stores, "SHP-COLD", None))
    assert out["warning"] is True
    breach = out["forecast"]["breach_at_s"]
    assert out["forecast"]["kind"] in ("consecutive_duration", "hard_limit")
    assert last + 1800 <= breach <= last + 3600  # 30 min to 1 h ahead

    before = _model(stores, _evaluate(stores, "SHP-COLD", last + 900))[0]
    assert before["warning"] is False  # handed over 15 minutes from now, before the breach
    assert before["forecast"]["breach_at_s"] is None
    assert before["forecast"]["scheduled_delivery_s"] == last + 900

    later = _model(stores, _evaluate(stores, "SHP-COLD", last + 3 * 3600))[0]
    assert later["warning"] is True  # a hand-over after the horizon changes nothing
    assert later["forecast"]["breach_at_s"] == breach


def test_the_warning_recomputes_from_its_inputs(stores) -> None:  # type: ignore[no-untyped-def]
    from oracle.reports import report_digest
    from oracle.verify.replay import STEP_REPLAYERS, AttestedReport, replay
    from oracle.verify.sources import StoreSource

    sessions, blobs = stores
    last = int(time.time()) - 600
    _publish(stores, "SHP-AUDIT", warm(HOURS), last_s=last)
    hand_over = last + 1800
    first = _evaluate(stores, "SHP-AUDIT", hand_over)
    again = _evaluate(stores, "SHP-AUDIT", hand_over)
    assert again.manifest_cid == first.manifest_cid  # same inputs, same bits
    (step,) = [s for s in first.steps if s.name == "breach_model"]
    assert len(step.inputs) == 4

    # An auditor: every input's bytes hash to its CID, and the step recomputes to the recorded output.
    stored = [blobs.get(c) for c in step.inputs]
    assert [cid_for(b) for b in stored] == list(step.inputs)
    recomputed = STEP_REPLAYERS["breach_model"](step, stored)
    assert cid_for(canonical_json(recomputed)) == step.output
    # Another schedule is another input: a different output, here no warning (delivery 3 h away).
    moved = canonical_json(schedule_document("SHP-AUDIT", last + 3 * 3600, source="terms"))
    other = STEP_REPLAYERS["breach_model"](step, [*stored[:3], moved])
    assert cid_for(canonical_json(other)) != step.output
    assert other["warning"] is False

    # Handed over on schedule: the rules void it (MKT judged at delivery), and oracle verify replays the
    # whole decision, the scheduled warning included, to the report's digest.
    mark_delivered(
        sessions,
        blobs,
        "SHP-AUDIT",
        delivered_at=dt.datetime.fromtimestamp(hand_over, dt.UTC),
        by="consignee",
    )
    delivered = _evaluate(stores, "SHP-AUDIT", hand_over)
    assert delivered.report is not None
    assert delivered.report.value == int(Verdict.BREACH)
    (model_step,) = [s for s in delivered.steps if s.name == "breach_model"]
    assert model_step.inputs[3] == step.inputs[3]
    router = "0x" + "ab" * 20
    attested = AttestedReport(
        report=delivered.report,
        chain_id=31337,
        router=router,
        tx_hash="0x" + "00" * 32,
        block_number=1,
        report_hash=report_digest(delivered.report, chain_id=31337, router=router),
    )
    result = replay(StoreSource(blobs), delivered.manifest_cid, attested)
    assert result.ok, result.first_mismatch


@pytest.mark.chain
def test_the_escrows_agreed_delivery_reaches_the_live_warning(
    database_url: str, tmp_path: Path, chain: ChainKit
) -> None:
    """No off-chain terms: the evaluation the scheduler runs finds the profile and the schedule in the
    escrow the buyer proposed and the seller accepted (the listener's events, read on SQLite and on
    PostgreSQL)."""
    sessions, blobs = open_db(database_url), FilesystemBlobStore(tmp_path / "blobs")
    stores = (sessions, blobs)
    buyer = chain.accounts.buyer
    shipment = shipment_name_for(buyer.address, f"SHP-ESCROW-WARN-{tmp_path.name}"[:64])
    chain.send(chain.coin.functions.mint(buyer.address, AMOUNT))
    chain.send(chain.coin.functions.approve(chain.escrow.address, AMOUNT), buyer)
    chain_now = chain.now()
    hand_over = chain_now + 1800
    terms_hash = propose_and_accept(
        chain.w3,
        chain.escrow,
        name=shipment,
        buyer=buyer,
        seller=chain.accounts.seller,
        token=chain.coin.address,
        amount=AMOUNT,
        profile=profile_bytes32("refrigerated"),
        expected_delivery=hand_over,
        deadline=chain_now + 30 * 86_400,
    )
    ChainListener(sessions, chain.w3, chain.deployment, confirmations=0).poll()

    fleet = Fleet(sessions, blobs)
    # Readings up to ten minutes before the chain's now (the oracle's clock follows the chain here, which
    # other tests may have moved ahead of the wall clock).
    fleet.ingest.clock = lambda: max(time.time(), chain_now + 60.0)
    temps = warm(HOURS)
    last = chain_now - 600
    start = last - (len(temps) - 1) * STEP_S
    fleet.add(f"logger-{tmp_path.name}", shipment, start_s=start)
    assert fleet.publish(f"logger-{tmp_path.name}", temps, start_s=start) == len(temps)

    outcome = evaluate_shipment(sessions, blobs, shipment_id=shipment)
    out, inputs = _model(stores, outcome)
    doc = json.loads(blobs.get(inputs[3]))
    assert doc["source"] == "escrow"
    assert doc["expected_delivery_s"] == hand_over
    assert doc["terms_hash"] == "0x" + terms_hash.hex()
    assert doc["escrow"] == chain.escrow.address.lower()
    assert out["warning"] is True
    assert out["forecast"]["breach_at_s"] == hand_over
    assert outcome.report is None  # a warning voids nothing

    # Off-chain terms naming another hand-over do not displace the one both parties agreed on, and the
    # decision says it overrode them.
    other = evaluate_shipment(
        sessions,
        blobs,
        shipment_id=shipment,
        terms=ShipmentTerms(profile="refrigerated", expected_delivery_s=hand_over + 7200),
    )
    out, inputs = _model(stores, other)
    assert json.loads(blobs.get(inputs[3]))["expected_delivery_s"] == hand_over
    assert out["forecast"]["breach_at_s"] == hand_over
    assert {
        "schedule": "the escrow's expected delivery overrides the off-chain terms'",
        "escrow_expected_delivery_s": hand_over,
        "terms_expected_delivery_s": hand_over + 7200,
    } in other.flags
