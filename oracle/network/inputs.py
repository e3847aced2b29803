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

Cold-chain telemetry is different: a node that missed readings (its ingest worker down past the broker's
session expiry, cut off, or its database restored from an older backup) does not know their CIDs at all,
since its own database never listed them. It learns them from its peers' reports: every peer signature
carries the CID of the decision manifest it was computed from, and the manifest's ``readings`` step lists
the signed device messages it read (:func:`oracle.decisions.coldchain.message_inputs`).
:meth:`PeerBackedBlobStore.gather_telemetry`, called at the start of every cold-chain evaluation, fetches
each listed message this node lacks by CID, checks the bytes against the CID, and hands the message to the
node's own ingest pipeline, which re-verifies the device's signature with the device's registered key and
stores the readings idempotently (a reading already held is a duplicate, never a second row). A peer's
word is never enough: a message whose signature does not verify is refused (``bad_reading``, naming the
peer) and nothing of it is stored. A message that f + 1 members list (so at least one honest member
vouches for it) and no peer can provide leaves the decision incomplete and unsigned, with each peer's
answer as the reason; one listed by fewer is fetched if it can be, never waited for (a lone hostile member
cannot stall the honest ones with a CID nobody holds).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import cbor2
import httpx
from sqlalchemy import select

from oracle.errors import IntegrityError, NotFound, OracleError, ValidationError
from oracle.storage.blobs import BlobStore, parse_cid

if TYPE_CHECKING:
    from oracle.context import Context
    from oracle.network.rounds import NodeRuntime

log = logging.getLogger(__name__)

#: How long one peer may take to send one blob (a raster can be tens of MB), seconds.
FETCH_TIMEOUT_S = 30.0
#: Most telemetry messages one peer manifest may make this node fetch (a hostile manifest listing
#: millions of CIDs must not keep the node busy).
MAX_MESSAGES_PER_MANIFEST = 100_000
#: Most manifests (and refused CIDs) remembered in memory; past that the memory starts again.
MAX_REMEMBERED = 10_000
#: The ``source`` of readings fetched from a peer (the device signed them; the peer only relayed them).
PEER_SOURCE = "peer"


