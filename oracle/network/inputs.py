"""Inputs a node lacks, fetched from its peers by content id.

Every node ingests the same sources on its own, so the rasters, weather feeds and region boundaries a
decision reads have the same CIDs on every node. When this node's store lacks one (a disk lost or
restored from an old backup, a watched folder that missed a file) or holds corrupt bytes for it, the
decision asks the peers for that CID over the authenticated peer channel
(``GET /v1/peer/blobs/{cid}``), checks the bytes against the CID, and only then stores and uses them. A
peer that answers with other bytes is recorded as a refused peer message and the next one is asked.

If no peer has it, the lookup raises :class:`~oracle.errors.NotFound` naming each peer's answer: the
decision is then recorded *incomplete* with that reason and nothing is signed
(:func:`oracle.decisions.record.lacking_inputs`).

A corrupt local copy is moved aside (``quarantine``), never overwritten in place, so an audit can still
see what was there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from oracle.errors import IntegrityError, NotFound, ValidationError
from oracle.storage.blobs import BlobStore

if TYPE_CHECKING:
    from oracle.context import Context
    from oracle.network.rounds import NodeRuntime

log = logging.getLogger(__name__)

#: How long one peer may take to send one blob (a raster can be tens of MB), seconds.
FETCH_TIMEOUT_S = 30.0


class PeerBackedBlobStore:
    """This node's content store; a blob it lacks (or holds corrupt) is fetched from the peers.

    Writes and ``has`` are local. The peer endpoint serves :attr:`local` only, so two nodes that both
    lack a blob never ask each other in a circle.
    """

    def __init__(self, local: BlobStore, ctx: Context, runtime: NodeRuntime) -> None:
        self.local = local
        self._ctx = ctx
        self._runtime = runtime

    def put(self, data: bytes) -> str:
        return self.local.put(data)

    def has(self, cid: str) -> bool:
        return self.local.has(cid)

    def get(self, cid: str) -> bytes:
        try:
            return self.local.get(cid)
        except NotFound:
            why = "missing"
        except IntegrityError:
            why = "corrupt"
        return self.fetch(cid, why=why)

    def fetch(self, cid: str, *, why: str) -> bytes:
        """``cid`` from the first peer that holds it, checked against the CID, then stored here.

        :raises NotFound: no peer could provide it (each peer's answer is in the message).
        """
        from oracle.network.rounds import store_peer_reject

        answers: list[str] = []
        me = self._runtime.identity.node_id
        for member in self._runtime.network.members:
            if member.id == me:
                continue
            try:
                data = self._runtime.client.fetch_blob(member, cid, timeout=FETCH_TIMEOUT_S)
            except NotFound:
                answers.append(f"{member.id}: does not have it")
                continue
            except IntegrityError as e:
                answers.append(f"{member.id}: sent bytes that do not match the CID")
                store_peer_reject(
                    self._ctx, reason="bad_blob", message=str(e)[:500], sender=member.id, meta={"cid": cid}
                )
                self._runtime.count("inputs_refused")
                continue
            except (httpx.HTTPError, ValidationError) as e:
                answers.append(f"{member.id}: {type(e).__name__}")
                continue
            if why == "corrupt":
                quarantine = getattr(self.local, "quarantine", None)
                if quarantine is not None:
                    quarantine(cid)
            self.local.put(data)
            self._runtime.count("inputs_fetched")
            log.warning(
                "input %s was %s in this node's store; fetched from %s and checked against its CID",
                cid,
                why,
                member.id,
            )
            return data
        self._runtime.count("inputs_unavailable")
        raise NotFound(
            f"input {cid} is {why} in this node's store and no peer could provide it ("
            + "; ".join(answers or ["no peers"])
            + ")"
        )
