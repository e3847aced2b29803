"""What the page shows in real headless Chromium (issue 16 item 9): graticule labels with their numbers,
clear of the map's controls; amounts in token units; an attestation that turns "accepted" without a reload
once the listener projects the chain's ReportAccepted. Rows are written as the listener and the outbox
write them, so no chain is needed. Fails (never skips) when Chromium is missing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from oracle.context import Context
from oracle.storage.decision_tables import Region
from oracle.storage.tables import Payout, Policy
from tests.dashboard.test_browser import _open, browser  # noqa: F401 - the fixture
from tests.dashboard.test_display import POOL, REGION, _accepted, _listener_applies, _report

pytestmark = pytest.mark.browser

#: A latitude or longitude label: a number, the degree sign, a hemisphere (none on the equator or 0°).
LABEL = re.compile(r"^\d+(\.\d+)?°[NSEW]?$")


def _seed(ctx: Context) -> int:
    with ctx.sessions() as s:
        for rid, x0 in (("dry", 36.0), ("wet", 37.0)):
            s.add(
                Region(
                    region_id=rid,
                    subject=REGION if rid == "dry" else "0x" + "44" * 32,
                    name=rid,
                    cid="bafy" + rid,
                    geometry={
                        "type": "Polygon",
                        "coordinates": [[[x0, -1.0], [x0 + 1, -1.0], [x0 + 1, 0.5], [x0, 0.5], [x0, -1.0]]],
                    },
                )
            )
        s.add(
            Policy(
                pool=POOL,
                policy_id=1,
                insured="0x" + "22" * 20,
                region_subject=REGION,
                coverage_start=0,
                coverage_end=10,
                trigger="1000000",
                exit="4000000",
                limit=str(10_000 * 10**6),
                status="paid",
            )
        )
        s.add(
            Payout(
                pool=POOL,
                policy_id=1,
                insured="0x" + "22" * 20,
                amount="10000000000",
                tx_hash="0x1",
                log_index=0,
                block_number=3,
            )
        )
        s.commit()
    return _report(ctx, epoch=7, status="queued", outbox=None)


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_graticule_amounts_and_chain_status(
    browser: Browser,  # noqa: F811 - the fixture
    server: str,
    ctx: Context,
    viewer_key: str,
) -> None:
    report_id = _seed(ctx)
    page, errors, outside = _open(browser, server, viewer_key)
    expect(page.get_by_test_id("live")).to_have_text(re.compile("^live"), timeout=10_000)
    expect(page.locator('[data-testid="region-shape"]')).to_have_count(2)

    # Graticule: numbered labels for both axes, inside the map and clear of the zoom buttons and attribution.
    labels = page.locator("#map .graticule-label")
    expect(labels.first).to_be_visible()
    texts = labels.all_text_contents()
    assert texts, "no graticule labels"
    assert all(LABEL.match(t) for t in texts), texts
    assert any(t.endswith("E") for t in texts), texts
    assert any(t[-1] in "NS" for t in texts), texts
    box = page.locator("#map").bounding_box()
    covers = [
        page.locator(sel).bounding_box()
        for sel in ("#map .leaflet-control-zoom", "#map .leaflet-control-attribution")
    ]
    for i in range(labels.count()):
        r = labels.nth(i).bounding_box()
        assert r is not None
        assert box is not None
        assert box["x"] <= r["x"], texts[i]
        assert r["x"] + r["width"] <= box["x"] + box["width"], texts[i]
        assert box["y"] <= r["y"], texts[i]
        assert r["y"] + r["height"] <= box["y"] + box["height"], texts[i]
        assert not any(c is not None and _overlaps(r, c) for c in covers), f"{texts[i]} is covered"
    # Panning east keeps the lines and labels with the view: longitudes beyond the first view appear.
    east_before = max(float(t[:-2]) for t in texts if t.endswith("E"))
    assert box is not None
    page.mouse.move(box["x"] + 500, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 100, box["y"] + 300, steps=8)
    page.mouse.up()
    page.wait_for_function(
        """(before) => [...document.querySelectorAll("#map .graticule-label")]
            .some((l) => /°E$/.test(l.textContent) && parseFloat(l.textContent) > before)""",
        arg=east_before,
        timeout=5_000,
    )

    # Amounts in token units.
    policy = page.get_by_test_id("policy-row")
    expect(policy).to_contain_text("10,000.00 tUSD")
    expect(policy.get_by_test_id("policy-payout")).to_have_text("10,000.00 tUSD")
    expect(policy).not_to_contain_text("10000000000")

    # Status: queued until the listener projects ReportAccepted, then accepted without a reload.
    row = page.locator(f'[data-testid="attestation-row"][data-id="{report_id}"]')
    expect(row.get_by_test_id("attestation-state")).to_have_text("queued")
    page.evaluate("() => { window.__noReload = 1; }")
    _listener_applies(ctx, _accepted(7, tx="0x" + "cd" * 32, block=9))
    expect(row.get_by_test_id("attestation-state")).to_have_text("accepted", timeout=10_000)
    expect(row).to_contain_text("0xcdcdcdcd")
    assert page.evaluate("window.__noReload") == 1
    assert outside == [], outside
    assert errors == [], errors
