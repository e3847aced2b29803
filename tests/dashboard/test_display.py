"""What the dashboard's views say about amounts and statuses (issue 16 item 9): token amounts in token units
with their decimals, and statuses that follow the chain as the listener projects it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from oracle.chain.listener import ChainListener, DecodedEvent
from oracle.context import Context
from oracle.dashboard.views import SETTLEMENT_TOKEN, Token, attestation_state, token_amount
from oracle.reports import ReportKind, subject_id
from oracle.storage.tables import OutboxRow, Payout, Policy, ReportRow, Shipment
from tests.dashboard.conftest import make_app
from tests.fixtures.chain import ChainKit

POOL = "0x" + "11" * 20
ESCROW = "0x" + "12" * 20
ROUTER = "0x" + "13" * 20
INSURED = "0x" + "22" * 20
REGION = "0x" + subject_id("region", "dry").hex()
SHIPMENT = "0x" + subject_id("shipment", "SHP-1").hex()


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(make_app(ctx)) as c:
        yield c


def test_token_amounts_in_token_units() -> None:
    assert token_amount("10000000000", SETTLEMENT_TOKEN) == "10,000.00 tUSD"
    assert token_amount(5_000 * 10**6, SETTLEMENT_TOKEN) == "5,000.00 tUSD"
    assert token_amount("1", SETTLEMENT_TOKEN) == "0.000001 tUSD"
    assert token_amount("1234567891", SETTLEMENT_TOKEN) == "1,234.567891 tUSD"
    assert token_amount("0", SETTLEMENT_TOKEN) == "0.00 tUSD"
    assert token_amount("7", Token("WEI", 0)) == "7 WEI"
    assert token_amount("15", Token("X", 1)) == "1.5 X"
    assert token_amount(None, SETTLEMENT_TOKEN) is None
    assert token_amount("garbled", SETTLEMENT_TOKEN) is None


@given(st.integers(min_value=-(2**255), max_value=2**256 - 1), st.integers(min_value=0, max_value=30))
def test_token_amount_is_exact(n: int, decimals: int) -> None:
    shown = token_amount(str(n), Token("T", decimals))
    assert shown is not None
    assert shown.endswith(" T")
    number = shown.removesuffix(" T")
    assert Fraction(Decimal(number.replace(",", ""))) == Fraction(n, 10**decimals)  # nothing rounded away
    if decimals >= 2:
        assert len(number.split(".")[1]) >= 2


@pytest.mark.chain
def test_settlement_token_is_the_deployed_stablecoin(chain: ChainKit) -> None:
    assert chain.coin.functions.decimals().call() == SETTLEMENT_TOKEN.decimals
    assert chain.coin.functions.symbol().call() == SETTLEMENT_TOKEN.symbol


def test_overview_gives_amounts_in_token_units(client: TestClient, ctx: Context, viewer_key: str) -> None:
    with ctx.sessions() as s:
        s.add(
            Policy(
                pool=POOL,
                policy_id=1,
                insured=INSURED,
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
                insured=INSURED,
                amount="10000000000",
                tx_hash="0x1",
                log_index=0,
                block_number=3,
            )
        )
        s.add(
            Shipment(
                subject=SHIPMENT,
                escrow=ESCROW,
                buyer=INSURED,
                seller=INSURED,
                amount=str(250 * 10**6),
                profile="0x" + "00" * 32,
                deadline=2_000_000_000,
            )
        )
        s.commit()
    body = client.get("/v1/dashboard/overview", headers={"X-API-Key": viewer_key}).json()
    assert body["token"] == {"symbol": "tUSD", "decimals": 6}
    (policy,) = body["policies"]
    assert policy["payout"] == "10000000000"  # base units stay for API clients
    assert policy["payout_display"] == "10,000.00 tUSD"
    assert policy["limit_display"] == "10,000.00 tUSD"
    assert body["payouts"][0]["amount_display"] == "10,000.00 tUSD"
    assert body["shipments"][0]["amount_display"] == "250.00 tUSD"
    detail = client.get(f"/v1/dashboard/shipments/{SHIPMENT}", headers={"X-API-Key": viewer_key}).json()
    assert detail["amount_display"] == "250.00 tUSD"


def _report(ctx: Context, *, epoch: int, status: str, outbox: str | None) -> int:
    with ctx.sessions() as s:
        row = ReportRow(
            subject=REGION,
            subject_name="dry",
            kind=int(ReportKind.DROUGHT_SEVERITY),
            value="2500000",
            epoch=epoch,
            observed_at=1_780_000_000,
            inputs_root="0x" + "00" * 32,
            model_id="0x" + "00" * 32,
            status=status,
            detail={},
        )
        s.add(row)
        s.flush()
        if outbox is not None:
            s.add(
                OutboxRow(
                    key=f"report:{REGION}:{epoch}",
                    purpose="report",
                    report_id=row.id,
                    to_address=ROUTER,
                    calldata=b"\x01",
                    gas_limit=0,
                    status=outbox,
                    tx_hash="0x" + "aa" * 32,
                )
            )
        s.commit()
        return row.id


def _listener_applies(ctx: Context, *events: DecodedEvent) -> None:
    """The listener's own storing step (events and their projection in one transaction), without a chain."""
    stub = SimpleNamespace(sessions=ctx.sessions, on_event=None)
    ChainListener._apply(stub, list(events), events[-1].block_number, "0x" + "bb" * 32)  # type: ignore[arg-type]