class PeerBackedBlobStore:
    """This node's content store; a blob it lacks (or holds corrupt) is fetched from the peers.

    Writes and ``has`` are local. The peer endpoint serves :attr:`local` only, so two nodes that both
    lack a blob never ask each other in a circle.
    """

    def __init__(self, local: BlobStore, ctx: Context, runtime: NodeRuntime) -> None:
        self.local = local
        self._ctx = ctx
        self._runtime = runtime
        self._lock = threading.Lock()
        #: Telemetry message CIDs each peer manifest lists (read once per process).
        self._manifests: dict[str, tuple[str, ...]] = {}
        #: Message CIDs refused for good (the bytes hash to the CID but are not the device's message).
        self._refused: set[str] = set()

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
                _record_oversized(self._ctx, self._runtime, e, member.id, cid)
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

    # -- cold-chain telemetry ------------------------------------------------------------------------

    def gather_telemetry(self, shipment_id: str, subject: str) -> list[str]:
        """Fetch the telemetry messages of ``shipment_id`` that the peers' reports list and this node
        lacks, and ingest them through this node's own pipeline (device signature re-verified).

        Returns why each listed message could not be had (empty: nothing is missing); the evaluation is
        then incomplete and nothing is signed. Only a message listed by at least :meth:`vouchers`
        members counts (so at least one honest member says it exists): one hostile member listing a CID
        nobody holds cannot stop every honest node from signing. A message refused as not the device's
        own does not count either: it is not telemetry, and it is recorded against the peer.
        """
        from oracle.storage.network_tables import PeerSignature

        me = self._runtime.identity.node_id
        with self._ctx.sessions() as s:
            rows = s.execute(
                select(PeerSignature.node_id, PeerSignature.manifest_cid)
                .where(
                    PeerSignature.subject == subject.lower(),
                    PeerSignature.node_id != me,
                    PeerSignature.manifest_cid != "",
                )
                .order_by(PeerSignature.epoch, PeerSignature.node_id)
            ).all()
        listers: dict[str, list[str]] = {}
        for node_id, manifest_cid in dict.fromkeys((r.node_id, r.manifest_cid) for r in rows):
            for cid in self._manifest_messages(manifest_cid, node_id, shipment_id):
                if node_id not in listers.setdefault(cid, []):
                    listers[cid].append(node_id)
        lacking = [c for c in listers if c not in self._refused and not self.local.has(c)]
        if lacking:
            # Messages this node received but has not evaluated since are not in its store as inputs yet:
            # derive them from its own ingest batches before asking anyone.
            self._derive_own_messages(shipment_id)
            lacking = [c for c in lacking if not self.local.has(c)]
        missing: list[str] = []
        for cid in lacking:
            why = self._pull_message(cid, listed_by=listers[cid], shipment_id=shipment_id)
            if why is not None and len(listers[cid]) >= self.vouchers():
                missing.append(why)
            elif why is not None:
                log.warning("not waiting for %s, listed by %s only: %s", cid, ", ".join(listers[cid]), why)
        return missing

    def fill_gap(self, shipment_id: str, subject: str) -> int:
        """Ask every peer which signed messages it holds for the shipment, and fetch and ingest those this
        node lacks (device signatures re-verified); returns how many were stored.

        Called by the evaluation when this node's own record has a data gap, before it records a breach
        on it: a gap that was only this node's (its worker down, its database restored from a backup)
        is filled from the peers rather than signed as a breach they would not sign.
        """
        listers: dict[str, list[str]] = {}
        me = self._runtime.identity.node_id
        for member in self._runtime.network.members:
            if member.id == me:
                continue
            try:
                cids = self._runtime.client.fetch_shipment_messages(member, subject.lower())
            except (httpx.HTTPError, ValidationError, ValueError) as e:
                log.info("%s did not list its messages of %s: %s", member.id, shipment_id, type(e).__name__)
                continue
            for cid in cids[:MAX_MESSAGES_PER_MANIFEST]:
                try:
                    parse_cid(cid)
                except ValidationError:
                    continue
                if member.id not in listers.setdefault(cid, []):
                    listers[cid].append(member.id)
        lacking = [c for c in listers if c not in self._refused and not self.local.has(c)]
        if lacking:
            self._derive_own_messages(shipment_id)
            lacking = [c for c in lacking if not self.local.has(c)]
        before = self._runtime.counters.get("inputs_fetched", 0)
        for cid in lacking:
            why = self._pull_message(cid, listed_by=listers[cid], shipment_id=shipment_id)
            if why is not None:
                log.warning("gap of %s: %s", shipment_id, why)
        stored = self._runtime.counters.get("inputs_fetched", 0) - before
        if stored:
            log.warning(
                "shipment %s: %d messages missing here filled this node's gap from its peers",
                shipment_id,
                stored,
            )
        return stored

    def vouchers(self) -> int:
        """How many members must list a telemetry input before this node will not sign without it:
        f + 1, for the f = (n - 1) // 3 faulty members a network of n tolerates."""
        return (len(self._runtime.network.members) - 1) // 3 + 1

    def _derive_own_messages(self, shipment_id: str) -> None:
        """Store the message inputs of every telemetry batch this node holds for the shipment (what its
        own evaluation stores too: :func:`oracle.decisions.coldchain.message_inputs`)."""
        from oracle.decisions.coldchain import message_inputs
        from oracle.storage.tables import DeviceBinding, TelemetryReading

        with self._ctx.sessions() as s:
            batches = s.scalars(
                select(TelemetryReading.batch_cid)
                .where(TelemetryReading.shipment_id == shipment_id)
                .distinct()
            ).all()
            devices = set(
                s.scalars(
                    select(DeviceBinding.device_id).where(DeviceBinding.shipment_id == shipment_id)
                ).all()
            )
        for batch in sorted(batches):
            try:
                message_inputs(self.local, [batch], devices)
            except (NotFound, IntegrityError):
                continue  # a batch this node lost: the evaluation says so; the peers may have its messages

    def _peers(self, first: str) -> list[Any]:
        """The other members, ``first`` (the peer whose report named the CID) first."""
        me = self._runtime.identity.node_id
        others = [m for m in self._runtime.network.members if m.id != me]
        return sorted(others, key=lambda m: m.id != first)

    def _fetch_checked(self, cid: str, first: str) -> tuple[bytes, str] | list[str]:
        """``cid``'s bytes from the first peer that serves bytes matching it, and that peer's id; or each
        peer's answer. A peer whose bytes do not hash to the CID is recorded (``bad_blob``)."""
        from oracle.network.rounds import store_peer_reject

        answers: list[str] = []
        for member in self._peers(first):
            try:
                return self._runtime.client.fetch_blob(member, cid, timeout=FETCH_TIMEOUT_S), member.id
            except NotFound:
                answers.append(f"{member.id}: does not have it")
            except IntegrityError as e:
                answers.append(f"{member.id}: sent bytes that do not match the CID")
                store_peer_reject(
                    self._ctx, reason="bad_blob", message=str(e)[:500], sender=member.id, meta={"cid": cid}
                )
                self._runtime.count("inputs_refused")
            except (httpx.HTTPError, ValidationError) as e:
                answers.append(f"{member.id}: {type(e).__name__}")
                _record_oversized(self._ctx, self._runtime, e, member.id, cid)
        return answers or ["no peers"]

    def _manifest_messages(self, manifest_cid: str, listed_by: str, shipment_id: str) -> tuple[str, ...]:
        """The telemetry message CIDs a peer's cold-chain manifest read (its ``readings`` step's inputs);
        empty when the manifest cannot be had now (asked again at the next evaluation) or is not a
        cold-chain manifest of this shipment (recorded against the peer, not asked again)."""
        import json

        from oracle.network.rounds import store_peer_reject

        with self._lock:
            known = self._manifests.get(manifest_cid)
        if known is not None:
            return known
        try:
            parse_cid(manifest_cid)
            raw = self.local.get(manifest_cid)
        except (NotFound, IntegrityError, ValidationError):
            got = self._fetch_checked(manifest_cid, listed_by)
            if isinstance(got, list):
                log.warning("manifest %s of %s's report not available: %s", manifest_cid, listed_by, got)
                return ()
            raw = got[0]
        cids: tuple[str, ...] = ()
        try:
            manifest = json.loads(raw)
            if manifest.get("kind") != "coldchain" or manifest.get("subject") != shipment_id:
                raise ValueError(f"not a cold-chain manifest of shipment {shipment_id!r}")
            listed = [
                str(c) for step in manifest["steps"] if step.get("name") == "readings" for c in step["inputs"]
            ]
            if len(listed) > MAX_MESSAGES_PER_MANIFEST:
                raise ValueError(
                    f"lists {len(listed)} telemetry messages (at most {MAX_MESSAGES_PER_MANIFEST})"
                )
            for c in listed:
                parse_cid(c)
            cids = tuple(dict.fromkeys(listed))
        except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as e:
            store_peer_reject(
                self._ctx,
                reason="bad_manifest",
                message=f"manifest {manifest_cid} of {listed_by}'s report: {type(e).__name__}: {e}"[:2000],
                sender=listed_by,
                meta={"cid": manifest_cid, "shipment": shipment_id},
            )
            self._runtime.count("inputs_refused")
        with self._lock:
            if len(self._manifests) >= MAX_REMEMBERED:
                self._manifests.clear()  # read again when needed: a bound on memory, not on correctness
            self._manifests[manifest_cid] = cids
        return cids

    def _pull_message(self, cid: str, *, listed_by: list[str], shipment_id: str) -> str | None:
        """Fetch one signed telemetry message by CID and ingest it; ``None`` when done (stored, or
        refused for good and recorded), else why no peer could provide it."""
        from ingest.telemetry.pipeline import IncomingMessage

        got = self._fetch_checked(cid, listed_by[0])
        if isinstance(got, list):
            self._runtime.count("inputs_unavailable")
            return (
                f"telemetry input {cid} listed by the reports of {', '.join(listed_by)} is missing in this "
                "node's store and no peer could provide it (" + "; ".join(got) + ")"
            )
        data, served_by = got
        try:
            messages = cbor2.loads(data)
            if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
                raise ValueError("not a telemetry message input (a CBOR array of one message)")
            device, payload = messages[0]["device"], messages[0]["payload"]
            if not isinstance(device, str) or not isinstance(payload, bytes):
                raise ValueError("a telemetry message input needs a text device id and a byte payload")
        except (ValueError, TypeError, KeyError, EOFError, cbor2.CBORDecodeError) as e:
            self._refuse(cid, served_by, listed_by, "bad_input", f"{type(e).__name__}: {e}")
            return None
        ingest = _ingest(self._ctx)
        try:
            outcome = ingest.process([IncomingMessage(device, payload, source=PEER_SOURCE)])
        except OracleError as e:  # the database is unavailable: try again at the next evaluation
            return f"telemetry input {cid} fetched from {served_by} could not be stored: {e}"
        if not outcome.cid:
            # Not the device's own message (bad signature, unknown or revoked key): nothing was stored.
            why = "; ".join(f"{r.reason.value}: {r.message}" for r in outcome.messages[0].rejects)
            self._refuse(cid, served_by, listed_by, "bad_reading", f"device {device}: {why}")
            return None
        # The message is the device's: keep it under its CID, so this node can serve it and replay the
        # decision that reads it.
        self.local.put(data)
        self._runtime.count("inputs_fetched")
        self._runtime.count("readings_fetched", outcome.accepted)
        log.warning(
            "telemetry input %s of shipment %s (device %s) was missing; fetched from %s, signature verified: "
            "%d readings stored, %d already held, %d refused",
            cid,
            shipment_id,
            device,
            served_by,
            outcome.accepted,
            outcome.duplicates,
            outcome.rejected,
        )
        return None

    def _refuse(self, cid: str, served_by: str, listed_by: list[str], reason: str, detail: str) -> None:
        from oracle.network.rounds import store_peer_reject

        with self._lock:
            if len(self._refused) >= MAX_REMEMBERED:
                self._refused.clear()
            self._refused.add(cid)
        listers = ", ".join(listed_by)
        text = f"telemetry input {cid} served by {served_by} (listed by {listers}) refused: {detail}"
        log.warning("%s", text)
        meta = {"cid": cid, "listed_by": listed_by}
        store_peer_reject(self._ctx, reason=reason, message=text, sender=served_by, meta=meta)
        self._runtime.count("inputs_refused")


