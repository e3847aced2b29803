"""The dashboard in real headless Chromium over a uvicorn server and a world seeded through the real
pipeline and a real chain: click a region, a shipment and an attestation, see a live update arrive, and
check that hostile strings are shown as text. Fails (never skips) when Chromium is missing."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from oracle.context import Context
from oracle.storage.tables import ReportRow
from tests.dashboard.conftest import HOSTILE, SHIPMENT, post_new_attestation, seed_world
from tests.fixtures.chain import ChainKit

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install chromium"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser: Browser, base: str, key: str) -> tuple[Page, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)
    page.goto(f"{base}/#key={key}")
    return page, errors, outside


def dry_manifest_cid(ctx: Context) -> str:
    """The decision manifest of the newest dry-region report."""
    with ctx.sessions() as s:
        rows = s.scalars(
            select(ReportRow).where(ReportRow.subject_name == "dry").order_by(ReportRow.id.desc())
        ).all()
    return next(str(r.detail["manifest_cid"]) for r in rows if "manifest_cid" in r.detail)


@pytest.mark.chain
def test_operator_clicks_through_and_sees_live_updates(
    browser: Browser, server: str, ctx: Context, viewer_key: str, chain: ChainKit, tmp_path: Path
) -> None:
    seeded = seed_world(ctx, chain, tmp_path)
    # The shipment's logger signs with its own key; an older one with HS256, which the page marks weaker.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from oracle.device_keys import public_pem
    from oracle.devices import load_kek, register_device, register_device_key

    logger_key = public_pem(Ed25519PrivateKey.generate())
    register_device_key(ctx.sessions, device_id="logger-1", public_key_pem=logger_key, shipment_id=SHIPMENT)
    register_device(ctx.sessions, load_kek(ctx.settings), device_id="logger-0", shipment_id=SHIPMENT)
    page, errors, outside = _open(browser, server, viewer_key)
    expect(page.get_by_test_id("live")).to_have_text(re.compile("^live"), timeout=10_000)
    assert "key=" not in page.url  # the key left the address bar

    # Region: both shapes drawn, click the dry one, its severity, factors and SPI history appear.
    expect(page.locator('[data-testid="region-shape"]')).to_have_count(2)
    page.locator('[data-region="dry"]').click()
    expect(page.get_by_test_id("region-name")).to_have_text("dry")
    expect(page.get_by_test_id("region-severity")).to_have_text(f"{seeded.dry_severity:.3f}")
    assert seeded.dry_severity > 2.0
    region = page.get_by_test_id("region-panel")
    expect(region.get_by_test_id("factor")).to_have_count(3)
    spi = region.get_by_test_id("spi-chart")
    expect(spi.locator('[data-testid="spi-line-spi_3"]')).to_have_count(1)
    expect(spi.locator("text", has_text="2026-06")).to_have_count(1)
    expect(spi.locator("rect.sev")).to_have_count(3)
    expect(region.get_by_text("ndvi for 2026-05")).to_be_visible()  # the incomplete decision's reason

    # Shipment: chart with the 2-8 °C band, a breach marker and an early warning before it.
    page.get_by_test_id("shipment-row").filter(has_text=SHIPMENT).click()
    expect(page.get_by_test_id("shipment-name")).to_have_text(SHIPMENT)
    chart = page.get_by_test_id("shipment-chart")
    expect(chart.get_by_test_id("chart-band")).to_have_count(1)
    expect(chart.get_by_test_id("chart-line")).to_have_count(1)
    assert chart.get_by_test_id("marker-breach").count() >= 1
    assert chart.get_by_test_id("marker-warning").count() >= 1
    expect(page.get_by_test_id("shipment-panel")).to_contain_text("refrigerated (2–8 °C)")
    expect(page.get_by_test_id("shipment-row").filter(has_text=SHIPMENT)).to_contain_text("voided")
    devices = page.get_by_test_id("shipment-device")
    expect(devices).to_have_count(2)
    expect(devices.filter(has_text="logger-0").get_by_test_id("device-auth")).to_have_text(
        "HS256 (weaker: the oracle holds its secret)"
    )
    expect(devices.filter(has_text="logger-1").get_by_test_id("device-auth")).to_have_text(
        "EdDSA (device-held key)"
    )

    # Attestation: the confirmed dry-region report shows its tx hash and top-3 factors.
    dry_row = page.get_by_test_id("attestation-row").filter(has_text="dry").first
    dry_row.click()
    detail = page.get_by_test_id("attestation-detail")
    tx = detail.get_by_test_id("tx-hash")
    expect(tx).to_have_text(re.compile(r"^0x[0-9a-f]{64}$"))
    expect(detail.get_by_test_id("factor")).to_have_count(3)
    expect(detail).to_contain_text("confirmed")

    # Chain of custody: the decision's steps in order, raw inputs named, the stage graph drawn.
    custody = detail.get_by_test_id("custody")
    steps = custody.get_by_test_id("custody-step")
    expect(steps.last).to_have_attribute("data-step", "report")
    names = steps.evaluate_all("rows => rows.map(r => r.dataset.step)")
    assert names[-4:] == ["screen", "features", "score", "report"]
    assert set(names[:-4]) == {"zonal_mean"}
    graph = custody.get_by_test_id("custody-graph")
    for stage in ("zonal_mean", "features", "score", "report", "raster", "region geometry", "model artifact"):
        expect(graph.locator(f'[data-stage="{stage}"]')).to_have_count(1)
    manifest = json.loads(ctx.blobs.get(dry_manifest_cid(ctx)))
    raw_cid = manifest["inputs"][0]
    expect(custody.locator(f'[data-testid="custody-raw-cid"][data-cid="{raw_cid}"]').first).to_have_text(
        f"{raw_cid[:10]}…{raw_cid[-6:]}"
    )
    expect(custody).to_contain_text("region geometry: dry")
    expect(custody).to_contain_text("raster: ndvi · 2026-06")
    expect(custody).to_contain_text("model artifact: drought-severity")

    # Policies and payouts came back from chain events; the dry policy was paid.
    expect(page.get_by_test_id("policy-row")).to_have_count(2)
    expect(page.get_by_test_id("policy-row").filter(has_text="dry")).to_contain_text("paid")

    # Hostile markup in a reject is shown as text and never runs.
    expect(page.get_by_test_id("rejects")).to_contain_text(HOSTILE)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#rejects img").count() == 0

    # Live: a new attestation confirmed on-chain appears without a reload.
    before = page.get_by_test_id("attestation-row").count()
    marker = page.evaluate("() => { window.__noReload = 1; return 1; }")
    new_tx = post_new_attestation(ctx, chain, region="wet", severity=0.75)
    expect(page.get_by_test_id("attestation-row")).to_have_count(before + 1, timeout=15_000)
    expect(page.get_by_test_id("attestation-table")).to_contain_text(new_tx[:10])
    assert page.evaluate("window.__noReload") == marker

    expect(custody.get_by_test_id("custody-graph")).to_have_count(1)  # survives the re-render
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    assert outside == [], f"the page fetched from elsewhere: {outside}"
    assert errors == [], errors


def test_empty_database_and_refused_key(
    browser: Browser, server: str, viewer_key: str, tmp_path: Path
) -> None:
    page, errors, outside = _open(browser, server, viewer_key)
    expect(page.get_by_test_id("live")).to_have_text(re.compile("^live"), timeout=10_000)
    expect(page.get_by_test_id("attestations")).to_have_text("No attestations yet.")
    expect(page.get_by_test_id("shipments")).to_have_text("No shipments yet.")
    expect(page.get_by_test_id("policies")).to_have_text("No policies yet.")
    expect(page.get_by_test_id("rejects")).to_have_text("No rejected inputs.")
    expect(page.locator('[data-testid="region-shape"]')).to_have_count(0)
    page.screenshot(path=str(tmp_path / "empty.png"), full_page=True)
    assert errors == [], errors
    assert outside == []

    bad, _, _ = _open(browser, server, "ok_nope_wrong")
    expect(bad.locator("#key-error")).to_contain_text("refused", timeout=10_000)
    expect(bad.get_by_test_id("live")).to_have_text("not connected")
