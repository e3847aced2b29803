"""Fixtures for the dashboard: a Context over SQLite, a viewer key, the app with the dashboard router, a
real uvicorn server on a free port, and a world seeded through the real pipeline and a real chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.api.limits import ApiLimits
from oracle.attest import attest
from oracle.chain.escrow import open_escrow
from oracle.chain.listener import ChainListener
from oracle.chain.outbox import OutboxPoster
from oracle.context import Context
from oracle.dashboard.routes import router
from oracle.decisions.coldchain import profile_bytes32
from oracle.decisions.drought import evaluate_drought
from oracle.decisions.post import post_decision
from oracle.reports import Report, ReportKind, Verdict, subject_id, to_fixed
from oracle.storage.tables import Reject, TelemetryReading
from tests.drought.world import build
from tests.fixtures.chain import ChainKit, buyer_shipment
from tests.fixtures.context import dev_context
from tests.fixtures.server import serve
from tests.outbox.helpers import local_signers

LIMITS = ApiLimits(rate_per_s=10_000, burst=10_000)
TRIGGER, EXIT, LIMIT = to_fixed(1.0), to_fixed(4.0), 5_000 * 10**6
PERIODS = ("2024-06", "2025-06", "2026-06")
SHIPMENT = buyer_shipment("SHP-7")  # 0x<test buyer>:SHP-7
#: Markup in data the page must show as text, never parse.
HOSTILE = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = dev_context(tmp_path)
    yield context
    context.close()


@pytest.fixture
def viewer_key(ctx: Context) -> str:
    with ctx.sessions() as s:
        key = create_key(s, role=Role.VIEWER, name="dashboard-test").secret_key
        s.commit()
    return key


def make_app(ctx: Context) -> FastAPI:
    app = create_app(ctx, limits=LIMITS)
    app.include_router(router)
    return app


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    """The app served by uvicorn in a thread; yields its base URL."""
    with serve(make_app(ctx)) as url:
        yield url


@dataclass(frozen=True)
class Seeded:
    dry_severity: float
    breach_tx: str


def readings_with_excursion(start_s: int) -> list[tuple[int, float]]:
    """Ten-minute readings for 12 h: in band, then 4 h at 12 °C (over the band; the 10 °C cumulative
    rule is 20 h, so this alone is a warning, not a breach), then one reading at 52 °C (hard limit)."""
    out = []
    for i in range(72):
        t = start_s + 600 * i
        temp = 5.0 + 0.5 * ((i % 6) - 3) / 3
        if 20 <= i < 44:
            temp = 12.0
        if i == 60:
            temp = 52.0
        out.append((t, temp))
    return out


def _settle(ctx: Context, chain: ChainKit) -> None:
    OutboxPoster(ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    ChainListener(ctx.sessions, chain.w3, chain.deployment, confirmations=0).poll()


def seed_world(ctx: Context, chain: ChainKit, tmp_path: Path) -> Seeded:
    """Drought decisions for three Junes of two regions posted through signers → outbox → router (the
    pool pays the dry region), an escrowed shipment with telemetry whose BREACH verdict voids it, and
    two rejected inputs (one with markup in its message). Events reach the DB through the listener."""
    sessions, blobs = ctx.sessions, ctx.blobs
    (tmp_path / "rasters").mkdir(exist_ok=True)
    build(sessions, blobs, tmp_path / "rasters")
    for region, insured in (
        ("dry", chain.accounts.insured.address),
        ("wet", chain.accounts.stranger.address),
    ):
        chain.send(
            chain.pool.functions.createPolicy(
                insured, subject_id("region", region), 1_780_000_000, 1_790_000_000, TRIGGER, EXIT, LIMIT
            )
        )
    signers = local_signers(chain.keys)
    dry_severity = 0.0
    for period in PERIODS:
        for region in ("dry", "wet"):
            outcome = evaluate_drought(sessions, blobs, region_id=region, period=period)
            assert outcome.report is not None, outcome.reason
            if period == PERIODS[-1]:
                if region == "dry":
                    dry_severity = outcome.report.value / 10**6
                post_decision(
                    sessions,
                    outcome,
                    subject_name=region,
                    signers=signers,
                    threshold=2,
                    chain_id=chain.deployment.chain_id,
                    router=chain.router.address,
                )
    # An incomplete decision (no NDVI for May) shows as a reason, not a number.
    evaluate_drought(sessions, blobs, region_id="dry", period="2026-05")

    buyer = chain.accounts.buyer
    amount = 250 * 10**6
    chain.send(chain.coin.functions.mint(buyer.address, amount))
    chain.send(chain.coin.functions.approve(chain.escrow.address, amount), buyer)
    shipment = subject_id("shipment", SHIPMENT)
    now = chain.now()
    open_escrow(
        chain.w3,
        chain.escrow,
        name=SHIPMENT,
        buyer=buyer,
        seller=chain.accounts.seller,
        token=chain.coin.address,
        amount=amount,
        profile=profile_bytes32("refrigerated"),
        expected_delivery=now + 3600,
        deadline=now + 3600 + 2 * 86_400,
    )
    start = 1_780_000_000
    with sessions() as s:
        for seq, (t, temp) in enumerate(readings_with_excursion(start)):
            s.add(
                TelemetryReading(
                    device_id="logger-1",
                    seq=seq,
                    ts_ms=t * 1000,
                    shipment_id=SHIPMENT,
                    temp_c=temp,
                    digest=f"{seq:032x}",
                    batch_cid="bafkreidashboardtest",
                    source="mqtt",
                    received_ms=t * 1000 + 500,
                )
            )
        s.add(
            Reject(source="mqtt", reason="bad_signature", message="HMAC does not match", subject="logger-9")
        )
        s.add(Reject(source="http", reason="malformed", message=HOSTILE, subject=HOSTILE))
        s.commit()
    verdict = Report(
        subject=shipment,
        kind=ReportKind.COLDCHAIN_VERDICT,
        value=int(Verdict.BREACH),
        epoch=1,
        observed_at=start + 600 * 60,
        inputs_root=bytes(32),
        model_id=b"\x07" * 32,
    )
    attest(
        sessions,
        verdict,
        signers=signers,
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name=f"shipment:{SHIPMENT}",
        detail={"factors": [{"feature": "hard_limit_max_c", "value": 52.0, "contribution": 1.0}]},
    )
    _settle(ctx, chain)
    from oracle.storage.tables import Shipment

    with sessions() as s:
        row = s.scalar(select(Shipment).where(Shipment.subject == "0x" + shipment.hex()))
        assert row is not None
        assert row.status == "voided"
        assert row.settled_tx is not None
        breach_tx = row.settled_tx
    return Seeded(dry_severity=dry_severity, breach_tx=breach_tx)


def post_new_attestation(ctx: Context, chain: ChainKit, *, region: str, severity: float) -> str:
    """A manual drought report with a fresh epoch, queued and confirmed; returns its tx hash."""
    from oracle.storage.tables import OutboxRow

    report = Report(
        subject=subject_id("region", region),
        kind=ReportKind.DROUGHT_SEVERITY,
        value=to_fixed(severity),
        epoch=(2026 * 12 + 6) * 1000,
        observed_at=1_782_000_000,
        inputs_root=bytes(32),
        model_id=b"\x07" * 32,
    )
    att = attest(
        ctx.sessions,
        report,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name=region,
        detail={"factors": [{"feature": "spi_3", "value": -2.1, "contribution": 0.9}]},
    )
    _settle(ctx, chain)
    with ctx.sessions() as s:
        row = s.get(OutboxRow, att.outbox_id)
        assert row is not None
        assert row.status == "confirmed", row.last_error
        assert row.tx_hash is not None
        return row.tx_hash
