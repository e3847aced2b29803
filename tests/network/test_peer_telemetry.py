"""A node that missed some of a shipment's readings gets them from its peers by CID, re-verifies each
device signature, and signs only if it then computes the peers' very report.

Real HTTP servers and real stores, in one process (as in test_peer_inputs): node1, node2 and node3 are
honest nodes, each with its own database, content store and peer endpoint (signed requests checked);
``liar`` is a member's key in hostile hands, whose endpoint serves what it likes. The logger signs its
envelopes with its own ECDSA key, registered on every node. Every node ingests the device's messages
through its own pipeline; node1 misses two of them (its worker was down past the broker's session
expiry), which leaves a two-hour hole in its record: the profile's data-gap rule makes that a BREACH,
where the peers computed DELIVERED.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Response
from sqlalchemy import func, select
from web3 import Web3

from ingest.telemetry.envelope import sign_envelope_with_key
from ingest.telemetry.pipeline import IncomingMessage
from oracle.api.telemetry import telemetry_ingest
from oracle.chain.anvil import free_port
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.decisions.coldchain import mark_delivered, profile_bytes32
from oracle.decisions.trace import canonical_json
from oracle.device_keys import public_pem
from oracle.devices import register_device_key
from oracle.network.inputs import PeerBackedBlobStore
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.peer import peer_router
from oracle.network.rounds import (
    NodeRuntime,
    RoundDriver,
    catch_up_telemetry,
    pull_signatures,
    report_json,
)
from oracle.reports import Report, ReportKind, Verdict, subject_id, typed_data
from oracle.scheduler.evaluations import run_shipment
from oracle.signer.client import LocalSigner
from oracle.storage.blobs import FilesystemBlobStore, cid_for
from oracle.storage.network_tables import NetworkRound, PeerSignature
from oracle.storage.tables import Reject, Shipment, TelemetryReading
from tests.fixtures.server import start_server

ROUTER = "0x" + "11" * 20
SHIPMENT = "SHP-PEER-1"
DEVICE = "logger-peer-1"
STEP_S = 600
#: Six signed messages of six readings each (10-minute steps): six hours in band.
MESSAGES = 6
PER_MESSAGE = 6
#: The messages node1 never received.
MISSED = (2, 3)


@dataclass
class Node:
    ctx: Context
    runtime: NodeRuntime
    local: FilesystemBlobStore
    signer_key: LocalAccount


@dataclass
class World:
    nodes: dict[str, Node]
    network: Network
    liar_key: LocalAccount
    liar_identity: NodeIdentity
    liar_blobs: dict[str, bytes]
    liar_signatures: list[dict[str, Any]]
    payloads: list[bytes]
    start_s: int
    delivered_at: dt.datetime


@pytest.fixture(name="w")
def world(tmp_path: Path) -> Iterator[World]:
    ids = ["node1", "liar", "node2", "node3"]
    ports = {i: free_port() for i in ids}
    identities = {i: NodeIdentity(i, Account.create()) for i in ids}
    signer_keys = {i: Account.create() for i in ids}
    members = tuple(
        Member(i, signer_keys[i].address, identities[i].address, f"http://127.0.0.1:{ports[i]}") for i in ids
    )
    network = Network(name="t", threshold=3, members=members)
    device_key = ec.generate_private_key(ec.SECP256R1())
    start_s = int(time.time()) - 2 * 86_400
    payloads = [
        json.dumps(
            sign_envelope_with_key(
                [
                    {
                        "seq": m * PER_MESSAGE + i,
                        "ts": (start_s + (m * PER_MESSAGE + i) * STEP_S) * 1000,
                        "temp_c": round(5.0 + 0.1 * ((m * PER_MESSAGE + i) % 4), 2),
                        "battery_pct": 90.0,
                    }
                    for i in range(PER_MESSAGE)
                ],
                device_key,
            )
        ).encode()
        for m in range(MESSAGES)
    ]
    delivered_at = dt.datetime.fromtimestamp(start_s + MESSAGES * PER_MESSAGE * STEP_S, dt.UTC)
    nodes: dict[str, Node] = {}
    servers = []
    liar_blobs: dict[str, bytes] = {}
    liar_signatures: list[dict[str, Any]] = []
    for i in ("node1", "node2", "node3"):
        data = tmp_path / i
        ctx = open_context(Settings(env="dev", data_dir=data, _env_file=None))  # type: ignore[call-arg]
        runtime = NodeRuntime(
            network=network,
            identity=identities[i],
            signer=LocalSigner(bytes(signer_keys[i].key)),
            chain_id=31337,
            router=ROUTER,
        )
        local = FilesystemBlobStore(data / "node-blobs")
        ctx.blobs = PeerBackedBlobStore(local, ctx, runtime)
        ctx.extras["network_node"] = runtime
        ctx.chain_rpc_url = "http://127.0.0.1:9"  # nothing listens there: a cold-chain report needs no chain
        with ctx.sessions() as s:
            s.add(
                Shipment(
                    subject="0x" + subject_id("shipment", SHIPMENT).hex(),
                    escrow="0x" + "22" * 20,
                    buyer="0x" + "33" * 20,
                    seller="0x" + "44" * 20,
                    amount=str(10**9),
                    profile="0x" + profile_bytes32("refrigerated").hex(),
                    deadline=start_s + 30 * 86_400,
                )
            )
            s.commit()
        register_device_key(
            ctx.sessions,
            device_id=DEVICE,
            public_key_pem=public_pem(device_key),
            shipment_id=SHIPMENT,
            valid_from=dt.datetime.fromtimestamp(start_s - 60, dt.UTC),
        )
        nodes[i] = Node(ctx, runtime, local, signer_keys[i])
        app = FastAPI()
        app.include_router(peer_router(ctx, runtime))
        servers.append(start_server(app, ports[i]))
    servers.append(start_server(_liar_app(liar_blobs, liar_signatures), ports["liar"]))
    yield World(
        nodes,
        network,
        signer_keys["liar"],
        identities["liar"],
        liar_blobs,
        liar_signatures,
        payloads,
        start_s,
        delivered_at,
    )
    for srv in servers:
        srv.should_exit = True
    for node in nodes.values():
        node.runtime.client.close()
        node.ctx.close()


def _liar_app(blobs: dict[str, bytes], signatures: list[dict[str, Any]]) -> FastAPI:
    """Serves whatever the test put in ``blobs`` under a CID (right or wrong bytes), 404 otherwise, and
    ``signatures`` as the signatures it claims to hold."""
    app = FastAPI()

    @app.get("/v1/peer/signatures")
    def listed() -> dict[str, Any]:
        return {"signatures": signatures, "next": None}

    @app.get("/v1/peer/blobs/{cid}")
    def blob(cid: str) -> Response:
        if cid not in blobs:
            return Response(status_code=404)
        return Response(blobs[cid], media_type="application/octet-stream")

    return app


def _ingest(node: Node, payloads: list[bytes]) -> None:
    pipeline = telemetry_ingest(node.ctx)
    for payload in payloads:
        outcome = pipeline.process([IncomingMessage(DEVICE, payload, source="mqtt")])
        assert outcome.accepted == PER_MESSAGE


def _deliver_all(w: World) -> None:
    for node in w.nodes.values():
        mark_delivered(
            node.ctx.sessions, node.ctx.blobs, SHIPMENT, delivered_at=w.delivered_at, by="consignee"
        )


def _subject() -> str:
    return "0x" + subject_id("shipment", SHIPMENT).hex()


def _sign_own(node: Node) -> tuple[Report, str]:
    """The node evaluates the shipment and opens its round (its own signer signs its own report)."""
    outcome = run_shipment(node.ctx, subject=_subject(), post=True)
    assert outcome is not None
    assert outcome.report is not None, outcome.reason
    with node.ctx.sessions() as s:
        rnd = s.scalars(select(NetworkRound)).one()
    return outcome.report, rnd.digest


def _push_own_signature(sender: Node, to: Node) -> None:
    """What the sender's round driver does: its signed word on the round, over the authenticated channel."""
    with sender.ctx.sessions() as s:
        own = s.scalars(
            select(PeerSignature).where(PeerSignature.node_id == sender.runtime.identity.node_id)
        ).one()
        message = {
            "subject": own.subject,
            "epoch": own.epoch,
            "report": own.report,
            "signature": own.signature,
            "manifest_cid": own.manifest_cid,
        }
    r = sender.runtime.client.push_signature(to.runtime.me, message)
    assert r.status_code == 200, r.text


