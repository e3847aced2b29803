"""Authenticated peer messages.

Every request one node makes to another carries three headers: the sender's node id, the time, and a
signature by the sender's peer key over the network name, the node id, the method, the path with its
query, the time and the keccak of the body. The receiver checks that the node is a member, that the
signature recovers to that member's peer key, that the time is within :data:`MAX_SKEW_S` of its own
clock, and that it has not seen the same signed request before (a replayed request is refused, even one
that would be harmless).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

from oracle.errors import OracleError
from oracle.network.membership import Member, Network, NodeIdentity

HEADER_NODE = "X-Oracle-Node"
HEADER_TIME = "X-Oracle-Time"
HEADER_SIGNATURE = "X-Oracle-Signature"
#: Largest clock difference accepted between two nodes, in seconds.
MAX_SKEW_S = 30.0
_DOMAIN = b"oracle-peer/1"


class PeerAuthError(OracleError):
    """A peer request that is not authentic; ``reason`` says why (``unknown_node``, ``bad_signature``,
    ``stale``, ``replayed``, ``missing_headers``)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def request_digest(network: str, node: str, method: str, path: str, ts: str, body: bytes) -> bytes:
    parts = [_DOMAIN, network.encode(), node.encode(), method.upper().encode(), path.encode(), ts.encode()]
    return keccak(b"\n".join(parts) + b"\n" + keccak(body))


def sign_request(
    identity: NodeIdentity, network: Network, method: str, path: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The headers that authenticate ``method path`` with ``body`` as coming from ``identity``."""
    ts = f"{(time.time() if now is None else now):.3f}"
    digest = request_digest(network.name, identity.node_id, method, path, ts, body)
    signed = identity.account.sign_message(encode_defunct(primitive=digest))
    return {
        HEADER_NODE: identity.node_id,
        HEADER_TIME: ts,
        HEADER_SIGNATURE: "0x" + bytes(signed.signature).hex(),
    }


class PeerVerifier:
    """Checks peer requests against the network file; remembers recent requests to refuse replays."""

    def __init__(self, network: Network, *, max_skew_s: float = MAX_SKEW_S) -> None:
        self.network = network
        self.max_skew_s = max_skew_s
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> Member:
        """The member that sent the request; raises :class:`PeerAuthError` otherwise."""
        node, ts, sig = (headers.get(h) for h in (HEADER_NODE, HEADER_TIME, HEADER_SIGNATURE))
        if not node or not ts or not sig:
            raise PeerAuthError(
                "a peer request must carry node, time and signature headers", reason="missing_headers"
            )
        member = next((m for m in self.network.members if m.id == node), None)
        if member is None:
            raise PeerAuthError(f"{node[:40]!r} is not a member of this network", reason="unknown_node")
        current = time.time() if now is None else now
        try:
            sent = float(ts)
        except ValueError:
            raise PeerAuthError("the time header is not a number", reason="stale") from None
        if not abs(current - sent) <= self.max_skew_s:
            raise PeerAuthError(
                f"request time {ts} is more than {self.max_skew_s:.0f}s from this node's clock",
                reason="stale",
            )
        digest = request_digest(self.network.name, node, method, path, ts, body)
        try:
            signature = bytes.fromhex(sig.removeprefix("0x"))
            signer = Account.recover_message(encode_defunct(primitive=digest), signature=signature)
        except Exception:  # noqa: BLE001 - any malformed signature is simply not authentic
            raise PeerAuthError("the request signature is malformed", reason="bad_signature") from None
        if signer.lower() != member.peer_key.lower():
            raise PeerAuthError(f"the request is not signed by {node}'s peer key", reason="bad_signature")
        with self._lock:
            for old, expires in list(self._seen.items()):
                if expires > current:
                    break
                del self._seen[old]
            if digest in self._seen:
                raise PeerAuthError("this exact request was already received", reason="replayed")
            self._seen[digest] = current + 2 * self.max_skew_s
        return member
