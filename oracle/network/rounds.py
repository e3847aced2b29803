"""Rounds: from this node's own report to a k-of-n transaction, with every peer's word recorded.

A round is one (subject, epoch). It starts when this node's decision engine produces a complete report
(:func:`begin_round`): the report row is recorded, this node's signer signs it, and the signature is
stored beside the ones peers send. Nothing else can start a round: there is no path by which a peer's
message or an API call makes this node's signer sign a report it did not compute.

The :class:`RoundDriver` (a worker thread) then, for every open round:

1. delivers this node's signature to every peer that has not acknowledged it yet (retrying with
   backoff, so a peer that was down or cut off gets it when it is back);
2. asks the router for the subject's latest epoch: once the router holds this epoch (or a later one)
   the round is over, ``landed`` when the router's digest is ours, ``superseded`` otherwise; a node
   never transmits a report the router already has;
3. counts the distinct members whose signature is over the *same digest* as ours: at k the round is
   ``ready``; a signature over a different digest is a disagreement, kept, shown and counted, never
   combined;
4. when ready and this node's turn in the transmission schedule has come
   (:mod:`oracle.network.schedule`), queues the router transaction with k agreeing signatures in its
   own durable outbox (``queued``).

A transmission that reverts (or never leaves a node) does not stop the report: every other member's
round stays ``ready`` and queues the same report in its own outbox once its place in the schedule comes
(``position x transmit_timeout_s`` after it saw k signatures), after asking the router first; the router
takes one report per (subject, epoch), so whoever lands it, it lands once.

Catching up on a peer's cold-chain round (:func:`catch_up_telemetry`, run by the driver's second thread):
when a peer's signature arrives for a shipment round this node has not signed, the node evaluates the
shipment again. The evaluation first fetches the telemetry the peers' manifests list and this node lacks
(:meth:`oracle.network.inputs.PeerBackedBlobStore.gather_telemetry`); the node then signs only if its own
computation gives the very digest the peer signed. Otherwise nothing is signed and the reason stays
recorded (an incomplete decision naming the missing inputs, or a ``not_reproduced`` reject).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth_utils.address import to_checksum_address
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from oracle.attest import Attestation, outbox_key, store_report, submit_calldata
from oracle.chain.client import encode_signatures
from oracle.chain.outbox import TxIntent, enqueue
from oracle.errors import ValidationError
from oracle.network.auth import PeerVerifier
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.schedule import transmit_order
from oracle.reports import Report, report_digest
from oracle.signer.client import Signer, recover_signer
from oracle.storage.network_tables import NetworkRound, PeerSignature
from oracle.storage.tables import Reject, ReportRow, utcnow

if TYPE_CHECKING:
    from web3 import Web3

    from oracle.context import Context
    from oracle.network.peer import PeerClient

log = logging.getLogger(__name__)

OPEN = ("collecting", "ready", "queued")
#: A round still short of k agreeing signatures this long after it opened is set aside as ``stalled``
#: (no longer polled every pass, shown as such); an agreeing signature arriving later reopens it.
STALL_AFTER_S = 7 * 86_400
#: How often an open round asks the router whether it is already settled, seconds, when no
#: ``ReportAccepted`` event for its subject was seen since it last asked (the driver reads the router's
#: new events once per pass, and a round whose subject shows up there asks at once). A fallback: one
#: ``latest()`` call per open round every half second made a node with a hundred open rounds spend
#: most of its time asking the router (200 decisions through 4 nodes, tests/network/test_agreement_200.py).
CHAIN_CHECK_S = 5.0
#: Least time between two reads of the router's new events, seconds (a pass runs on every peer message).
EVENTS_EVERY_S = 0.25
#: Longest wait between two deliveries to a peer that does not answer, seconds.
MAX_BACKOFF_S = 5.0
#: How long a settled round keeps delivering its signature to peers that have not acknowledged it
#: (one that was down or cut off): every member ends up holding every member's word on the round.
DELIVER_AFTER_SETTLED_S = 24 * 3600
#: How often the catch-up thread looks for peers' cold-chain rounds this node has not signed, seconds.
CATCH_UP_INTERVAL_S = 1.0
#: How long before a peer's round this node could not reproduce (inputs unavailable, another digest) is
#: evaluated again, seconds (a peer may come back with the input, late readings may arrive).
CATCH_UP_RETRY_S = 15.0


@dataclass
class NodeRuntime:
    """What a network node needs to take part in rounds."""

    network: Network
    identity: NodeIdentity
    signer: Signer
    chain_id: int
    router: str
    verifier: PeerVerifier = field(init=False)
    client: PeerClient = field(init=False)
    wake: threading.Event = field(default_factory=threading.Event)
    #: How this node reaches a peer when it is not the network file's URL (a private address, a proxy).
    peer_urls: dict[str, str] = field(default_factory=dict)
    #: Counters for /metrics.
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from oracle.network.peer import PeerClient

        self.verifier = PeerVerifier(self.network)
        self.client = PeerClient(self)

    @property
    def me(self) -> Member:
        return self.network.member(self.identity.node_id)

    def url_of(self, member: Member) -> str:
        return self.peer_urls.get(member.id, member.url).rstrip("/")

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def report_json(report: Report) -> dict[str, Any]:
    from oracle.verify.replay import report_to_json

    return report_to_json(report)


# ---------------------------------------------------------------------------------------------- start


def begin_round(
    ctx: Context,
    runtime: NodeRuntime,
    report: Report,
    *,
    subject_name: str,
    detail: dict[str, Any] | None = None,
) -> Attestation:
    """Record this node's own report, have its own signer sign it, and open the round.

    Idempotent: a second call for the same report returns the existing round. A different report for an
    epoch this node already signed is refused (``epoch_conflict``) by the report table and the signer.
    """
    manifest = str((detail or {}).get("manifest_cid") or "")
    report_id, created = store_report(ctx.sessions, report, subject_name=subject_name, detail=detail)
    with ctx.sessions() as s:
        existing = s.scalar(
            select(NetworkRound).where(
                NetworkRound.subject == _hex(report.subject), NetworkRound.epoch == report.epoch
            )
        )
        if existing is not None:
            return Attestation(report_id, 0, "", created)
    signed = runtime.signer.sign(report, chain_id=runtime.chain_id, router=runtime.router)
    with ctx.sessions() as s:
        s.add(
            PeerSignature(
                subject=_hex(report.subject),
                epoch=report.epoch,
                node_id=runtime.identity.node_id,
                signer=signed.signer,
                digest=_hex(signed.digest),
                signature=_hex(signed.signature),
                report=report_json(report),
                manifest_cid=manifest,
            )
        )
        s.add(
            NetworkRound(
                subject=_hex(report.subject),
                epoch=report.epoch,
                report_id=report_id,
                digest=_hex(signed.digest),
                manifest_cid=manifest,
                status="collecting",
                delivered_to=[],
                combined=[],
            )
        )
        row_ = s.get(ReportRow, report_id)
        if row_ is not None:
            row_.status = "collecting"
            row_.detail = {**row_.detail, "node": runtime.identity.node_id}
        try:
            s.commit()
        except DbIntegrityError:
            s.rollback()  # a concurrent call opened it first: same report, same signature
    runtime.count("rounds_started")
    log.info(
        "round opened subject=%s epoch=%s digest=0x%s node=%s",
        subject_name or _hex(report.subject),
        report.epoch,
        signed.digest.hex()[:16],
        runtime.identity.node_id,
    )
    runtime.wake.set()
    return Attestation(report_id, 0, "", created)


# ---------------------------------------------------------------------------------------------- policy


def within_deviation(
    runtime: NodeRuntime, w3: Web3, report: Report, *, now: float | None = None
) -> str | None:
    """Why a revised drought report need not be signed (the router holds this period's report, the value
    moved less than the network's deviation and its heartbeat has not passed), or ``None`` to sign it.

    Every node reads the same router and applies the same policy (the network file's), so they decide
    alike. A first report for a period, a cold-chain verdict, or an unreadable router: always sign.
    """
    from oracle.decisions.drought import REVISIONS_PER_PERIOD
    from oracle.reports import VALUE_SCALE, ReportKind

    if report.kind != ReportKind.DROUGHT_SEVERITY:
        return None
    router = w3.eth.contract(address=to_checksum_address(runtime.router), abi=_router_abi())
    try:
        epoch, observed_at, value, _, _ = router.functions.latest(report.subject).call()
    except Exception:  # noqa: BLE001 - when in doubt, sign: the router refuses a stale epoch anyway
        return None
    if (
        int(epoch) // REVISIONS_PER_PERIOD != report.epoch // REVISIONS_PER_PERIOD
        or int(epoch) >= report.epoch
    ):
        return None
    moved = abs(report.value - int(value)) / VALUE_SCALE
    age = (time.time() if now is None else now) - int(observed_at)
    network = runtime.network
    if moved >= network.deviation or age >= network.heartbeat_s:
        return None
    return (
        f"moved {moved:.3f} < deviation {network.deviation}; heartbeat ({network.heartbeat_s} s) not passed"
    )


# ---------------------------------------------------------------------------------------------- receive


def store_peer_reject(
    ctx: Context, *, reason: str, message: str, sender: str, meta: dict[str, Any] | None = None
) -> None:
    try:
        with ctx.sessions() as s:
            s.add(
                Reject(
                    source="peer",
                    reason=reason[:60],
                    message=message[:2000],
                    subject=sender[:120],
                    meta=meta or {},
                )
            )
            s.commit()
    except Exception:
        log.exception("could not record a refused peer message")


def accept_peer_signature(
    ctx: Context, runtime: NodeRuntime, sender: Member, message: dict[str, Any]
) -> dict[str, Any]:
    """Store ``sender``'s signature on its report for a round; returns whether it agrees with ours.

    :raises ValidationError: the signature is not by the sender's signer (``wrong_signer``), the report
        is malformed or out of range (``bad_report``), or the sender already gave a different signature
        for this round (``equivocation``). Each refusal is recorded as a reject.
    """
    from oracle.chain.client import compact_signature
    from oracle.reports import max_epoch
    from oracle.verify.replay import report_from_json

    report = report_from_json(message["report"])
    signature = bytes.fromhex(str(message["signature"]).removeprefix("0x"))
    manifest = str(message.get("manifest_cid") or "")[:100]
    try:
        report.check_value_range()
        # Only the canonical form the router takes (65 bytes, v 27/28, low s): anything else could not be
        # combined, and one such signature would stop every node that tried to.
        compact_signature(signature)
        if report.epoch > max_epoch(int(report.kind), now=int(time.time())):
            raise ValidationError(f"epoch {report.epoch} is too far ahead", reason="epoch_too_far_ahead")
    except ValidationError as e:
        store_peer_reject(ctx, reason=e.reason or "bad_report", message=str(e), sender=sender.id)
        raise ValidationError(str(e), reason=e.reason or "bad_report") from None
    digest = report_digest(report, chain_id=runtime.chain_id, router=runtime.router)
    try:
        signer = recover_signer(report, signature, chain_id=runtime.chain_id, router=runtime.router)
    except Exception:  # noqa: BLE001 - a malformed signature is refused like a wrong one
        signer = ""
    if signer.lower() != sender.signer.lower():
        text = f"{sender.id}'s signature recovers to {signer or 'nothing'}, not its signer {sender.signer}"
        store_peer_reject(ctx, reason="wrong_signer", message=text, sender=sender.id)
        raise ValidationError(text, reason="wrong_signer")
    subject, epoch = _hex(report.subject), report.epoch
    with ctx.sessions() as s:
        have = s.scalar(
            select(PeerSignature).where(
                PeerSignature.subject == subject,
                PeerSignature.epoch == epoch,
                PeerSignature.node_id == sender.id,
            )
        )
        if have is not None and have.digest != _hex(digest):
            text = (
                f"{sender.id} already signed digest {have.digest} for {subject} epoch {epoch}; "
                f"refusing a second, different one ({_hex(digest)})"
            )
            store_peer_reject(
                ctx,
                reason="equivocation",
                message=text,
                sender=sender.id,
                meta={"subject": subject, "epoch": epoch},
            )
            runtime.count("equivocations")
            raise ValidationError(text, reason="equivocation")
        if have is None:
            s.add(
                PeerSignature(
                    subject=subject,
                    epoch=epoch,
                    node_id=sender.id,
                    signer=str(to_checksum_address(signer)),
                    digest=_hex(digest),
                    signature=_hex(signature),
                    report=report_json(report),
                    manifest_cid=manifest,
                )
            )
            try:
                s.commit()
            except DbIntegrityError:
                s.rollback()
        own = s.scalar(
            select(NetworkRound).where(NetworkRound.subject == subject, NetworkRound.epoch == epoch)
        )
        own_digest = None if own is None else own.digest
        if own is not None and own.status == "stalled" and own_digest == _hex(digest):
            own.status = "collecting"  # a late agreeing word: the round may reach k after all
            s.commit()
            log.info("round reopened subject=%s epoch=%s by %s's signature", subject, epoch, sender.id)
    agrees = None if own_digest is None else own_digest == _hex(digest)
    if agrees is False and have is None:
        runtime.count("disagreements")
        log.warning(
            "disagreement subject=%s epoch=%s peer=%s their_digest=%s ours=%s",
            subject,
            epoch,
            sender.id,
            _hex(digest)[:18],
            (own_digest or "")[:18],
        )
    runtime.wake.set()
    return {"stored": True, "agrees": agrees}


# ---------------------------------------------------------------------------------------------- views


def round_view(ctx: Context, subject: str, epoch: int) -> dict[str, Any]:
    """This node's round and every signature it holds for it, agreeing or not."""
    subject = subject.lower()
    with ctx.sessions() as s:
        own = s.scalar(
            select(NetworkRound).where(NetworkRound.subject == subject, NetworkRound.epoch == epoch)
        )
        sigs = s.scalars(
            select(PeerSignature)
            .where(PeerSignature.subject == subject, PeerSignature.epoch == epoch)
            .order_by(PeerSignature.node_id)
        ).all()
    return {
        "subject": subject,
        "epoch": epoch,
        "status": own.status if own else None,
        "digest": own.digest if own else None,
        "combined": list(own.combined) if own else [],
        "landed_tx": own.landed_tx if own else None,
        "signatures": [
            {
                "node": sig.node_id,
                "signer": sig.signer,
                "digest": sig.digest,
                "agrees": None if own is None else sig.digest == own.digest,
                "report": sig.report,
                "manifest_cid": sig.manifest_cid,
            }
            for sig in sigs
        ],
    }


#: Most signatures in one page of ``GET /v1/peer/signatures``.
MAX_PAGE = 500


def signature_page(ctx: Context, *, after: int, since_s: int, limit: int) -> dict[str, Any]:
    """The signatures this node holds with an id above ``after``, received in the last ``since_s``
    seconds, oldest first; ``next`` is the cursor for the following page (``None``: no more)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    since = dt.datetime.fromtimestamp(time.time() - max(0, int(since_s)), dt.UTC)
    with ctx.sessions() as s:
        rows = s.scalars(
            select(PeerSignature)
            .where(PeerSignature.id > int(after), PeerSignature.received_at >= since)
            .order_by(PeerSignature.id)
            .limit(limit)
        ).all()
    return {
        "signatures": [
            {
                "id": r.id,
                "node": r.node_id,
                "report": r.report,
                "signature": r.signature,
                "manifest_cid": r.manifest_cid,
            }
            for r in rows
        ],
        "next": rows[-1].id if len(rows) == limit else None,
    }


def pull_signatures(ctx: Context, runtime: NodeRuntime, *, since_s: int = STALL_AFTER_S) -> dict[str, int]:
    """Ask every peer for the signatures it holds from the last ``since_s`` seconds and take each one
    through :func:`accept_peer_signature` (signer recovered and checked against the member it names,
    equivocation refused): a node that lost its database, or was restored from an older backup, learns
    the rounds its peers already delivered to it once. This node's own signatures are not taken back
    from peers (its signer's word is its own to give). Returns counts: ``stored``, ``refused``,
    ``unreachable`` peers.
    """
    from oracle.errors import ValidationError as VError

    me = runtime.identity.node_id
    members = {m.id: m for m in runtime.network.members}
    counts = {"stored": 0, "refused": 0, "unreachable": 0}
    for peer in runtime.network.members:
        if peer.id == me:
            continue
        after = 0
        for _ in range(10_000):  # pages; a peer that never ends its list is cut off
            try:
                page = runtime.client.fetch_signatures(peer, after=after, since_s=since_s, limit=MAX_PAGE)
            except Exception as e:  # noqa: BLE001 - a peer that is down is asked again at the next start
                counts["unreachable"] += 1
                log.info("could not pull signatures from %s: %s", peer.id, type(e).__name__)
                break
            for entry in page["signatures"]:
                node = str(entry.get("node", "")) if isinstance(entry, dict) else ""
                if node == me:
                    continue
                member = members.get(node)
                if member is None:
                    store_peer_reject(
                        ctx,
                        reason="unknown_node",
                        message=f"{peer.id} relayed a signature of {node[:40]!r}, not a member",
                        sender=peer.id,
                    )
                    counts["refused"] += 1
                    continue
                try:
                    accept_peer_signature(ctx, runtime, member, entry)
                except (VError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
                    store_peer_reject(
                        ctx,
                        reason="relayed_refused",
                        message=f"{peer.id} relayed {node}'s signature, refused: {e}"[:2000],
                        sender=peer.id,
                    )
                    counts["refused"] += 1
                    continue
                counts["stored"] += 1
            nxt = page.get("next")
            if not isinstance(nxt, int) or nxt <= after:
                break
            after = nxt
    runtime.count("signatures_pulled", counts["stored"])
    log.info("pulled peers' signatures: %s", counts)
    return counts


def disagreement_count(ctx: Context) -> int:
    """Peer signatures over a digest other than this node's for the same round."""
    with ctx.sessions() as s:
        rows = s.execute(
            select(PeerSignature.digest, NetworkRound.digest).join(
                NetworkRound,
                (NetworkRound.subject == PeerSignature.subject) & (NetworkRound.epoch == PeerSignature.epoch),
            )
        ).all()
    return sum(1 for theirs, ours in rows if theirs != ours)


# ---------------------------------------------------------------------------------------------- catch up


def catch_up_telemetry(
    ctx: Context, runtime: NodeRuntime, *, now: float | None = None, tried: dict[Any, float] | None = None
) -> list[dict[str, Any]]:
    """Evaluate again each shipment for which a peer signed a round this node has not, and sign it only
    when this node's own computation gives the digest the peer signed (see the module docstring).

    ``tried`` remembers when each (subject, epoch, digest) may be tried again. Returns what was done, one
    entry per round looked at: ``signed``, ``incomplete`` (with the reason), ``differs`` or ``skipped``.
    """
    from oracle.errors import OracleError
    from oracle.reports import ReportKind
    from oracle.scheduler.evaluations import attest_outcome, run_shipment, shipment_name

    current = time.time() if now is None else now
    tried = {} if tried is None else tried
    if len(tried) > 10_000:
        tried.clear()  # a round signed since is filtered out below anyway; the others are tried once more
    me = runtime.identity.node_id
    since = dt.datetime.fromtimestamp(current - STALL_AFTER_S, dt.UTC)
    signed_here = select(NetworkRound.id).where(
        NetworkRound.subject == PeerSignature.subject, NetworkRound.epoch == PeerSignature.epoch
    )
    with ctx.sessions() as s:
        theirs = s.scalars(
            select(PeerSignature)
            .where(PeerSignature.node_id != me, PeerSignature.received_at >= since, ~signed_here.exists())
            .order_by(PeerSignature.id)
        ).all()
    wanted: dict[tuple[str, int, str], PeerSignature] = {}
    for sig in theirs:
        if int(sig.report.get("kind", -1)) != ReportKind.COLDCHAIN_VERDICT:
            continue
        key = (sig.subject, int(sig.epoch), sig.digest)
        if tried.get(key, 0.0) <= current:
            wanted.setdefault(key, sig)
    done: list[dict[str, Any]] = []
    for (subject, epoch, digest), sig in wanted.items():
        entry: dict[str, Any] = {"subject": subject, "epoch": epoch, "peer": sig.node_id}
        done.append(entry)
        tried[(subject, epoch, digest)] = current + CATCH_UP_RETRY_S
        name = shipment_name(ctx, subject)
        if name is None:
            entry.update(result="skipped", reason="no device of this node is bound to the shipment")
            continue
        try:
            outcome = run_shipment(ctx, subject=subject, post=False)
        except OracleError as e:  # no profile, no model, a database hiccup: this round, again later
            entry.update(result="incomplete", reason=f"{type(e).__name__}: {e}")
            log.warning("catching up on %s epoch %s: evaluation failed: %s", name, epoch, e)
            continue
        if outcome is None or outcome.report is None:
            entry.update(
                result="incomplete",
                reason=outcome.reason if outcome is not None else "not evaluated",
            )
            log.warning(
                "not signing %s's round subject=%s epoch=%s: this node's decision is %s (%s)",
                sig.node_id,
                name,
                epoch,
                outcome.status if outcome is not None else "missing",
                entry["reason"],
            )
            continue
        ours = _hex(report_digest(outcome.report, chain_id=runtime.chain_id, router=runtime.router))
        if ours != digest:
            text = (
                f"{name} epoch {epoch}: {sig.node_id} signed {digest}; this node computed "
                f"{ours} (epoch {outcome.report.epoch}) from the inputs it holds, so it does not sign"
            )
            entry.update(result="differs", reason=text)
            store_peer_reject(
                ctx,
                reason="not_reproduced",
                message=text,
                sender=sig.node_id,
                meta={"subject": subject, "epoch": epoch, "manifest_cid": sig.manifest_cid},
            )
            runtime.count("catch_up_not_reproduced")
            log.warning("not signing: %s", text)
            continue
        with ctx.sessions() as s:
            if s.scalar(
                select(NetworkRound.id).where(NetworkRound.subject == subject, NetworkRound.epoch == epoch)
            ):
                entry.update(result="signed")  # the periodic evaluation got there first, same report
                tried[(subject, epoch, digest)] = float("inf")
                continue
        try:
            attest_outcome(ctx, outcome, subject_name=name)
        except OracleError as e:  # e.g. this node signed another report at this epoch (epoch_conflict)
            entry.update(result="differs", reason=f"not signed: {e}")
            log.warning("catching up on %s epoch %s: not signed: %s", name, epoch, e)
            continue
        tried[(subject, epoch, digest)] = float("inf")
        entry.update(result="signed")
        runtime.count("catch_up_signed")
        log.info(
            "caught up with %s's round subject=%s epoch=%s: same digest, signed", sig.node_id, name, epoch
        )
    return done


# ---------------------------------------------------------------------------------------------- drive


@dataclass
class _PeerBackoff:
    failures: int = 0
    next_at: float = 0.0


class RoundDriver:
    """Moves every open round along (see the module docstring). One per node; runs in a thread."""

    def __init__(self, ctx: Context, runtime: NodeRuntime, w3: Web3, *, interval: float = 0.2) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.w3 = w3
        self.interval = interval
        self._router = w3.eth.contract(address=to_checksum_address(runtime.router), abi=_router_abi())
        self._backoff: dict[str, _PeerBackoff] = {}
        self._checked: dict[int, float] = {}
        #: The next block whose ReportAccepted events the driver reads, and the subjects they named in the
        #: last read (their rounds ask the router on this pass).
        self._events_from: int | None = None
        self._events_read_at = 0.0
        self._accepted: set[str] = set()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._catch_up: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="network-rounds", daemon=True)
        self._thread.start()
        # Catching up may wait on slow peers for inputs: a thread of its own, so rounds keep moving.
        self._catch_up = threading.Thread(target=self._run_catch_up, name="network-catch-up", daemon=True)
        self._catch_up.start()

    def stop(self) -> None:
        self.stopping.set()
        self.runtime.wake.set()
        for thread in (self._thread, self._catch_up):
            if thread is not None:
                thread.join(timeout=10)
        self.runtime.client.close()

    def _run_catch_up(self) -> None:
        tried: dict[Any, float] = {}
        try:
            # Whatever the peers delivered before this node lost (or rolled back) its database.
            pull_signatures(self.ctx, self.runtime)
        except Exception:
            log.exception("pulling peers' signatures failed; rounds still arrive as peers push them")
        while not self.stopping.wait(CATCH_UP_INTERVAL_S):
            try:
                catch_up_telemetry(self.ctx, self.runtime, tried=tried)
            except Exception:
                log.exception("catching up on peers' rounds failed; retrying")

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("network round driver step failed; retrying")
            self.runtime.wake.wait(self.interval)
            self.runtime.wake.clear()

    # One pass over the open rounds.
    def tick(self, *, now: float | None = None) -> None:
        """One pass over the open rounds, and over the settled ones some peer has not acknowledged."""
        current = time.time() if now is None else now
        peers = {m.id for m in self.runtime.network.members} - {self.runtime.identity.node_id}
        since = dt.datetime.fromtimestamp(current - DELIVER_AFTER_SETTLED_S, dt.UTC)
        with self.ctx.sessions() as s:
            ids = s.scalars(
                select(NetworkRound.id).where(NetworkRound.status.in_(OPEN)).order_by(NetworkRound.id)
            ).all()
        self._accepted = self._accepted_since_last_pass(current) if ids else set()
        with self.ctx.sessions() as s:
            settled = s.execute(
                select(NetworkRound.id, NetworkRound.delivered_to).where(
                    NetworkRound.status.not_in(OPEN), NetworkRound.created_at >= since
                )
            ).all()
        for round_id in ids:
            if self.stopping.is_set():
                return
            try:
                self._advance(round_id, current)
            except Exception:  # one round's trouble must not stop the others
                log.exception("network round %s could not advance; retrying on the next pass", round_id)
        for round_id, delivered in settled:
            if self.stopping.is_set():
                return
            if not peers <= set(delivered or []):
                try:
                    self._deliver(round_id, current)
                except Exception:
                    log.exception("network round %s could not deliver; retrying on the next pass", round_id)

    def _advance(self, round_id: int, now: float) -> None:
        self._deliver(round_id, now)
        if self._settle_from_chain(round_id, now):
            return
        with self.ctx.sessions() as s:
            rnd = s.get(NetworkRound, round_id)
            if rnd is None or rnd.status not in OPEN:
                return
            agreeing = self._agreeing(s, rnd)
            k = self.runtime.network.threshold
            if (
                rnd.status == "collecting"
                and len(agreeing) < k
                and now - _aware(rnd.created_at).timestamp() > STALL_AFTER_S
            ):
                rnd.status = "stalled"
                s.commit()
                self.runtime.count("rounds_stalled")
                log.warning(
                    "round stalled subject=%s epoch=%s: %d of the %d agreeing signatures after %.0f days",
                    rnd.subject,
                    rnd.epoch,
                    len(agreeing),
                    k,
                    STALL_AFTER_S / 86_400,
                )
                return
            if rnd.status == "collecting" and len(agreeing) >= k:
                rnd.status = "ready"
                rnd.ready_at = utcnow()
                s.commit()
                log.info("round ready subject=%s epoch=%s signers=%d", rnd.subject, rnd.epoch, len(agreeing))
            if rnd.status != "ready" or rnd.ready_at is None:
                return
            order = transmit_order(bytes.fromhex(rnd.subject[2:]), rnd.epoch, self.runtime.network.ids)
            position = order.index(self.runtime.identity.node_id)
            waited = now - _aware(rnd.ready_at).timestamp()
            if waited < position * self.runtime.network.transmit_timeout_s:
                return
            if self._settle_from_chain(round_id, now, fresh=True):
                return  # the router holds it already: never send what it accepted
            self._queue(s, rnd, agreeing, position)

    def _agreeing(self, s: Any, rnd: NetworkRound) -> list[PeerSignature]:
        members = {m.id: m for m in self.runtime.network.members}
        sigs = s.scalars(
            select(PeerSignature).where(
                PeerSignature.subject == rnd.subject,
                PeerSignature.epoch == rnd.epoch,
                PeerSignature.digest == rnd.digest,
            )
        ).all()
        # Only current members, each once, with the signer the network file names for them.
        return [
            sig
            for sig in sigs
            if sig.node_id in members and members[sig.node_id].signer.lower() == sig.signer.lower()
        ]

    def _queue(self, s: Any, rnd: NetworkRound, agreeing: Sequence[PeerSignature], position: int) -> None:
        from oracle.attest import row_to_report

        me = self.runtime.identity.node_id
        k = self.runtime.network.threshold
        # Our own first, then the earliest received: exactly k keeps the router's verification cheapest.
        chosen = sorted(agreeing, key=lambda sig: (sig.node_id != me, sig.received_at, sig.node_id))[:k]
        row = s.get(ReportRow, rnd.report_id)
        report = row_to_report(row)
        signatures = encode_signatures((sig.signer, bytes.fromhex(sig.signature[2:])) for sig in chosen)
        enqueue(
            s,
            TxIntent(
                key=outbox_key(report),
                purpose="report",
                to=self.runtime.router,
                calldata=submit_calldata(report, signatures),
                gas_limit=0,
                report_id=rnd.report_id,
            ),
        )
        rnd.status = "queued"
        rnd.queued_at = utcnow()
        rnd.combined = sorted(sig.node_id for sig in chosen)
        row.status = "queued"
        row.detail = {**row.detail, "signers": sorted(sig.signer for sig in chosen), "combined": rnd.combined}
        s.commit()
        self.runtime.count("transmissions_queued")
        if position:
            self.runtime.count("takeovers")
        self._pump_now()
        log.info(
            "round queued for transmission subject=%s epoch=%s by=%s position=%d signers=%s",
            rnd.subject,
            rnd.epoch,
            me,
            position,
            ",".join(rnd.combined),
        )

    def _pump_now(self) -> None:
        """Send what was just queued now rather than at the outbox job's next tick (the poster's
        optimistic lock makes a concurrent pump harmless: one row, one transaction)."""
        from oracle.chain.outbox import OutboxPoster

        poster = self.ctx.extras.get("poster")
        if isinstance(poster, OutboxPoster):
            try:
                poster.pump()
            except Exception:
                log.warning("immediate outbox pump failed; the periodic pump will retry", exc_info=True)

    def _accepted_since_last_pass(self, now: float) -> set[str]:
        """Subjects (hex) of the reports the router accepted since the last read: one log query, at most
        every :data:`EVENTS_EVERY_S`."""
        if now - self._events_read_at < EVENTS_EVERY_S:
            return set()
        self._events_read_at = now
        try:
            head = int(self.w3.eth.block_number)
            if self._events_from is None:
                # Rounds already settled before this driver started are found by their first look.
                self._events_from = head + 1
                return set()
            if head < self._events_from:
                return set()
            logs = self._router.events.ReportAccepted().get_logs(from_block=self._events_from, to_block=head)
        except Exception as e:  # noqa: BLE001 - rounds then ask the router one by one, as a fallback
            log.debug("router events not readable: %s", e)
            return set()
        self._events_from = head + 1
        return {_hex(bytes(entry["args"]["subject"])) for entry in logs}

    def _settle_from_chain(self, round_id: int, now: float, *, fresh: bool = False) -> bool:
        """Close the round if the router already holds its epoch (or a later one). The router is asked on
        the round's first look, when its subject had a ReportAccepted event since the last pass, when
        ``fresh`` (right before transmitting), and otherwise every :data:`CHAIN_CHECK_S`."""
        with self.ctx.sessions() as s:
            rnd = s.get(NetworkRound, round_id)
            if rnd is None or rnd.status not in OPEN:
                return True
            subject, epoch, digest = rnd.subject, rnd.epoch, rnd.digest
        last = self._checked.get(round_id)
        if not fresh and subject not in self._accepted and last is not None and now - last < CHAIN_CHECK_S:
            return False
        self._checked[round_id] = now
        try:
            latest_epoch, _, _, _, report_hash = self._router.functions.latest(
                bytes.fromhex(subject[2:])
            ).call()
        except Exception as e:  # noqa: BLE001 - an unreachable chain only delays the round
            log.debug("router not readable: %s", e)
            return False
        if int(latest_epoch) < epoch:
            return False
        landed = int(latest_epoch) == epoch and _hex(bytes(report_hash)) == digest
        tx_hash, sender = self._landing(subject, epoch) if landed else (None, None)
        with self.ctx.sessions() as s:
            rnd = s.get(NetworkRound, round_id)
            if rnd is None or rnd.status not in OPEN:
                return True
            rnd.status = "landed" if landed else "superseded"
            rnd.landed_at = utcnow()
            rnd.landed_tx = tx_hash
            row = s.get(ReportRow, rnd.report_id)
            if row is not None:
                if row.status in ("collecting", "queued", "pending"):
                    row.status = "confirmed" if landed else "superseded"
                if sender is not None:
                    member = self.runtime.network.by_transmitter(sender)
                    row.detail = {
                        **row.detail,
                        "transmitted_by": member.id if member else sender,
                        "tx_hash": tx_hash,
                    }
            s.commit()
        self._checked.pop(round_id, None)
        self.runtime.count("rounds_landed" if landed else "rounds_superseded")
        log.info("round %s subject=%s epoch=%s", "landed" if landed else "superseded", subject, epoch)
        return True

    def _landing(self, subject: str, epoch: int) -> tuple[str | None, str | None]:
        """The transaction that carried the round's report, and who sent it (for the record only)."""
        try:
            head = int(self.w3.eth.block_number)
            logs = self._router.events.ReportAccepted().get_logs(
                from_block=max(0, head - 10_000), argument_filters={"subject": bytes.fromhex(subject[2:])}
            )
            for entry in logs:
                if int(entry["args"]["epoch"]) == epoch:
                    tx = self.w3.eth.get_transaction(entry["transactionHash"])
                    return "0x" + bytes(entry["transactionHash"]).hex(), str(tx["from"])
        except Exception as e:  # noqa: BLE001 - who transmitted is shown, never needed
            log.debug("could not find the landing transaction: %s", e)
        return None, None

    def _deliver(self, round_id: int, now: float) -> None:
        with self.ctx.sessions() as s:
            rnd = s.get(NetworkRound, round_id)
            if rnd is None:
                return
            own = s.scalar(
                select(PeerSignature).where(
                    PeerSignature.subject == rnd.subject,
                    PeerSignature.epoch == rnd.epoch,
                    PeerSignature.node_id == self.runtime.identity.node_id,
                )
            )
            delivered = set(rnd.delivered_to)
            if own is None:
                return
            message = {
                "subject": rnd.subject,
                "epoch": rnd.epoch,
                "report": own.report,
                "signature": own.signature,
                "manifest_cid": own.manifest_cid,
            }
        acked: list[str] = []
        for member in self.runtime.network.members:
            if member.id == self.runtime.identity.node_id or member.id in delivered:
                continue
            backoff = self._backoff.setdefault(member.id, _PeerBackoff())
            if now < backoff.next_at:
                continue
            try:
                r = self.runtime.client.push_signature(member, message)
            except Exception as e:  # noqa: BLE001 - a peer that is down gets it on a later pass
                backoff.failures += 1
                backoff.next_at = now + min(MAX_BACKOFF_S, 0.25 * 2**backoff.failures)
                log.debug("peer %s unreachable: %s", member.id, type(e).__name__)
                continue
            self.runtime.count("peer_messages_sent")
            if r.status_code == 200:
                backoff.failures, backoff.next_at = 0, 0.0
                acked.append(member.id)
            elif r.status_code in (409, 422):
                # The peer refused it for good (it recorded why); do not repeat it forever.
                acked.append(member.id)
                log.warning("peer %s refused our signature: %s", member.id, r.text[:300])
            else:
                backoff.failures += 1
                backoff.next_at = now + min(MAX_BACKOFF_S, 0.25 * 2**backoff.failures)
        if acked:
            with self.ctx.sessions() as s:
                rnd = s.get(NetworkRound, round_id)
                if rnd is not None:
                    rnd.delivered_to = sorted(set(rnd.delivered_to) | set(acked))
                    s.commit()


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _router_abi() -> list[Any]:
    from oracle.chain.artifacts import load_artifact

    return list(load_artifact("OracleRouter").abi)