def _readings(node: Node) -> list[tuple[str, int, float]]:
    with node.ctx.sessions() as s:
        rows = s.execute(
            select(TelemetryReading.device_id, TelemetryReading.seq, TelemetryReading.temp_c).order_by(
                TelemetryReading.seq
            )
        ).all()
    return [(d, int(q), float(t)) for d, q, t in rows]


def _rejects(node: Node, reason: str) -> list[Reject]:
    with node.ctx.sessions() as s:
        return list(s.scalars(select(Reject).where(Reject.source == "peer", Reject.reason == reason)).all())


def _missed(w: World) -> list[bytes]:
    return [p for m, p in enumerate(w.payloads) if m in MISSED]


def _received_by_node1(w: World) -> list[bytes]:
    return [p for m, p in enumerate(w.payloads) if m not in MISSED]


def test_a_node_that_missed_readings_fetches_them_from_a_peer_and_signs_the_same_report(w: World) -> None:
    n1, n2, n3 = w.nodes["node1"], w.nodes["node2"], w.nodes["node3"]
    _ingest(n1, _received_by_node1(w))
    _ingest(n2, w.payloads)
    _ingest(n3, w.payloads)
    _deliver_all(w)
    report, digest = _sign_own(n2)
    assert report.value == int(Verdict.DELIVERED)
    _push_own_signature(n2, n1)

    done = catch_up_telemetry(n1.ctx, n1.runtime)

    assert [d["result"] for d in done] == ["signed"], done
    with n1.ctx.sessions() as s:
        rnd = s.scalars(select(NetworkRound)).one()
    assert rnd.digest == digest  # the same report as node2: no disagreement
    assert rnd.epoch == report.epoch
    # node1 now holds every reading once, stored through its own ingest (device signature verified).
    assert _readings(n1) == _readings(n2)
    with n1.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TelemetryReading)) == MESSAGES * PER_MESSAGE
        sources = s.execute(
            select(TelemetryReading.source, func.count()).group_by(TelemetryReading.source)
        ).all()
    assert dict(sources) == {"mqtt": 4 * PER_MESSAGE, "peer": len(MISSED) * PER_MESSAGE}
    assert n1.runtime.counters["inputs_fetched"] == len(MISSED)
    assert n1.runtime.counters["readings_fetched"] == len(MISSED) * PER_MESSAGE
    # A second pass (and a second evaluation) fetches nothing and stores nothing twice.
    assert catch_up_telemetry(n1.ctx, n1.runtime) == []
    again = run_shipment(n1.ctx, subject=_subject(), post=False)
    assert again is not None
    assert again.report == report
    assert n1.runtime.counters["inputs_fetched"] == len(MISSED)
    assert len(_readings(n1)) == MESSAGES * PER_MESSAGE
    assert not _rejects(n1, "bad_reading")
    assert not _rejects(n1, "bad_blob")


