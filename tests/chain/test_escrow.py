"""ColdChainEscrow on a real anvil: the seller accepts the buyer's exact terms before anything can settle;
breach voids and refunds, delivered releases, deadline reclaims; ids cannot be front-run (a shipment's
name carries its buyer's address), deadlines leave
room for a verdict, the recorded amount is the amount received, profiles come from the on-chain registry."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.crypto import keccak

from models.coldchain.profiles import PROFILE_DIR, load_profile, profile_names
from oracle.chain.escrow import (
    MAX_REFERENCE,
    min_settlement_s,
    open_escrow,
    shipment_name_for,
    shipped_profiles,
)
from oracle.decisions.coldchain import profile_bytes32
from oracle.errors import RevertError, ValidationError
from oracle.reports import Report, ReportKind, Verdict, subject_id
from tests.fixtures.chain import ChainKit, buyer_shipment, make_report

pytestmark = pytest.mark.chain

USD = 10**6
AMOUNT = 250 * USD
PROFILE = profile_bytes32("refrigerated")
#: refrigerated: gap limit 1 h + a day for the verdict to land
MIN_SETTLEMENT = min_settlement_s(load_profile("refrigerated").gap_limit_s)


def fund(chain: ChainKit, amount: int = AMOUNT) -> None:
    buyer = chain.accounts.buyer
    chain.send(chain.coin.functions.mint(buyer.address, amount))
    chain.send(chain.coin.functions.approve(chain.escrow.address, amount), buyer)


def propose(chain: ChainKit, name: str, *, deadline_after: int = MIN_SETTLEMENT) -> tuple[bytes, int]:
    """The buyer proposes the shipment ``name`` (delivery in an hour); returns (terms hash, deadline)."""
    fund(chain)
    delivery = chain.now() + 3_600
    deadline = delivery + deadline_after
    call = chain.escrow.functions.createShipment(
        name, chain.accounts.seller.address, chain.coin.address, AMOUNT, PROFILE, delivery, deadline
    )
    receipt = chain.send(call, chain.accounts.buyer)
    (event,) = chain.events(chain.escrow, "ShipmentProposed", receipt)
    assert event["amount"] == AMOUNT
    assert (event["name"], bytes(event["shipmentId"])) == (name, subject_id("shipment", name))
    assert chain.events(chain.escrow, "ShipmentRegistered", receipt) == []
    return bytes(event["termsHash"]), deadline


def open_shipment(chain: ChainKit, reference: str) -> tuple[bytes, int]:
    name = buyer_shipment(reference)
    shipment = subject_id("shipment", name)
    terms, deadline = propose(chain, name)
    receipt = chain.send(
        chain.escrow.functions.acceptShipment(shipment, chain.accounts.buyer.address, terms),
        chain.accounts.seller,
    )
    (event,) = chain.events(chain.escrow, "ShipmentRegistered", receipt)
    assert (event["buyer"], event["seller"]) == (chain.accounts.buyer.address, chain.accounts.seller.address)
    assert event["amount"] == AMOUNT
    assert chain.balance(chain.escrow.address) >= AMOUNT
    return shipment, deadline


def verdict(shipment: bytes, epoch: int, value: Verdict) -> Report:
    return make_report(shipment, kind=ReportKind.COLDCHAIN_VERDICT, value=int(value), epoch=epoch)


def status(chain: ChainKit, shipment: bytes) -> int:
    return int(chain.escrow.functions.shipment(shipment).call()[2])


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
    assert status(chain, shipment) == 2  # Status.Voided


def test_delivered_releases_to_the_seller_after_no_decision(chain: ChainKit) -> None:
    shipment, _ = open_shipment(chain, "delivered")
    seller_before = chain.balance(chain.accounts.seller.address)
    receipt = chain.submit(verdict(shipment, 1, Verdict.NO_DECISION))
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == []
    assert status(chain, shipment) == 1  # still Open
    receipt = chain.submit(verdict(shipment, 2, Verdict.DELIVERED))
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == [
        {"shipmentId": shipment, "epoch": 2, "amount": AMOUNT}
    ]
    assert chain.balance(chain.accounts.seller.address) - seller_before == AMOUNT


def test_buyer_reclaims_after_the_deadline_only(chain: ChainKit) -> None:
    shipment, deadline = open_shipment(chain, "reclaim")
    buyer = chain.accounts.buyer
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.reclaim(shipment), buyer)
    assert e.value.reason == "DeadlineNotReached"
    chain.advance_time(deadline - chain.now() + 1)
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


def test_nothing_settles_before_the_seller_accepts_and_the_buyer_may_cancel(chain: ChainKit) -> None:
    shipment = subject_id("shipment", buyer_shipment("pending"))
    terms, _ = propose(chain, buyer_shipment("pending"))
    buyer, seller = chain.accounts.buyer, chain.accounts.seller
    receipt = chain.submit(verdict(shipment, 1, Verdict.BREACH))
    assert chain.events(chain.escrow, "ShipmentVoided", receipt) == []
    assert chain.escrow.functions.proposal(shipment, buyer.address, seller.address).call()[2] == 5  # Proposed
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.reclaim(shipment), buyer)
    assert e.value.reason == "NotOpen"
    # The seller accepts exact terms only; a stranger cannot accept in the seller's place.
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.acceptShipment(shipment, buyer.address, keccak(b"other")), seller)
    assert e.value.reason == "TermsChanged"
    with pytest.raises(RevertError) as e:
        chain.send(
            chain.escrow.functions.acceptShipment(shipment, buyer.address, terms), chain.accounts.stranger
        )
    assert e.value.reason == "NotProposed"
    before = chain.balance(buyer.address)
    receipt = chain.send(chain.escrow.functions.cancelShipment(shipment, seller.address), buyer)
    assert chain.events(chain.escrow, "ShipmentCancelled", receipt)[0]["refund"] == AMOUNT
    assert chain.balance(buyer.address) - before == AMOUNT
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.acceptShipment(shipment, buyer.address, terms), seller)
    assert e.value.reason == "NotProposed"


def test_a_shipment_id_cannot_be_front_run(chain: ChainKit) -> None:
    """The buyer's shipment name carries the buyer's address. A stranger who copies it from the mempool and
    sends it first (either create function, an accomplice as seller, ready to accept at once) is refused
    with NameNotBuyers and the id stays free; the stranger's own name with the same reference is another
    id. The real parties then open the shipment normally, and the id the escrow used (ShipmentProposed,
    ShipmentRegistered) is the oracle's ``subject_id("shipment", name)``."""
    buyer, seller = chain.accounts.buyer, chain.accounts.seller
    stranger, accomplice = chain.accounts.stranger, chain.accounts.deployer
    name = shipment_name_for(buyer.address, "front-run")
    assert name == f"0x{buyer.address[2:].lower()}:front-run"
    shipment = subject_id("shipment", name)
    chain.send(chain.coin.functions.mint(stranger.address, 2 * AMOUNT))
    chain.send(chain.coin.functions.approve(chain.escrow.address, 2 * AMOUNT), stranger)
    now = chain.now()
    delivery, deadline = now + 3_600, now + 3_600 + MIN_SETTLEMENT

    def opened(name: str, buyer: Any, seller: Any) -> bytes:
        return open_escrow(
            chain.w3,
            chain.escrow,
            name=name,
            buyer=buyer,
            seller=seller,
            token=chain.coin.address,
            amount=AMOUNT,
            profile=PROFILE,
            expected_delivery=delivery,
            deadline=deadline,
        )

    copies = [
        chain.escrow.functions.createShipment(
            name, accomplice.address, chain.coin.address, AMOUNT, PROFILE, delivery, deadline
        ),
        chain.escrow.functions.createShipmentWithWindow(
            name,
            (accomplice.address, chain.coin.address, AMOUNT, PROFILE, delivery, deadline, 3_600, 3_600, 0),
        ),
    ]
    for copy in copies:
        with pytest.raises(RevertError) as e:
            chain.send(copy, stranger)
        assert e.value.reason == "NameNotBuyers"
    assert chain.balance(stranger.address) == 2 * AMOUNT  # nothing taken
    assert chain.escrow.functions.boundTo(shipment).call() == bytes(32)
    assert chain.escrow.functions.proposal(shipment, stranger.address, accomplice.address).call()[2] == 0
    # open_escrow refuses before sending anything.
    with pytest.raises(ValidationError, match="is not buyer"):
        opened(name, stranger, accomplice)
    # The stranger's own name with the same reference is another id: binding it takes nothing of the buyer's.
    theirs = shipment_name_for(stranger.address, "front-run")
    assert subject_id("shipment", theirs) != shipment
    opened(theirs, stranger, accomplice)
    assert chain.escrow.functions.boundTo(shipment).call() == bytes(32)

    # The real parties open the shipment as usual.
    fund(chain)
    first_block = chain.w3.eth.block_number + 1
    terms = opened(name, buyer, seller)
    (proposed,) = chain.escrow.events.ShipmentProposed().get_logs(
        from_block=first_block, argument_filters={"buyer": buyer.address}
    )
    (registered,) = chain.escrow.events.ShipmentRegistered().get_logs(
        from_block=first_block, argument_filters={"buyer": buyer.address}
    )
    assert proposed["args"]["name"] == name
    assert bytes(proposed["args"]["termsHash"]) == terms
    assert bytes(proposed["args"]["shipmentId"]) == shipment == bytes(registered["args"]["shipmentId"])
    assert bytes(chain.escrow.functions.shipmentIdOf(name).call()) == shipment
    bound = chain.escrow.functions.shipment(shipment).call()
    assert (bound[0], bound[3]) == (buyer.address, seller.address)
    # Bound: the buyer cannot propose it again either, to anyone.
    fund(chain)
    with pytest.raises(RevertError) as e:
        chain.send(
            chain.escrow.functions.createShipment(
                name, accomplice.address, chain.coin.address, AMOUNT, PROFILE, delivery, deadline
            ),
            buyer,
        )
    assert e.value.reason == "ShipmentExists"


