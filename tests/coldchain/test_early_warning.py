"""A warning is an alert: it never voids a shipment unless the shipment's terms say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment, verdict_report_step
from oracle.reports import Verdict
from oracle.storage.blobs import FilesystemBlobStore
from tests.coldchain.helpers import Fleet, day_ago
from tests.outbox.helpers import open_db, sqlite_url

PARAMS = {
    "shipment": "SHP-W",
    "observed_at": 1_700_000_000,
    "inputs_root": "0x" + "00" * 32,
    "model_id": "0x" + "11" * 32,
}
WARNING = {
    "p_compromised": 0.99,
    "p_breach_2h": 1.0,
    "warning": True,
    "model_warning": True,
    "forecast": {"breach_at_s": 1_700_000_600, "kind": "consecutive_duration"},
}


def test_verdict_step_ignores_warnings_unless_terms_void_on_the_model() -> None:
    in_transit = {"verdict": int(Verdict.NO_DECISION)}
    fields = verdict_report_step(in_transit, WARNING, {**PARAMS, "model_void_threshold": None})
    assert fields["value"] == str(int(Verdict.NO_DECISION))
    delivered = verdict_report_step(
        {"verdict": int(Verdict.DELIVERED)}, WARNING, {**PARAMS, "model_void_threshold": None}
    )
    assert delivered["value"] == str(int(Verdict.DELIVERED))
    # Terms that void on the model's probability: then, and only then, the model decides.
    voided = verdict_report_step(in_transit, WARNING, {**PARAMS, "model_void_threshold": 0.9})
    assert voided["value"] == str(int(Verdict.BREACH))


@pytest.fixture
def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_db(sqlite_url(tmp_path)), FilesystemBlobStore(tmp_path / "blobs")


def _thawing(hours: float) -> list[float]:
    """A frozen load at −20 °C whose cooling stops 2.3 h before the end: it relaxes toward +25 °C with
    τ = 8 h and has been at or above −10 °C for under 20 minutes at the last reading (the one-hour rule
    has not fired yet)."""
    import math

    out = []
    for i in range(int(hours * 6)):
        h = i / 6
        off = max(h - (hours - 2.3), 0.0)
        out.append(round(25.0 + (-20.0 - 25.0) * math.exp(-off / 8.0), 2))
    return out


def test_a_forecast_breach_warns_and_does_not_void(stores) -> None:  # type: ignore[no-untyped-def]
    sessions, blobs = stores
    fleet = Fleet(sessions, blobs)
    start = day_ago()
    fleet.add("logger-thaw", "SHP-THAW", start_s=start)
    temps = _thawing(12)
    assert -10.0 < max(temps) < -8.0
    fleet.publish("logger-thaw", temps, start_s=start)
    outcome = evaluate_shipment(
        sessions, blobs, shipment_id="SHP-THAW", terms=ShipmentTerms(profile="frozen"), now=start + 12 * 3600
    )
    alerts = [f for f in outcome.flags if f.get("alert") == "model"]
    assert alerts, outcome.flags
    assert alerts[0]["forecast_kind"] == "consecutive_duration"
    assert alerts[0]["forecast_breach_s"] > start + 12 * 3600 - 600
    assert outcome.status == "no_decision"
    assert outcome.report is None
