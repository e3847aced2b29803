"""Helpers for the liveness and dispute tests of ColdChainEscrow (issue 14)."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from oracle.chain.escrow import open_escrow
from oracle.decisions.coldchain import profile_bytes32
from tests.fixtures.chain import ChainKit

USD = 10**6
AMOUNT = 250 * USD
BOND = 40 * USD
LIVENESS = 3_600
ANSWER = 7_200
#: ColdChainEscrow.Status
OPEN, VOIDED, RELEASED, RECLAIMED = 1, 2, 3, 4
#: ColdChainEscrow.DisputeStatus
DISPUTE_OPEN, UPHELD, REJECTED = 1, 2, 3


def open_with_window(
    chain: ChainKit,
    name: str,
    *,
    liveness: int = LIVENESS,
    answer: int = ANSWER,
    bond: int = BOND,
    deadline_in: int = 30 * 86_400,
) -> int:
    """The buyer funds and proposes the shipment ``name`` (``buyer_shipment(reference)``) with a liveness
    window and the seller accepts it (through ``oracle.chain.escrow.open_escrow``); returns the deadline."""
    buyer = chain.accounts.buyer
    chain.send(chain.coin.functions.mint(buyer.address, AMOUNT))
    chain.send(chain.coin.functions.approve(chain.escrow.address, AMOUNT), buyer)
    now = chain.now()
    deadline = now + deadline_in
    open_escrow(
        chain.w3,
        chain.escrow,
        name=name,
        buyer=buyer,
        seller=chain.accounts.seller,
        token=chain.coin.address,
        amount=AMOUNT,
        profile=profile_bytes32("refrigerated"),
        expected_delivery=now + 3_600,
        deadline=deadline,
        liveness=liveness,
        answer_window=answer if liveness else 0,
        dispute_bond=bond if liveness else 0,
    )
    return deadline


def status(chain: ChainKit, shipment: bytes) -> int:
    return int(chain.escrow.functions.shipment(shipment).call()[2])


def file_escrow_dispute(chain: ChainKit, watcher: LocalAccount, shipment: bytes, epoch: int, cid: str) -> Any:
    """Mint and approve the shipment's bond and dispute (shipment, epoch) as ``watcher``; the receipt."""
    bond = int(chain.escrow.functions.shipment(shipment).call()[10])
    chain.send(chain.coin.functions.mint(watcher.address, bond))
    chain.send(chain.coin.functions.approve(chain.escrow.address, bond), watcher)
    return chain.send(chain.escrow.functions.dispute(shipment, epoch, cid), watcher)