def _ingest(ctx: Context) -> Any:
    """This node's telemetry ingest pipeline (the one its HTTP ingest endpoint uses)."""
    from oracle.api.telemetry import telemetry_ingest

    return telemetry_ingest(ctx)


def held_messages(ctx: Context, subject: str) -> list[str]:
    """The CIDs of the signed telemetry messages this node holds for shipment ``subject`` (the inputs
    its own evaluation would read; stored as such), for a peer with a gap (``GET /v1/peer/telemetry``)."""
    from oracle.decisions.coldchain import message_inputs
    from oracle.scheduler.evaluations import shipment_name
    from oracle.storage.tables import DeviceBinding, TelemetryReading

    name = shipment_name(ctx, subject)
    if name is None:
        return []
    with ctx.sessions() as s:
        batches = s.scalars(
            select(TelemetryReading.batch_cid).where(TelemetryReading.shipment_id == name).distinct()
        ).all()
        devices = set(
            s.scalars(select(DeviceBinding.device_id).where(DeviceBinding.shipment_id == name)).all()
        )
    local = getattr(ctx.blobs, "local", ctx.blobs)  # this node's own store only: never ask the peers
    out: set[str] = set()
    for batch in sorted(batches):
        try:
            out.update(message_inputs(local, [batch], devices))
        except (NotFound, IntegrityError):
            continue
    return sorted(out)[:MAX_MESSAGES_PER_MANIFEST]


def _record_oversized(ctx: Context, runtime: NodeRuntime, e: Exception, peer: str, cid: str) -> None:
    """A peer that answered a blob request with more than the client reads (cut off there) is recorded
    (``oversized_blob``): a member flooding its peers is a hostile peer, not a network hiccup."""
    if not (isinstance(e, ValidationError) and e.reason == "too_large"):
        return
    from oracle.network.rounds import store_peer_reject

    store_peer_reject(ctx, reason="oversized_blob", message=str(e)[:500], sender=peer, meta={"cid": cid})
    runtime.count("inputs_refused")
