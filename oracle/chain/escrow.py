"""ColdChainEscrow from Python: the profile registry and opening a shipment on terms both parties accept.

The escrow only takes shipments on profiles in its on-chain registry: each shipped profile
(``models/profiles/<name>.yaml``) is registered under its name as bytes32 with the keccak256 of its file
and its minimum settlement window, the least time from the expected delivery to the deadline
(``min_settlement_s``). ``deploy_all`` registers them all.

Opening a shipment takes two transactions: the buyer proposes (``createShipment``: deposit, terms, the
amount recorded as received) and the seller accepts the exact terms by their hash (``acceptShipment``).
Until then no verdict settles the deposit and the buyer may ``cancelShipment``.

A shipment is proposed by its **name**, which begins with the buyer's own address
(:func:`shipment_name_for`): ``"0x" + 40 lowercase hex digits + ":" + reference``, the reference 1 to
:data:`MAX_REFERENCE` characters of ``A-Z a-z 0-9 . _ -``. The escrow derives the shipment id itself,
``keccak256("shipment:" + name)`` = ``subject_id("shipment", name)``, and refuses a name that does not
carry the caller's address (``NameNotBuyers``), so nobody watching the mempool can take a buyer's id
first: a copy of the name from another account reverts, and a name with another address is another id.
The oracle knows the shipment by the same name (device bindings, telemetry, reports).

A liveness window (issue 14) is one more term the seller accepts (``createShipmentWithWindow``): a
verdict is then held ``liveness`` seconds before anyone may ``finalize`` it, and can be disputed
meanwhile with a bond of ``dispute_bond`` in the shipment's token; the network has ``answer_window``
seconds to answer a dispute with a replacement verdict. ``liveness=0`` (the default) settles at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_utils.crypto import keccak
from web3 import Web3

from oracle.chain.client import transact, translate_errors
from oracle.errors import ChainError, ValidationError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract import Contract

#: What the oracle needs after the expected delivery before a verdict can be on-chain: a day for the
#: last readings to arrive, the nodes to evaluate and k of them to sign and land the report.
VERDICT_SLACK_S = 86_400


#: Longest reference after the buyer's prefix (``ColdChainEscrow.MAX_REFERENCE``): a name is then at most
#: 43 + 64 = 107 characters, inside the API's 120-character subject names.
MAX_REFERENCE = 64
_REFERENCE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_REFERENCE}}}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def shipment_name_for(buyer_address: str, reference: str) -> str:
    """The canonical name of the buyer's shipment ``reference``: ``"0x<buyer, lowercase hex>:<reference>"``,
    the only form ``ColdChainEscrow.createShipment`` takes from that buyer. Its on-chain id (and report
    subject) is ``subject_id("shipment", name)``.

    Raises ``ValidationError`` (reason ``bad_shipment_name``) for an address that is not 20 bytes of hex or
    a reference that is empty, longer than :data:`MAX_REFERENCE` or has a character outside
    ``A-Z a-z 0-9 . _ -``."""
    if not isinstance(buyer_address, str) or not _ADDRESS.fullmatch(buyer_address):
        raise ValidationError(
            f"buyer address {buyer_address!r} is not 0x + 40 hex digits", reason="bad_shipment_name"
        )
    if not isinstance(reference, str) or not _REFERENCE.fullmatch(reference):
        raise ValidationError(
            f"shipment reference {reference!r} must be 1 to {MAX_REFERENCE} characters of A-Z a-z 0-9 . _ -",
            reason="bad_shipment_name",
        )
    return f"0x{buyer_address[2:].lower()}:{reference}"


def shipment_buyer(name: str) -> str | None:
    """The buyer address (lowercase) a canonical shipment name carries, or None when ``name`` is not of
    the form :func:`shipment_name_for` makes."""
    address, sep, reference = name.partition(":")
    if (
        not sep
        or not _ADDRESS.fullmatch(address)
        or address != address.lower()
        or not _REFERENCE.fullmatch(reference)
    ):
        return None
    return address


@dataclass(frozen=True)
class RegisteredProfile:
    name: str
    profile_id: bytes  # the name, ASCII, right-padded to 32 bytes (decisions.coldchain.profile_bytes32)
    file_hash: bytes  # keccak256 of the profile file's bytes
    min_settlement_s: int


def min_settlement_s(gap_limit_s: int) -> int:
    """The least deadline after the expected delivery for a profile whose data-gap limit is ``gap_limit_s``:
    a logger silent since delivery is only decided once the gap limit has passed, then the verdict
    needs :data:`VERDICT_SLACK_S` to land."""
    return gap_limit_s + VERDICT_SLACK_S


def shipped_profiles(directory: Path | None = None) -> list[RegisteredProfile]:
    """The registry entries of the profiles shipped in ``directory`` (``models/profiles`` by default)."""
    from models.coldchain.profiles import PROFILE_DIR, load_profile, profile_names
    from oracle.decisions.coldchain import profile_bytes32

    directory = directory or PROFILE_DIR
    entries = []
    for name in profile_names(directory):
        profile = load_profile(name, directory=directory)
        entries.append(
            RegisteredProfile(
                name=name,
                profile_id=profile_bytes32(name),
                file_hash=keccak((directory / f"{name}.yaml").read_bytes()),
                min_settlement_s=min_settlement_s(profile.gap_limit_s),
            )
        )
    return entries


def register_profiles(
    w3: Web3, escrow: Contract, *, owner: LocalAccount, profiles: list[RegisteredProfile] | None = None
) -> list[RegisteredProfile]:
    """Register ``profiles`` (the shipped ones by default) on ``escrow``; ``owner`` must own it."""
    profiles = shipped_profiles() if profiles is None else profiles
    for p in profiles:
        call = escrow.functions.setProfile(p.profile_id, p.file_hash, p.min_settlement_s)
        transact(w3, call, sender=owner)
    return profiles


def open_escrow(
    w3: Web3,
    escrow: Contract,
    *,
    name: str,
    buyer: LocalAccount,
    seller: LocalAccount,
    token: str,
    amount: int,
    profile: bytes,
    expected_delivery: int,
    deadline: int,
    liveness: int = 0,
    answer_window: int = 0,
    dispute_bond: int = 0,
) -> bytes:
    """The buyer proposes the shipment ``name`` (:func:`shipment_name_for` of the buyer's address; having
    approved ``amount`` of ``token``) and the seller accepts its terms; returns the accepted terms hash.
    The shipment's id is ``subject_id("shipment", name)``. Raises ``ValidationError`` when ``name`` is not
    the buyer's (checked before any transaction) and ``RevertError`` with the escrow's reason.

    ``liveness`` seconds (0: none) a verdict is held before it applies, ``answer_window`` seconds the
    network has to answer a dispute, ``dispute_bond`` the bond a dispute takes (token units; 0: none)."""
    if shipment_buyer(name) != buyer.address.lower():
        raise ValidationError(
            f"shipment name {name!r} is not buyer {buyer.address}'s: it must be "
            f"shipment_name_for(buyer, reference), '0x<buyer>:<reference>'",
            reason="bad_shipment_name",
        )
    if liveness:
        terms_tuple = (
            seller.address,
            token,
            amount,
            profile,
            expected_delivery,
            deadline,
            liveness,
            answer_window,
            dispute_bond,
        )
        call = escrow.functions.createShipmentWithWindow(name, terms_tuple)
    else:
        call = escrow.functions.createShipment(
            name, seller.address, token, amount, profile, expected_delivery, deadline
        )
    receipt = transact(w3, call, sender=buyer)
    from web3.logs import DISCARD

    with translate_errors("read the escrow's proposal"):
        (proposed,) = escrow.events.ShipmentProposed().process_receipt(receipt, errors=DISCARD)
    terms = bytes(proposed["args"]["termsHash"])
    if len(terms) != 32:
        raise ChainError("ShipmentProposed carried no terms hash")
    shipment = bytes(proposed["args"]["shipmentId"])
    transact(w3, escrow.functions.acceptShipment(shipment, buyer.address, terms), sender=seller)
    return terms
