"""ColdChainEscrow's liveness window and disputes (issue 14) on a real anvil: a window of 0 settles at
once as before; a held verdict pays only after its window and holds the buyer's deadline reclaim back;
a disputed verdict is frozen until the network's replacement upholds the dispute (bond back, the
replacement decides) or the answer window rejects it (bond to the party the verdict pays, the verdict
applies)."""

from __future__ import annotations

from typing import Any

import pytest

from models.coldchain.profiles import load_profile
from oracle.chain.escrow import min_settlement_s
from oracle.errors import RevertError
from oracle.reports import ReportKind, Verdict, subject_id
from tests.chain.escrow_window_kit import (
    AMOUNT,
    ANSWER,
    BOND,
    LIVENESS,
    OPEN,
    REJECTED,
    RELEASED,
    UPHELD,
    VOIDED,
    file_escrow_dispute,
    open_with_window,
    status,
)
from tests.fixtures.chain import ChainKit, buyer_shipment, make_report

pytestmark = pytest.mark.chain

MIN_SETTLEMENT = min_settlement_s(load_profile("refrigerated").gap_limit_s)


def verdict(chain: ChainKit, shipment: bytes, epoch: int, value: Verdict) -> dict[str, list[dict[str, Any]]]:
    receipt = chain.submit(
        make_report(shipment, kind=ReportKind.COLDCHAIN_VERDICT, value=int(value), epoch=epoch)
    )
    return {
        "held": chain.events(chain.escrow, "VerdictHeld", receipt),
        "voided": chain.events(chain.escrow, "ShipmentVoided", receipt),
        "released": chain.events(chain.escrow, "ShipmentReleased", receipt),
    }


def test_a_window_of_zero_settles_at_once_as_before(chain: ChainKit) -> None:
    name = buyer_shipment("window-0")
    shipment = subject_id("shipment", name)
    open_with_window(chain, name, liveness=0)
    assert chain.escrow.functions.shipment(shipment).call()[8:] == (0, 0, 0)
    got = verdict(chain, shipment, 1, Verdict.BREACH)
    assert got["held"] == []
    assert len(got["voided"]) == 1
    assert status(chain, shipment) == VOIDED
    with pytest.raises(RevertError) as e:
        file_escrow_dispute(chain, chain.accounts.stranger, shipment, 1, "bafkreievidence")
    assert e.value.reason == "NotDisputable"


def test_a_held_verdict_pays_after_its_window_and_holds_the_deadline_back(chain: ChainKit) -> None:
    name = buyer_shipment("window-pays")
    shipment = subject_id("shipment", name)
    deadline = open_with_window(chain, name, deadline_in=3_600 + MIN_SETTLEMENT)
    seller = chain.accounts.seller.address
    got = verdict(chain, shipment, 1, Verdict.DELIVERED)
    (held,) = got["held"]
    assert held["value"] == int(Verdict.DELIVERED)
    assert got["released"] == []
    assert status(chain, shipment) == OPEN
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.finalize(shipment), chain.accounts.stranger)
    assert e.value.reason == "NotFinal"
    # Past the deadline (and the window), the buyer cannot overtake the held DELIVERED by reclaiming.
    chain.advance_time(deadline - chain.now() + 1)
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.reclaim(shipment), chain.accounts.buyer)
    assert e.value.reason == "VerdictHeldBack"
    before = chain.balance(seller)
    receipt = chain.send(chain.escrow.functions.finalize(shipment), chain.accounts.stranger)
    assert chain.events(chain.escrow, "ShipmentReleased", receipt) == [
        {"shipmentId": shipment, "epoch": 1, "amount": AMOUNT}
    ]
    assert chain.balance(seller) - before == AMOUNT
    assert status(chain, shipment) == RELEASED


