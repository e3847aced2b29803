"""The alarms panels in real headless Chromium over a uvicorn server: readings committed through the real
pipeline raise an alarm; the alarms list and the selected shipment's panel show it; Acknowledge (with an
operator key) records who, and a viewer key is told it cannot. Fails (never skips) without Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from oracle.alarms.live import LiveAlarms
from oracle.api.keys import Role, create_key
from oracle.context import Context
from oracle.decisions.coldchain import profile_bytes32
from oracle.reports import subject_id
from oracle.storage.tables import Shipment
from tests.coldchain.helpers import Fleet, day_ago
from tests.dashboard.test_browser import browser  # noqa: F401 - the Chromium fixture

pytestmark = pytest.mark.browser

SHIPMENT = "SHP-ALARMED"


def _key(ctx: Context, role: Role, name: str) -> str:
    with ctx.sessions() as s:
        secret = create_key(s, role=role, name=name).secret_key
        s.commit()
    return secret


def test_alarm_shows_and_acknowledging_works(browser: Browser, server: str, ctx: Context) -> None:  # noqa: F811
    with ctx.sessions() as s:  # the escrow as the chain listener records it: its profile names the rules
        s.add(
            Shipment(
                subject="0x" + subject_id("shipment", SHIPMENT).hex(),
                escrow="0x" + "11" * 20,
                buyer="0x" + "22" * 20,
                seller="0x" + "33" * 20,
                amount="1000000",
                profile="0x" + profile_bytes32("refrigerated").hex(),
                deadline=2_000_000_000,
                status="open",
            )
        )
        s.commit()
    fleet = Fleet(ctx.sessions, ctx.blobs)
    fleet.ingest.after_commit.append(LiveAlarms(ctx.sessions))
    start = day_ago()
    fleet.add("logger-alarm", SHIPMENT, start_s=start)
    fleet.add("logger-calm", "SHP-CALM", start_s=start)
    fleet.publish("logger-alarm", [5.0, 5.1, 5.0, 31.0, 31.5], start_s=start)  # over 25 °C: critical, at once
    fleet.publish("logger-calm", [5.0, 5.1, 5.0], start_s=start)

    operator = _key(ctx, Role.OPERATOR, "night-shift")
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/#key={operator}")

    listed = page.get_by_test_id("alarms").get_by_test_id("alarm-row")
    expect(listed.filter(has_text="hot_immediate")).to_have_count(1)
    expect(page.get_by_test_id("alarm-count")).to_contain_text("open")

    # The shipment's own panel: empty until a shipment is picked, then only that shipment's alarms.
    panel = page.get_by_test_id("shipment-alarms")
    expect(panel).to_contain_text("Click a shipment")
    page.locator("[data-testid=shipment-row]", has_text="SHP-CALM").click()
    expect(panel).to_contain_text("No alarms for this shipment")
    page.locator("[data-testid=shipment-row]", has_text=SHIPMENT).click()
    row = panel.get_by_test_id("alarm-row").filter(has_text="hot_immediate")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("alarm-state")).to_have_text("raised")

    row.get_by_test_id("alarm-ack").click()
    expect(row.get_by_test_id("alarm-state")).to_have_text("acknowledged")
    expect(row.get_by_test_id("alarm-acked-by")).to_have_text(re.compile(r"^night-shift · \d{4}-"))
    expect(row.get_by_test_id("alarm-ack")).to_have_count(0)

    # The rules behind the alarms and the shipment's leg, which an operator changes from here.
    expect(panel.get_by_test_id("alarm-rules").get_by_test_id("alarm-rule")).to_have_count(7)
    expect(panel.get_by_test_id("shipment-leg")).to_have_text("leg: origin")
    panel.get_by_test_id("leg-in_transit").click()
    expect(panel.get_by_test_id("shipment-leg")).to_contain_text("leg: in_transit since")
    expect(panel.get_by_test_id("shipment-leg")).to_contain_text("night-shift")
    expect(panel.get_by_test_id("leg-in_transit")).to_be_disabled()
    assert errors == []

    # A viewer sees the alarms but is told acknowledging needs an operator key.
    viewer = _key(ctx, Role.VIEWER, "auditor")
    fleet.publish_from(
        "logger-alarm", [5.0, -1.0], first_seq=5, start_s=start + 5 * 600
    )  # freezing: new alarm
    other = browser.new_page(viewport={"width": 1400, "height": 2200})
    other.goto(f"{server}/#key={viewer}")
    fresh = other.get_by_test_id("alarms").get_by_test_id("alarm-row").filter(has_text="freezing_immediate")
    expect(fresh).to_have_count(1)
    fresh.get_by_test_id("alarm-ack").click()
    expect(other.get_by_test_id("alarm-note")).to_contain_text("operator key")
    expect(fresh.get_by_test_id("alarm-state")).to_have_text("raised")