def test_a_shipment_name_outside_the_format_is_refused_with_its_reason(chain: ChainKit) -> None:
    """The Python side and the contract agree on the name format: a bad reference is a ValidationError
    before any transaction, and BadShipmentName from the escrow when sent anyway."""
    buyer = chain.accounts.buyer
    fund(chain)
    delivery = chain.now() + 3_600
    prefix = f"0x{buyer.address[2:].lower()}:"
    for reference, why in [
        ("", "empty reference"),
        ("x" * (MAX_REFERENCE + 1), "reference too long"),
        ("a/b", "reference character not allowed"),
        ("two words", "reference character not allowed"),
    ]:
        with pytest.raises(ValidationError) as v:
            shipment_name_for(buyer.address, reference)
        assert v.value.reason == "bad_shipment_name"
        call = chain.escrow.functions.createShipment(
            prefix + reference,
            chain.accounts.seller.address,
            chain.coin.address,
            AMOUNT,
            PROFILE,
            delivery,
            delivery + MIN_SETTLEMENT,
        )
        with pytest.raises(RevertError) as e:
            chain.send(call, buyer)
        assert e.value.reason == "BadShipmentName"
        assert why in str(e.value)
    # The checksummed spelling of the buyer's own address is not the canonical prefix.
    checksummed = f"{buyer.address}:upper"
    assert checksummed != shipment_name_for(buyer.address, "upper")
    seller, coin = chain.accounts.seller.address, chain.coin.address
    deadline = delivery + MIN_SETTLEMENT
    call = chain.escrow.functions.createShipment(
        checksummed, seller, coin, AMOUNT, PROFILE, delivery, deadline
    )
    with pytest.raises(RevertError) as e:
        chain.send(call, buyer)
    assert e.value.reason == "NameNotBuyers"