def _tampered(payload: bytes) -> bytes:
    """The device's message with one temperature raised to 30 °C, signature unchanged."""
    envelope = json.loads(payload)
    envelope["body"][1]["temp_c"] = 30.0
    return json.dumps(envelope).encode()


def _message_input(payload: bytes) -> bytes:
    """A telemetry message as a decision input (oracle.decisions.coldchain.message_inputs)."""
    return cbor2.dumps([{"device": DEVICE, "payload": payload}], canonical=True)


def test_a_peer_serving_tampered_readings_is_refused_and_nothing_tampered_is_stored(w: World) -> None:
    n1, n2 = w.nodes["node1"], w.nodes["node2"]
    _ingest(n1, _received_by_node1(w))
    _ingest(n2, w.payloads)
    _deliver_all(w)
    honest_report, _ = _sign_own(n2)  # node2 holds (and serves) the genuine messages
    first, second = _missed(w)
    forged = _message_input(_tampered(first))  # its CID matches its bytes; its signature does not
    genuine = _message_input(second)
    nowhere = _message_input(b"a message no node holds")  # listed by the liar alone: never waited for
    manifest = canonical_json(
        {
            "kind": "coldchain",
            "subject": SHIPMENT,
            "steps": [{"name": "readings", "inputs": [cid_for(forged), cid_for(genuine), cid_for(nowhere)]}],
        }
    )
    w.liar_blobs[cid_for(manifest)] = manifest
    w.liar_blobs[cid_for(forged)] = forged
    w.liar_blobs[cid_for(genuine)] = b"not the message you asked for"  # bytes that do not match the CID
    # The liar signs a BREACH (the hot reading) with its member key and pushes it over the peer channel.
    lie = Report(
        subject=honest_report.subject,
        kind=ReportKind.COLDCHAIN_VERDICT,
        value=int(Verdict.BREACH),
        epoch=honest_report.epoch,
        observed_at=honest_report.observed_at,
        inputs_root=b"\x05" * 32,
        model_id=honest_report.model_id,
    )
    signature = w.liar_key.sign_typed_data(full_message=typed_data(lie, chain_id=31337, router=ROUTER))
    liar = NodeRuntime(
        network=w.network,
        identity=w.liar_identity,
        signer=LocalSigner(bytes(w.liar_key.key)),
        chain_id=31337,
        router=ROUTER,
    )
    try:
        message: dict[str, Any] = {
            "report": report_json(lie),
            "signature": "0x" + bytes(signature.signature).hex(),
            "manifest_cid": cid_for(manifest),
        }
        assert liar.client.push_signature(n1.runtime.me, message).status_code == 200
    finally:
        liar.client.close()

    done = catch_up_telemetry(n1.ctx, n1.runtime)

    # The forged message: fetched (its bytes match its CID), refused by the device-signature check.
    bad = _rejects(n1, "bad_reading")
    assert [r.subject for r in bad] == ["liar"]
    assert cid_for(forged) in bad[0].message
    assert "bad_signature" in bad[0].message
    assert not n1.local.has(cid_for(forged))
    assert all(t < 10.0 for _, _, t in _readings(n1))  # no 30 °C reading stored
    # The wrong bytes for the genuine message: refused, and the genuine one came from node2.
    assert [r.subject for r in _rejects(n1, "bad_blob")] == ["liar"]
    assert n1.local.has(cid_for(genuine))
    assert n1.runtime.counters["inputs_refused"] == 2
    # node1 never signs the liar's report; the CID only the liar lists does not stall node1's evaluation
    # (it would be "incomplete" if one member's word were enough to wait for an input).
    assert [d["result"] for d in done] == ["differs"]
    with n1.ctx.sessions() as s:
        assert s.scalars(select(NetworkRound)).all() == []
    assert [r.subject for r in _rejects(n1, "not_reproduced")] == ["liar"]