def test_a_disputed_verdict_is_frozen_until_the_replacement_upholds_the_dispute(chain: ChainKit) -> None:
    name = buyer_shipment("window-upheld")
    shipment = subject_id("shipment", name)
    open_with_window(chain, name)
    watcher = chain.accounts.stranger
    verdict(chain, shipment, 1, Verdict.DELIVERED)  # wrong: the logger saw a breach
    receipt = file_escrow_dispute(chain, watcher, shipment, 1, "bafkreievidence")
    (filed,) = chain.events(chain.escrow, "DisputeFiled", receipt)
    assert (filed["watcher"], filed["bond"]) == (watcher.address, BOND)
    assert chain.escrow.functions.frozen(shipment).call()
    assert chain.balance(chain.escrow.functions.bonds().call()) == BOND
    chain.advance_time(LIVENESS + 1)
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.finalize(shipment))
    assert e.value.reason == "NotFinal"
    with pytest.raises(RevertError) as e:
        chain.send(chain.escrow.functions.resolveDispute(shipment, 1))
    assert e.value.reason == "DisputeUnanswered"
    assert status(chain, shipment) == OPEN
    # The network's replacement (epoch 2, BREACH) is held in turn; the dispute is upheld.
    assert len(verdict(chain, shipment, 2, Verdict.BREACH)["held"]) == 1
    before = chain.balance(watcher.address)
    receipt = chain.send(chain.escrow.functions.resolveDispute(shipment, 1))
    (upheld,) = chain.events(chain.escrow, "DisputeUpheld", receipt)
    assert (upheld["bond"], upheld["reward"]) == (BOND, 0)
    assert chain.balance(watcher.address) - before == BOND
    assert chain.escrow.functions.disputeOf(shipment, 1).call()[2] == UPHELD
    assert chain.balance(chain.escrow.functions.bonds().call()) == 0
    chain.advance_time(LIVENESS + 1)
    buyer_before = chain.balance(chain.accounts.buyer.address)
    chain.send(chain.escrow.functions.finalize(shipment))
    assert status(chain, shipment) == VOIDED
    assert chain.balance(chain.accounts.buyer.address) - buyer_before == AMOUNT


def test_a_dispute_of_an_honest_verdict_is_rejected_and_the_bond_goes_to_the_payee(chain: ChainKit) -> None:
    name = buyer_shipment("window-rejected")
    shipment = subject_id("shipment", name)
    open_with_window(chain, name)
    watcher, buyer = chain.accounts.stranger, chain.accounts.buyer.address
    verdict(chain, shipment, 1, Verdict.BREACH)
    file_escrow_dispute(chain, watcher, shipment, 1, "bafkreinothing")
    with pytest.raises(RevertError) as e:
        file_escrow_dispute(chain, watcher, shipment, 1, "bafkreiagain")
    assert e.value.reason == "NotDisputable"
    chain.advance_time(ANSWER + 1)
    watcher_before, buyer_before = chain.balance(watcher.address), chain.balance(buyer)
    receipt = chain.send(chain.escrow.functions.resolveDispute(shipment, 1))
    (rejected,) = chain.events(chain.escrow, "DisputeRejected", receipt)
    assert rejected["bond"] == BOND
    assert chain.events(chain.escrow, "ShipmentVoided", receipt) != []  # the verdict applies at once
    assert chain.escrow.functions.disputeOf(shipment, 1).call()[2] == REJECTED
    assert chain.balance(watcher.address) == watcher_before
    assert chain.balance(buyer) - buyer_before == AMOUNT + BOND
    assert status(chain, shipment) == VOIDED


def test_a_dispute_after_the_window_is_refused(chain: ChainKit) -> None:
    name = buyer_shipment("window-late")
    shipment = subject_id("shipment", name)
    open_with_window(chain, name)
    verdict(chain, shipment, 1, Verdict.BREACH)
    chain.advance_time(LIVENESS)
    with pytest.raises(RevertError) as e:
        file_escrow_dispute(chain, chain.accounts.stranger, shipment, 1, "bafkreilate")
    assert e.value.reason == "NotDisputable"