def test_the_deadline_leaves_the_profile_minimum_after_delivery(chain: ChainKit) -> None:
    shipment = buyer_shipment("short-deadline")
    fund(chain)
    delivery = chain.now() + 3_600
    for deadline in (chain.now() + 1, delivery, delivery + MIN_SETTLEMENT - 1):
        call = chain.escrow.functions.createShipment(
            shipment, chain.accounts.seller.address, chain.coin.address, AMOUNT, PROFILE, delivery, deadline
        )
        with pytest.raises(RevertError) as e:
            chain.send(call, chain.accounts.buyer)
        assert e.value.reason == "DeadlineTooEarly"
    past = chain.escrow.functions.createShipment(
        shipment, chain.accounts.seller.address, chain.coin.address, AMOUNT, PROFILE, 1, 1 + MIN_SETTLEMENT
    )
    with pytest.raises(RevertError, match="expected delivery in the past"):
        chain.send(past, chain.accounts.buyer)


def test_a_profile_must_be_in_the_on_chain_registry(chain: ChainKit) -> None:
    # Every shipped profile is registered by deploy_all with the keccak256 of its file.
    assert [p.name for p in shipped_profiles()] == list(profile_names())
    for name in profile_names():
        file_hash, minimum = chain.escrow.functions.profileOf(profile_bytes32(name)).call()
        assert bytes(file_hash) == keccak((PROFILE_DIR / f"{name}.yaml").read_bytes())
        assert minimum == min_settlement_s(load_profile(name).gap_limit_s)
    fund(chain)
    delivery = chain.now() + 3_600
    for unknown in (profile_bytes32("no_such_profile"), keccak(b"refrigerated-2-8C")):
        call = chain.escrow.functions.createShipment(
            buyer_shipment("unknown-profile"),
            chain.accounts.seller.address,
            chain.coin.address,
            AMOUNT,
            unknown,
            delivery,
            delivery + 400 * 86_400,
        )
        with pytest.raises(RevertError) as e:
            chain.send(call, chain.accounts.buyer)
        assert e.value.reason == "UnknownProfile"
    # Only the owner (the deployer) sets profiles.
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.setProfile(keccak(b"x"), keccak(b"y"), 0), chain.accounts.stranger)
    assert e.value.reason == "NotOwner"