def test_with_no_peer_holding_the_readings_the_node_does_not_sign(w: World) -> None:
    n1, n2, n3 = w.nodes["node1"], w.nodes["node2"], w.nodes["node3"]
    _ingest(n1, _received_by_node1(w))
    _ingest(n2, w.payloads)
    _ingest(n3, w.payloads)
    _deliver_all(w)
    # Two members (f + 1 of 4) signed reports that read the messages node1 missed...
    for peer in (n2, n3):
        _sign_own(peer)
        _push_own_signature(peer, n1)
    lost = [cid_for(_message_input(p)) for p in _missed(w)]
    for peer in (n2, n3):  # ...and both have lost them since (lost disks); the liar never had them
        for cid in lost:
            peer.local.path(cid).unlink()

    # The node's own evaluation, as the scheduler runs it (post=True signs a complete report).
    outcome = run_shipment(n1.ctx, subject=_subject(), post=True)

    assert outcome is not None
    assert outcome.status == "incomplete"
    assert outcome.report is None
    for cid in lost:
        assert f"telemetry input {cid} listed by the reports of node2, node3 is missing" in outcome.reason
    assert "node2: does not have it" in outcome.reason
    assert "node3: does not have it" in outcome.reason
    with n1.ctx.sessions() as s:
        assert s.scalars(select(NetworkRound)).all() == []  # nothing signed
    assert len(_readings(n1)) == (MESSAGES - len(MISSED)) * PER_MESSAGE
    # Nor does the catch-up sign node2's (and node3's) round.
    done = catch_up_telemetry(n1.ctx, n1.runtime)
    assert [d["result"] for d in done] == ["incomplete"]
    with n1.ctx.sessions() as s:
        assert s.scalars(select(NetworkRound)).all() == []


def test_the_round_driver_catches_up_on_its_own_when_a_peer_signs(w: World, w3: Web3) -> None:
    """No test hand on node1: its running driver's catch-up thread fetches, re-verifies and signs."""
    n1, n2 = w.nodes["node1"], w.nodes["node2"]
    _ingest(n1, _received_by_node1(w))
    _ingest(n2, w.payloads)
    _deliver_all(w)
    driver = RoundDriver(n1.ctx, n1.runtime, w3, interval=0.1)  # the router address holds no contract
    driver.start()
    try:
        _, digest = _sign_own(n2)
        _push_own_signature(n2, n1)
        deadline = time.monotonic() + 30
        while True:
            with n1.ctx.sessions() as s:
                rnd = s.scalars(select(NetworkRound)).one_or_none()
            if rnd is not None:
                break
            assert time.monotonic() < deadline, "node1 did not catch up within 30 s"
            time.sleep(0.2)
    finally:
        driver.stop()
    assert rnd.digest == digest
    assert len(_readings(n1)) == MESSAGES * PER_MESSAGE
    assert n1.runtime.counters["catch_up_signed"] == 1


