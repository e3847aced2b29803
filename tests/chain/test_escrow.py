"""ColdChainEscrow on a real anvil: breach voids and refunds, delivered releases, deadline reclaims."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from oracle.errors import RevertError
from oracle.reports import Report, ReportKind, Verdict, subject_id
from tests.fixtures.chain import ChainKit, make_report

pytestmark = pytest.mark.chain

USD = 10**6
AMOUNT = 250 * USD
PROFILE = keccak(b"refrigerated-2-8C")


def open_shipment(chain: ChainKit, name: str, *, deadline_in: int = 86_400) -> tuple[bytes, int]:
    buyer = chain.accounts.buyer
    chain.send(chain.coin.functions.mint(buyer.address, AMOUNT))
    chain.send(chain.coin.functions.approve(chain.escrow.address, AMOUNT), buyer)
    shipment = subject_id("shipment", name)
    deadline = chain.now() + deadline_in
    call = chain.escrow.functions.createShipment(
        shipment, chain.accounts.seller.address, chain.coin.address, AMOUNT, PROFILE, deadline
    )
    receipt = chain.send(call, buyer)
    (event,) = chain.events(chain.escrow, "ShipmentRegistered", receipt)
    assert event["buyer"] == buyer.address
    assert event["amount"] == AMOUNT
    assert chain.balance(chain.escrow.address) >= AMOUNT
    return shipment, deadline


def verdict(shipment: bytes, epoch: int, value: Verdict) -> Report:
    return make_report(shipment, kind=ReportKind.COLDCHAIN_VERDICT, value=int(value), epoch=epoch)


def test_breach_voids_and_refunds_the_buyer(chain: ChainKit) -> None:
    shipment, _ = open_shipment(chain, "breach")
    buyer_before = chain.balance(chain.accounts.buyer.address)
    receipt = chain.submit(verdict(shipment, 1, Verdict.BREACH))
    assert chain.events(chain.escrow, "ShipmentVoided", receipt) == [
        {"shipmentId": shipment, "epoch": 1, "refund": AMOUNT}
    ]
    assert chain.balance(chain.accounts.buyer.address) - buyer_before == AMOUNT
    # Settled once: a later DELIVERED verdict moves nothing.
    seller_before = chain.balance(chain.accounts.seller.address)
    receipt = chain.submit(verdict(shipment, 2, Verdict.DELIVERED))
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == []
    assert chain.balance(chain.accounts.seller.address) == seller_before
    assert chain.escrow.functions.shipment(shipment).call()[2] == 2  # Status.Voided


def test_delivered_releases_to_the_seller_after_no_decision(chain: ChainKit) -> None:
    shipment, _ = open_shipment(chain, "delivered")
    seller_before = chain.balance(chain.accounts.seller.address)
    receipt = chain.submit(verdict(shipment, 1, Verdict.NO_DECISION))
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == []
    assert chain.escrow.functions.shipment(shipment).call()[2] == 1  # still Open
    receipt = chain.submit(verdict(shipment, 2, Verdict.DELIVERED))
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == [
        {"shipmentId": shipment, "epoch": 2, "amount": AMOUNT}
    ]
    assert chain.balance(chain.accounts.seller.address) - seller_before == AMOUNT


def test_buyer_reclaims_after_the_deadline_only(chain: ChainKit) -> None:
    shipment, _ = open_shipment(chain, "reclaim", deadline_in=3_600)
    buyer = chain.accounts.buyer
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.reclaim(shipment), buyer)
    assert e.value.reason == "DeadlineNotReached"
    chain.advance_time(3_601)
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.reclaim(shipment), chain.accounts.stranger)
    assert e.value.reason == "NotBuyer"
    before = chain.balance(buyer.address)
    receipt = chain.send(chain.escrow.functions.reclaim(shipment), buyer)
    assert chain.events(chain.escrow, "ShipmentReclaimed", receipt) == [
        {"shipmentId": shipment, "refund": AMOUNT}
    ]
    assert chain.balance(buyer.address) - before == AMOUNT
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.reclaim(shipment), buyer)
    assert e.value.reason == "NotOpen"
    receipt = chain.submit(verdict(shipment, 1, Verdict.DELIVERED))
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == []


def test_shipment_ids_are_unique_and_terms_checked(chain: ChainKit) -> None:
    shipment, deadline = open_shipment(chain, "unique")
    buyer = chain.accounts.buyer
    call = chain.escrow.functions.createShipment(
        shipment, chain.accounts.seller.address, chain.coin.address, AMOUNT, PROFILE, deadline
    )
    with pytest.raises(RevertError) as e:
        chain.send(call, buyer)
    assert e.value.reason == "ShipmentExists"
    past = chain.escrow.functions.createShipment(
        subject_id("shipment", "past"), chain.accounts.seller.address, chain.coin.address, 1, PROFILE, 1
    )
    with pytest.raises(RevertError, match="deadline in the past"):
        chain.send(past, buyer)


def test_a_drought_report_on_a_shipment_subject_is_ignored(chain: ChainKit) -> None:
    shipment, _ = open_shipment(chain, "wrong-kind")
    report = make_report(shipment, kind=ReportKind.DROUGHT_SEVERITY, value=1, epoch=1)
    receipt = chain.submit(report)
    assert chain.events(chain.escrow, "ShipmentVoided", receipt) == []
    assert chain.escrow.functions.shipment(shipment).call()[2] == 1
