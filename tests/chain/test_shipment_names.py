"""Shipment names in Python: ``shipment_name_for`` makes the one name ColdChainEscrow takes from a buyer,
refuses what the contract refuses, and the places that tell a name from a 0x subject are not fooled by a
name that begins with the buyer's address (one of 66 characters looks like a subject by its length)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracle.api.pagination import is_subject_hex
from oracle.chain.escrow import MAX_REFERENCE, shipment_buyer, shipment_name_for
from oracle.disposition.content import resolve_shipment
from oracle.errors import ValidationError
from oracle.reports import subject_id

BUYER = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # any address; checksummed on purpose
REFERENCE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1)


@given(REFERENCE.filter(lambda r: len(r) <= MAX_REFERENCE))
def test_a_name_is_the_lowercase_buyer_then_the_reference(reference: str) -> None:
    name = shipment_name_for(BUYER, reference)
    assert name == "0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc:" + reference
    assert shipment_buyer(name) == BUYER.lower()
    assert len(subject_id("shipment", name)) == 32


@pytest.mark.parametrize(
    ("buyer", "reference"),
    [
        (BUYER, ""),
        (BUYER, "x" * (MAX_REFERENCE + 1)),
        (BUYER, "a/b"),
        (BUYER, "two words"),
        (BUYER, "colon:inside"),
        (BUYER, "é"),
        ("0x1234", "SHP-1"),
        ("9965507D1a55bcC2695C58ba16FB37d819B0A4dc", "SHP-1"),
    ],
)
def test_bad_names_are_refused_with_a_reason(buyer: str, reference: str) -> None:
    with pytest.raises(ValidationError) as e:
        shipment_name_for(buyer, reference)
    assert e.value.reason == "bad_shipment_name"


def test_other_names_carry_no_buyer() -> None:
    assert shipment_buyer("SHP-42") is None
    assert shipment_buyer(f"{BUYER}:SHP-42") is None  # the checksummed spelling is not the canonical name
    assert shipment_buyer(shipment_name_for(BUYER, "SHP-42") + "/x") is None


def test_a_66_character_name_is_not_taken_for_a_subject() -> None:
    name = shipment_name_for(BUYER, "R" * 23)
    assert len(name) == 66
    assert not is_subject_hex(name)
    subject = "0x" + subject_id("shipment", name).hex()
    assert is_subject_hex(subject)
    # The disposition report resolves a name by hashing it, without looking anything up.
    assert resolve_shipment(None, name) == (name, subject)  # type: ignore[arg-type]
