"""The alarms API: list with filters, manual clear of a cumulative alarm (which never clears by itself),
roles, leg events that gate the next readings, webhooks added by an admin without the secret leaving
the data dir, and every change in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from oracle.alarms.live import LiveAlarms
from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.api.limits import ApiLimits
from oracle.context import Context
from oracle.storage.api_tables import AuditEntry
from tests.fixtures.context import dev_context

T0 = 1_767_000_000


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = dev_context(tmp_path)
    yield context
    context.close()


@pytest.fixture
def keys(ctx: Context) -> dict[str, dict[str, str]]:
    out = {}
    with ctx.sessions() as s:
        for role in Role:
            out[role.value] = {"X-API-Key": create_key(s, role=role, name=f"{role.value}-key").secret_key}
        s.commit()
    return out


def _feed(live: LiveAlarms, shipment: str, temps: list[float], *, first: int = 0) -> None:
    live.on_committed([(shipment, (T0 + (first + i) * 600) * 1000, t) for i, t in enumerate(temps)])


def test_list_filter_clear_legs_and_webhooks(ctx: Context, keys: dict[str, dict[str, str]]) -> None:
    api = TestClient(create_app(ctx, limits=ApiLimits(rate_per_s=1000, burst=1000)))
    live = LiveAlarms(ctx.sessions, profile_of=lambda _s, _x: "refrigerated")
    # 12 h at 9 °C: the 30-minute rule raises, and so does the 10-hour cumulative one; then back in band.
    _feed(live, "SHP-A", [5.0] * 2 + [9.0] * 73 + [5.0] * 2)
    _feed(live, "SHP-B", [5.0] * 3)
    items = api.get("/v1/alarms", params={"shipment": "SHP-A"}, headers=keys["viewer"]).json()["items"]
    by_rule = {a["rule"]: a for a in items}
    assert by_rule["above_band_30m"]["state"] == "cleared"  # single-event: cleared by itself
    cumulative = by_rule["above_band_total_10h"]
    assert (cumulative["state"], cumulative["auto_clear"]) == ("raised", False)  # stays until a person acts
    assert api.get("/v1/alarms", params={"shipment": "SHP-B"}, headers=keys["viewer"]).json()["items"] == []
    open_now = api.get("/v1/alarms", params={"state": "open"}, headers=keys["viewer"]).json()["items"]
    assert [a["rule"] for a in open_now] == ["above_band_total_10h"]
    assert api.get("/v1/alarms", params={"state": "bogus"}, headers=keys["viewer"]).status_code == 422

    assert api.post(f"/v1/alarms/{cumulative['id']}/clear", headers=keys["viewer"]).status_code == 403
    done = api.post(f"/v1/alarms/{cumulative['id']}/clear", headers=keys["operator"]).json()
    assert (done["state"], done["cleared_by"]) == ("cleared", "operator-key")
    again = api.post(f"/v1/alarms/{cumulative['id']}/clear", headers=keys["admin"]).json()
    assert again["cleared_by"] == "operator-key"  # the first who and when stay
    assert api.post("/v1/alarms/999999/acknowledge", headers=keys["operator"]).status_code == 404

    # Legs: in transit from now on, the dock rule (origin/destination) no longer applies.
    leg = api.post(
        "/v1/shipments/SHP-B/legs", json={"leg": "in_transit", "at_s": T0 + 3 * 600}, headers=keys["operator"]
    )
    assert leg.status_code == 201
    assert leg.json()["recorded_by"] == "operator-key"
    bad = {"leg": "at_sea"}
    assert api.post("/v1/shipments/SHP-B/legs", json=bad, headers=keys["operator"]).status_code == 422
    _feed(live, "SHP-B", [9.0, 9.0, 5.0], first=3)
    rules_b = {
        a["rule"]
        for a in api.get("/v1/alarms", params={"shipment": "SHP-B"}, headers=keys["viewer"]).json()["items"]
    }
    assert "above_band_dock_10m" not in rules_b
    api.post(
        "/v1/shipments/SHP-B/legs",
        json={"leg": "destination", "at_s": T0 + 6 * 600},
        headers=keys["operator"],
    )
    _feed(live, "SHP-B", [9.0, 9.0, 5.0], first=6)
    rules_b = {
        a["rule"]
        for a in api.get("/v1/alarms", params={"shipment": "SHP-B"}, headers=keys["viewer"]).json()["items"]
    }
    assert "above_band_dock_10m" in rules_b

    # Webhooks: admin only; the answer names the secret file and never holds the secret.
    hook = {"name": "ops", "url": "http://127.0.0.1:9/hook"}
    assert api.post("/v1/alarms/webhooks", json=hook, headers=keys["operator"]).status_code == 403
    made = api.post("/v1/alarms/webhooks", json=hook, headers=keys["admin"])
    assert made.status_code == 201
    secret = Path(made.json()["secret_file"]).read_text()
    assert secret not in made.text
    listed = api.get("/v1/alarms/webhooks", headers=keys["admin"]).json()["items"]
    assert [(w["name"], w["pending"]) for w in listed] == [("ops", 0)]

    with ctx.sessions() as s:
        audited = {(a.resource, a.summary) for a in s.scalars(select(AuditEntry))}
    assert ("alarms", "cleared") in audited
    assert ("shipment_legs", f"in_transit from {T0 + 3 * 600}") in audited
    assert ("alarm_webhooks", "added webhook 'ops'") in audited