def test_a_node_restored_from_an_old_backup_pulls_the_rounds_its_peers_delivered_and_catches_up(
    w: World,
) -> None:
    """node1's database comes back from a backup taken before the round: it lacks the last readings and
    the peers' signatures, which the peers had delivered (and node1 acknowledged) before, so nobody
    pushes them again. node1 pulls them; a forged one relayed by the liar is refused."""
    n1, n2, n3 = w.nodes["node1"], w.nodes["node2"], w.nodes["node3"]
    _ingest(n1, _received_by_node1(w))
    for peer in (n2, n3):
        _ingest(peer, w.payloads)
    _deliver_all(w)
    report, digest = _sign_own(n2)
    assert _sign_own(n3)[1] == digest
    # The liar relays a "node3" signature over another value, signed with the liar's own key.
    other = Report(
        subject=report.subject,
        kind=report.kind,
        value=int(Verdict.BREACH),
        epoch=report.epoch,
        observed_at=report.observed_at,
        inputs_root=report.inputs_root,
        model_id=report.model_id,
    )
    forged = w.liar_key.sign_typed_data(full_message=typed_data(other, chain_id=31337, router=ROUTER))
    w.liar_signatures.append(
        {
            "id": 1,
            "node": "node3",
            "report": report_json(other),
            "signature": "0x" + bytes(forged.signature).hex(),
            "manifest_cid": "",
        }
    )

    counts = pull_signatures(n1.ctx, n1.runtime)

    assert counts == {"stored": 2, "refused": 1, "unreachable": 0}
    with n1.ctx.sessions() as s:
        held = s.execute(
            select(PeerSignature.node_id, PeerSignature.digest).order_by(PeerSignature.node_id)
        ).all()
    assert [tuple(r) for r in held] == [("node2", digest), ("node3", digest)]
    assert [r.subject for r in _rejects(n1, "relayed_refused")] == ["liar"]
    assert "signature recovers to" in _rejects(n1, "relayed_refused")[0].message  # not node3's signer
    done = catch_up_telemetry(n1.ctx, n1.runtime)
    assert [d["result"] for d in done] == ["signed"]
    with n1.ctx.sessions() as s:
        assert s.scalars(select(NetworkRound.digest)).one() == digest
    assert len(_readings(n1)) == MESSAGES * PER_MESSAGE
    # Pulling again stores nothing twice.
    assert pull_signatures(n1.ctx, n1.runtime)["stored"] == 2
    with n1.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PeerSignature)) == 3  # node2, node3 and its own


def test_a_round_this_node_cannot_evaluate_is_left_with_a_reason_not_a_crash(w: World) -> None:
    """node1 has the device but not the shipment's escrow (its chain listener has not seen it yet)."""
    n1, n2 = w.nodes["node1"], w.nodes["node2"]
    _ingest(n1, w.payloads)
    _ingest(n2, w.payloads)
    _deliver_all(w)
    _sign_own(n2)
    _push_own_signature(n2, n1)
    with n1.ctx.sessions() as s:
        s.delete(s.get(Shipment, _subject()))
        s.commit()

    done = catch_up_telemetry(n1.ctx, n1.runtime)

    assert [d["result"] for d in done] == ["incomplete"]
    assert "NotFound" in done[0]["reason"]
    assert "not registered on-chain" in done[0]["reason"]
    with n1.ctx.sessions() as s:
        assert s.scalars(select(NetworkRound)).all() == []


def test_a_gap_only_this_node_has_is_filled_from_the_peers_before_it_decides_a_breach(w: World) -> None:
    """No peer has signed anything yet: node1 looks first, sees a two-hour hole (a data-gap breach on its
    own), asks its peers which signed messages they hold, fetches the two it lacks and decides with them."""
    n1, n2, n3 = w.nodes["node1"], w.nodes["node2"], w.nodes["node3"]
    _ingest(n1, _received_by_node1(w))
    _ingest(n2, w.payloads)
    _ingest(n3, w.payloads)
    _deliver_all(w)

    report, digest = _sign_own(n1)  # the scheduler's evaluation: evaluate, then sign a complete report

    assert report.value == int(Verdict.DELIVERED)  # not BREACH: the gap was node1's alone
    assert len(_readings(n1)) == MESSAGES * PER_MESSAGE
    assert n1.runtime.counters["inputs_fetched"] == len(MISSED)
    report2, digest2 = _sign_own(n2)
    assert (report2, digest2) == (report, digest)
