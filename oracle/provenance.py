"""Merkle commitments over input CIDs: the report's ``inputsRoot``.

Encoding (stable; auditors rely on it):

* the input set is de-duplicated and sorted by CID string;
* leaf = keccak256(0x00 ‖ binary CID) — the binary CID is the multicodec-prefixed form
  (``0x01 0x55 0x12 0x20`` ‖ sha-256 digest for our raw CIDv1);
* node = keccak256(0x01 ‖ min(a, b) ‖ max(a, b)) — children sorted, so a proof needs no left/right flags;
* a level with an odd count carries its last node up unchanged;
* the root of one leaf is that leaf; the root of no inputs is 32 zero bytes.

The 0x00/0x01 prefixes keep a leaf from ever being confused with an inner node. A proof is the list of
sibling hashes from the leaf up; :func:`verify_proof` recomputes the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth_utils.crypto import keccak
from multiformats import CID

from oracle.storage.blobs import parse_cid

EMPTY_ROOT = bytes(32)


def leaf_hash(cid: str) -> bytes:
    return keccak(b"\x00" + bytes(parse_cid(cid)))


def _node(a: bytes, b: bytes) -> bytes:
    lo, hi = (a, b) if a <= b else (b, a)
    return keccak(b"\x01" + lo + hi)


def _levels(cids: Iterable[str]) -> list[list[bytes]]:
    level = [leaf_hash(c) for c in sorted(set(cids))]
    levels = [level]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(cids: Iterable[str]) -> bytes:
    """The 32-byte root over a set of CIDs (order and duplicates do not matter)."""
    levels = _levels(cids)
    return levels[-1][0] if levels[0] else EMPTY_ROOT


def merkle_proof(cids: Iterable[str], cid: str) -> list[bytes]:
    """Sibling hashes from ``cid``'s leaf to the root. Raises KeyError if ``cid`` is not in the set."""
    levels = _levels(cids)
    target = leaf_hash(cid)
    try:
        index = levels[0].index(target)
    except ValueError:
        raise KeyError(cid) from None
    proof = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify_proof(cid: str, proof: Sequence[bytes], root: bytes) -> bool:
    h = leaf_hash(cid)
    for sibling in proof:
        h = _node(h, sibling)
    return h == root


__all__ = ["CID", "EMPTY_ROOT", "leaf_hash", "merkle_proof", "merkle_root", "verify_proof"]
