"""The dashboard's link to a shipment's disposition report, clicked in real headless Chromium: the page
fetches the report with the viewer key and opens it in a new tab. Fails (never skips) without Chromium."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.context import Context
from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
from tests.api.conftest import TEST_LIMITS
from tests.coldchain.helpers import Fleet, day_ago, temperatures
from tests.fixtures.context import dev_context
from tests.fixtures.server import serve

CHROMIUM = "/usr/bin/chromium"
SHIPMENT = "SHP-LINKED"

pytestmark = pytest.mark.browser


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = dev_context(tmp_path, database="o.sqlite3")
    yield context
    context.close()


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    with serve(create_app(ctx, limits=TEST_LIMITS)) as url:
        yield url


def test_the_shipment_panel_opens_the_disposition_report(ctx: Context, server: str) -> None:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install chromium"
    )
    fleet = Fleet(ctx.sessions, ctx.blobs)
    start = day_ago()
    fleet.add("logger-linked", SHIPMENT, start_s=start)
    fleet.publish("logger-linked", temperatures(20, excursion=(6, 2, 46.0)), start_s=start)
    evaluate_shipment(
        ctx.sessions, ctx.blobs, shipment_id=SHIPMENT, terms=ShipmentTerms(profile="refrigerated")
    )
    with ctx.sessions() as s:
        key = create_key(s, role=Role.VIEWER, name="browser").secret_key
        s.commit()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server}/#key={key}")
            page.get_by_test_id("shipment-row").filter(has_text=SHIPMENT).click()
            expect(page.get_by_test_id("disposition")).to_contain_text("Disposition report")
            with page.expect_popup() as opened:
                page.get_by_test_id("disposition-html").click()
            tab = opened.value
            tab.wait_for_url(re.compile(r"^blob:"), timeout=30_000)
            expect(tab.locator("h1")).to_have_text(f"Disposition report: {SHIPMENT}", timeout=30_000)
            expect(tab.locator("body")).to_contain_text("BREACH")
            with page.expect_popup() as opened_pdf:
                page.get_by_test_id("disposition-pdf").click()
            opened_pdf.value.wait_for_url(re.compile(r"^blob:"), timeout=60_000)
            assert errors == []
        finally:
            browser.close()
