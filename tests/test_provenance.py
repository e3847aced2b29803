"""inputsRoot: Merkle root over sorted CIDs, with proofs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oracle.provenance import EMPTY_ROOT, leaf_hash, merkle_proof, merkle_root, verify_proof
from oracle.storage.blobs import cid_for


def _cids(n: int) -> list[str]:
    return [cid_for(f"input {i}".encode()) for i in range(n)]


def test_empty_and_single() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    (c,) = _cids(1)
    assert merkle_root([c]) == leaf_hash(c)


def test_root_ignores_order_and_duplicates() -> None:
    cids = _cids(7)
    assert merkle_root(cids) == merkle_root(list(reversed(cids))) == merkle_root(cids + cids[:3])


def test_any_change_changes_the_root() -> None:
    cids = _cids(5)
    assert merkle_root(cids) != merkle_root(cids[:4])
    assert merkle_root(cids) != merkle_root([*cids[:4], cid_for(b"input 4!")])


@given(st.integers(min_value=1, max_value=40), st.data())
def test_every_member_has_a_valid_proof(n: int, data: st.DataObject) -> None:
    cids = _cids(n)
    root = merkle_root(cids)
    member = data.draw(st.sampled_from(cids))
    proof = merkle_proof(cids, member)
    assert verify_proof(member, proof, root)
    assert not verify_proof(cid_for(b"outsider"), proof, root)