def _accepted(epoch: int, *, tx: str, block: int, log_index: int = 0) -> DecodedEvent:
    return DecodedEvent(
        contract="OracleRouter",
        address=ROUTER,
        name="ReportAccepted",
        args={
            "subject": REGION,
            "kind": int(ReportKind.DROUGHT_SEVERITY),
            "value": 2_500_000,
            "epoch": epoch,
            "observedAt": 1_780_000_000,
            "inputsRoot": "0x" + "00" * 32,
            "modelId": "0x" + "00" * 32,
        },
        block_number=block,
        block_hash="0x" + "bb" * 32,
        tx_hash=tx,
        log_index=log_index,
    )


def test_a_report_the_chain_accepted_shows_accepted_and_the_page_is_told(
    client: TestClient, ctx: Context, viewer_key: str
) -> None:
    """A network node that did not transmit has no transaction of its own ("queued" until the listener
    projects ReportAccepted); one whose own copy is still in flight says "sent" while another member's
    landed. Both must show the chain's word, with the landing transaction, and the cursor must move."""
    h = {"X-API-Key": viewer_key}
    queued = _report(ctx, epoch=1, status="queued", outbox=None)
    in_flight = _report(ctx, epoch=2, status="queued", outbox="sent")
    before = client.get("/v1/dashboard/cursor", headers=h).json()["cursor"]
    states = {
        a["id"]: a["state"] for a in client.get("/v1/dashboard/overview", headers=h).json()["attestations"]
    }
    assert states == {queued: "queued", in_flight: "sent"}

    landing = "0x" + "cc" * 32
    _listener_applies(
        ctx, _accepted(1, tx=landing, block=41), _accepted(2, tx=landing, block=41, log_index=1)
    )

    assert client.get("/v1/dashboard/cursor", headers=h).json()["cursor"] != before
    shown = {a["id"]: a for a in client.get("/v1/dashboard/overview", headers=h).json()["attestations"]}
    for report_id in (queued, in_flight):
        assert shown[report_id]["state"] == "accepted"
        assert shown[report_id]["tx_hash"] == landing
        assert shown[report_id]["block_number"] == 41
    assert shown[in_flight]["tx_status"] == "sent"  # this node's own transaction is still listed as such


def test_a_shipment_settled_on_chain_moves_the_cursor(
    client: TestClient, ctx: Context, viewer_key: str
) -> None:
    h = {"X-API-Key": viewer_key}
    registered = DecodedEvent(
        contract="ColdChainEscrow",
        address=ESCROW,
        name="ShipmentRegistered",
        args={
            "shipmentId": SHIPMENT,
            "buyer": INSURED,
            "seller": INSURED,
            "amount": 250 * 10**6,
            "profile": "0x" + "00" * 32,
            "deadline": 2_000_000_000,
        },
        block_number=5,
        block_hash="0x" + "bb" * 32,
        tx_hash="0x" + "01" * 32,
        log_index=0,
    )
    _listener_applies(ctx, registered)
    assert client.get("/v1/dashboard/overview", headers=h).json()["shipments"][0]["status"] == "open"
    before = client.get("/v1/dashboard/cursor", headers=h).json()["cursor"]
    released = DecodedEvent(
        contract="ColdChainEscrow",
        address=ESCROW,
        name="ShipmentReleased",
        args={"shipmentId": SHIPMENT},
        block_number=6,
        block_hash="0x" + "bb" * 32,
        tx_hash="0x" + "02" * 32,
        log_index=0,
    )
    _listener_applies(ctx, released)
    assert client.get("/v1/dashboard/cursor", headers=h).json()["cursor"] != before
    (ship,) = client.get("/v1/dashboard/overview", headers=h).json()["shipments"]
    assert ship["status"] == "released"
    assert ship["settled_tx"] == "0x" + "02" * 32


@pytest.mark.parametrize(
    ("report", "tx", "shown"),
    [
        ("queued", None, "queued"),
        ("queued", "sent", "sent"),
        ("queued", "confirmed", "confirmed"),
        ("accepted", "sent", "accepted"),
        ("accepted", "reverted", "accepted"),  # another member's copy landed first
        ("confirmed", None, "confirmed"),
        ("superseded", "pending", "superseded"),
        ("pending", "reverted", "reverted"),
    ],
)
def test_attestation_state_prefers_the_chain(report: str, tx: str | None, shown: str) -> None:
    assert attestation_state(report, tx) == shown
