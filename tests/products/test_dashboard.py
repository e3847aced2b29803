"""The dashboard's products panel in real headless Chromium shows a shipped product's burn cost."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from oracle.products.catalog import find_product, reference_backtest
from tests.dashboard.conftest import ctx, server, viewer_key  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.browser


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install chromium"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        yield b
        b.close()


def test_products_panel_shows_the_burn_cost(browser: Browser, server: str, viewer_key: str) -> None:  # noqa: F811
    figures = reference_backtest(find_product("drought-maize-seasonal"))
    assert figures is not None
    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/#key={viewer_key}")
    row = page.locator('[data-testid="product-row"][data-product="drought-maize-seasonal"]')
    expect(row.get_by_test_id("product-burn-cost")).to_have_text(f"{figures.burn_cost:.4f}", timeout=10_000)
    expect(row).to_contain_text(f"{figures.seasons} ({figures.first_season}–{figures.last_season})")
    assert errors == []