def test_the_recorded_amount_is_the_amount_received(chain: ChainKit) -> None:
    """A token that burns 1 % of every transfer: the escrow records (and later pays out) what arrived."""
    token = chain.deploy("FeeOnTransferToken")
    buyer, seller = chain.accounts.buyer, chain.accounts.seller
    chain.send(token.functions.mint(buyer.address, AMOUNT))
    chain.send(token.functions.approve(chain.escrow.address, AMOUNT), buyer)
    name = buyer_shipment("fee-token")
    shipment = subject_id("shipment", name)
    now = chain.now()
    open_escrow(
        chain.w3,
        chain.escrow,
        name=name,
        buyer=buyer,
        seller=seller,
        token=token.address,
        amount=AMOUNT,
        profile=PROFILE,
        expected_delivery=now + 3_600,
        deadline=now + 3_600 + MIN_SETTLEMENT,
    )
    received = int(token.functions.balanceOf(chain.escrow.address).call())
    assert received == AMOUNT - AMOUNT // 100
    assert chain.escrow.functions.shipment(shipment).call()[5] == received
    chain.send(token.functions.setFeeBps(0))
    chain.submit(verdict(shipment, 1, Verdict.DELIVERED))
    assert token.functions.balanceOf(seller.address).call() == received
    assert token.functions.balanceOf(chain.escrow.address).call() == 0


def test_a_drought_report_on_a_shipment_subject_is_ignored(chain: ChainKit) -> None:
    shipment, _ = open_shipment(chain, "wrong-kind")
    report = make_report(shipment, kind=ReportKind.DROUGHT_SEVERITY, value=1, epoch=1)
    receipt = chain.submit(report)
    assert chain.events(chain.escrow, "ShipmentVoided", receipt) == []
    assert status(chain, shipment) == 1
