"""A subscribed subject whose newest accepted report is older than the heartbeat is flagged, the same way
in ``/metrics`` and on the dashboard (real uvicorn server, real headless Chromium)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from playwright.sync_api import Browser, expect, sync_playwright

from oracle.context import Context
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.rounds import NodeRuntime
from oracle.signer.client import LocalSigner
from oracle.storage.tables import ReportRow, Subscription
from tests.dashboard.conftest import ctx, server, viewer_key  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
HEARTBEAT_S = 3600
CONSUMER = "0x" + "22" * 20


@pytest.fixture
def network_ctx(ctx: Context) -> Context:  # noqa: F811
    """The dashboard's context as a network node's: its runtime carries the network's heartbeat."""
    me = NodeIdentity("node1", Account.create())
    members = (
        Member("node1", Account.create().address, me.address, "http://127.0.0.1:9301"),
        Member("node2", Account.create().address, Account.create().address, "http://127.0.0.1:9302"),
        Member("node3", Account.create().address, Account.create().address, "http://127.0.0.1:9303"),
    )
    network = Network(name="t", threshold=2, members=members, heartbeat_s=HEARTBEAT_S)
    ctx.extras["network_node"] = NodeRuntime(
        network=network,
        identity=me,
        signer=LocalSigner(Account.create().key),
        chain_id=31337,
        router=CONSUMER,
    )
    now = int(time.time())
    with ctx.sessions() as s:
        for name, age, status in (
            ("KE-fresh", 600, "confirmed"),
            ("KE-quiet", 2 * HEARTBEAT_S, "confirmed"),
            ("KE-quiet", 60, "reverted"),  # a newer report that did not land does not count
        ):
            subject = "0x" + name.encode().hex().ljust(64, "0")
            if s.get(Subscription, (subject, CONSUMER)) is None:
                s.add(Subscription(subject=subject, consumer=CONSUMER, active=True))
            s.add(
                ReportRow(
                    subject=subject,
                    subject_name=name,
                    kind=1,
                    value="1",
                    epoch=now - age,
                    observed_at=now - age,
                    inputs_root="0x" + "00" * 32,
                    model_id="0x" + "00" * 32,
                    status=status,
                )
            )
        s.add(Subscription(subject="0x" + "ab" * 32, consumer=CONSUMER, active=True))  # never reported
        s.commit()
    return ctx


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


def test_a_missed_heartbeat_is_flagged_in_metrics_the_api_and_the_page(
    network_ctx: Context,
    server: str,  # noqa: F811
    viewer_key: str,  # noqa: F811
    browser: Browser,
) -> None:
    metrics = httpx.get(f"{server}/metrics", timeout=10).text
    assert 'oracle_heartbeat_missed{subject="KE-quiet"} 1.0' in metrics
    assert 'oracle_heartbeat_missed{subject="KE-fresh"} 0.0' in metrics

    overview = httpx.get(
        f"{server}/v1/dashboard/overview", headers={"X-API-Key": viewer_key}, timeout=10
    ).json()
    beats = {b["name"]: b for b in overview["heartbeats"]}
    assert set(beats) == {"KE-fresh", "KE-quiet"}  # the never-reported subject has nothing to compare
    assert beats["KE-quiet"]["missed"] is True
    assert beats["KE-quiet"]["age_s"] >= 2 * HEARTBEAT_S
    assert beats["KE-fresh"]["missed"] is False
    assert beats["KE-fresh"]["heartbeat_s"] == HEARTBEAT_S

    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/#key={viewer_key}")
    missed = page.locator('[data-testid="heartbeat-row"][data-missed="true"]')
    expect(missed).to_have_count(1, timeout=10_000)
    expect(missed).to_contain_text("KE-quiet")
    expect(missed).to_contain_text("missed")
    expect(page.locator('[data-testid="heartbeat-row"][data-missed="false"]')).to_contain_text("KE-fresh")
    assert errors == []
