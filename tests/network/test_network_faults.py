"""The network's fault tests, with real processes: 4 nodes, k = 3, one anvil, one mosquitto.

Each node is an ``oracle run --network DIR --node ID`` process with its own database, content store and
signer child process; each ingested the same synthetic drought world itself (tests/network/cluster.py).
node2 runs with numpy's widest SIMD turned off the whole time, so every round here is also a check
that a node on other hardware computes the same bits. Every test uses rounds of its own (one region
strip each), so the order of the tests does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from shapely.geometry import box

from oracle.devstack.broker import BrokerProcess
from oracle.network.schedule import transmit_order
from oracle.reports import subject_id
from tests.models.test_determinism import dispatched_features
from tests.network.cluster import Cluster, buyer_shipment, running_cluster, wait_until

PERIOD = "2026-06"
EPOCH = (2026 * 12 + 6 - 1) * 1000  # the first report for June 2026
LIAR = "node4"
REDUCED_SIMD = "node2"
PARTITIONED = "node1"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, anvil: object, mosquitto: BrokerProcess
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("network")
    with running_cluster(
        tmp,
        rpc_url=anvil.url,  # type: ignore[attr-defined]
        mqtt_url=mosquitto.url,
        start=False,
        # The liar's copy of strip s7's boundary is moved into the wet half: a doctored input in its store.
        region_overrides={LIAR: {"s7": box(36.52, -0.14, 36.98, -0.04)}},
        partitionable=PARTITIONED,
    ) as c:
        features = dispatched_features()
        assert features, "numpy dispatches no SIMD extension here to turn off"
        c.env_extra[REDUCED_SIMD] = {"NPY_DISABLE_CPU_FEATURES": " ".join(features)}
        c.start_all()
        yield c


def _request_all(c: Cluster, region: str, nodes: list[str] | None = None) -> None:
    for node_id in nodes or c.network.ids:
        r = c.request_evaluation(node_id, region, PERIOD)
        assert r.status_code in (200, 201), (node_id, r.text)


def _landed(c: Cluster, region: str) -> int:
    return wait_until(lambda: c.latest(region)[0], timeout=60, what=f"a report for {region} on-chain")


def _accepted_once(c: Cluster, region: str) -> bytes:
    events = c.accepted_events(region)
    assert len(events) == 1, f"{len(events)} ReportAccepted events for {region}"
    return bytes(events[0]["args"]["reportHash"])


def _settled(c: Cluster, node_id: str, region: str) -> dict[str, object]:
    return wait_until(
        lambda: (v := c.round(node_id, region, EPOCH))["status"] in ("landed", "superseded") and v,
        timeout=60,
        what=f"{node_id}'s round for {region} to settle",
    )


def test_a_report_lands_once_signed_by_k_members_that_each_computed_it(cluster: Cluster) -> None:
    _request_all(cluster, "s0")
    assert _landed(cluster, "s0") == EPOCH
    digest = "0x" + _accepted_once(cluster, "s0").hex()
    for node_id in cluster.network.ids:
        view = _settled(cluster, node_id, "s0")
        assert (view["status"], view["digest"]) == ("landed", digest), node_id
    view = cluster.round("node1", "s0", EPOCH)
    # Every member signed the same digest, the reduced-SIMD node included; exactly k were combined.
    assert {s["node"]: s["agrees"] for s in view["signatures"]} == dict.fromkeys(cluster.network.ids, True)
    queued = [cluster.round(n, "s0", EPOCH)["combined"] for n in cluster.network.ids]
    assert [len(c) for c in queued if c] == [3], queued  # one node transmitted, with k signatures
    metrics = httpx.get(cluster.network.member("node1").url + "/metrics", timeout=10).text
    assert 'oracle_network_rounds{state="landed"}' in metrics


def test_a_lying_node_is_never_combined_and_its_disagreement_is_recorded(cluster: Cluster) -> None:
    # The liar is asked first: asked last on a loaded machine, the honest report could land before its
    # evaluation began, and a node refuses to evaluate a period the router already holds (422).
    _request_all(cluster, "s7", [LIAR, *(n for n in cluster.network.ids if n != LIAR)])
    assert _landed(cluster, "s7") == EPOCH
    digest = "0x" + _accepted_once(cluster, "s7").hex()
    liar = cluster.round(LIAR, "s7", EPOCH)
    assert liar["digest"] != digest, "the doctored region should change the liar's report"
    honest = [n for n in cluster.network.ids if n != LIAR]
    for node_id in honest:
        view = _settled(cluster, node_id, "s7")
        assert view["status"] == "landed"
        assert view["digest"] == digest
        # The liar's signature arrives too; it is kept, marked as disagreeing.
        view = wait_until(
            lambda n=node_id: (v := cluster.round(n, "s7", EPOCH)) and len(v["signatures"]) == 4 and v,
            timeout=30,
            what=f"{node_id} to receive every signature",
        )
        agrees = {s["node"]: s["agrees"] for s in view["signatures"]}
        assert agrees == {"node1": True, "node2": True, "node3": True, LIAR: False}, node_id
        assert LIAR not in view["combined"]
    # The liar's own round never reached k; once the honest report landed it is superseded, not sent.
    assert _settled(cluster, LIAR, "s7")["status"] == "superseded"
    metrics = httpx.get(cluster.network.member(honest[0]).url + "/metrics", timeout=10).text
    line = next(x for x in metrics.splitlines() if x.startswith("oracle_network_disagreements "))
    assert float(line.split()[1]) >= 1
    # Its untouched regions still agree: only strip s7 was doctored.
    _request_all(cluster, "s6")
    assert _landed(cluster, "s6") == EPOCH
    view = _settled(cluster, "node1", "s6")
    assert all(s["agrees"] for s in view["signatures"]), view


def test_a_node_killed_mid_round_does_not_stop_the_report_and_catches_up(cluster: Cluster) -> None:
    victim = "node3"
    _request_all(cluster, "s1", [victim])
    cluster.kill(victim)  # SIGKILL, right after its signature went out (or did not)
    _request_all(cluster, "s1", ["node1", "node2", "node4"])
    assert _landed(cluster, "s1") == EPOCH
    digest = "0x" + _accepted_once(cluster, "s1").hex()
    cluster.start(victim)
    cluster.wait_healthy(victim)
    view = _settled(cluster, victim, "s1")
    assert view["status"] == "landed"
    assert view["digest"] == digest
    time.sleep(2 * cluster.transmit_timeout_s)
    _accepted_once(cluster, "s1")


def test_two_nodes_down_means_no_report_until_they_return(cluster: Cluster) -> None:
    down = ["node2", "node3"]
    for node_id in down:
        cluster.kill(node_id)
    _request_all(cluster, "s2", ["node1", "node4"])
    time.sleep(4 * cluster.transmit_timeout_s)
    assert cluster.latest("s2")[0] == 0, "a report landed with fewer than k signatures"
    assert cluster.round("node1", "s2", EPOCH)["status"] == "collecting"
    for node_id in down:
        cluster.start(node_id)
    for node_id in down:
        cluster.wait_healthy(node_id)
    _request_all(cluster, "s2", down)
    assert _landed(cluster, "s2") == EPOCH
    _accepted_once(cluster, "s2")
    time.sleep(2 * cluster.transmit_timeout_s)
    _accepted_once(cluster, "s2")


def test_when_the_scheduled_transmitter_dies_with_the_signatures_the_next_one_sends_once(
    cluster: Cluster,
) -> None:
    first, second = transmit_order(subject_id("region", "s3"), EPOCH, cluster.network.ids)[:2]
    transmitter = _transmitter_address(cluster.directory, first)
    sent_before = cluster.w3.eth.get_transaction_count(transmitter)
    # The first in line cannot reach the chain: it collects k signatures and queues the transaction, but
    # its outbox cannot send it. Then it is killed.
    cluster.chain_proxies[first].cut()
    _request_all(cluster, "s3")
    wait_until(
        lambda: cluster.round(first, "s3", EPOCH)["status"] == "queued",
        timeout=30,
        what=f"{first} to queue the transmission",
    )
    cluster.kill(first)
    assert _landed(cluster, "s3") == EPOCH
    digest = "0x" + _accepted_once(cluster, "s3").hex()
    assert cluster.round(second, "s3", EPOCH)["combined"], f"{second} should have taken over"
    # Back, with its queued transaction still in its outbox: it sees the report landed and sends nothing.
    cluster.chain_proxies[first].mend()
    cluster.start(first)
    cluster.wait_healthy(first)
    view = _settled(cluster, first, "s3")
    assert view["status"] == "landed"
    assert view["digest"] == digest
    time.sleep(2 * cluster.transmit_timeout_s)
    _accepted_once(cluster, "s3")
    assert cluster.w3.eth.get_transaction_count(transmitter) == sent_before, f"{first} sent it anyway"


def test_a_breach_voids_the_shipment_once_on_k_signatures_of_nodes_that_looked_at_different_times(
    cluster: Cluster,
) -> None:
    """Every node ingests the logger's messages itself and evaluates after each commit of its own; the
    breach report is decided on the batches that establish it, so all agree on one digest."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.coldchain.helpers import temperatures

    shipment, device = buyer_shipment("SHP-NET-1"), "logger-net-1"
    cluster.open_shipment(shipment)
    wait_until(
        lambda: all(cluster.knows_shipment(n, shipment) for n in cluster.network.ids),
        timeout=60,
        what="every node to see the escrowed shipment",
    )
    # The logger signs ES256 with its own key; every node registers only the public key.
    secret = ec.generate_private_key(ec.SECP256R1())
    start = int(time.time()) - 20 * 3600
    cluster.enroll(device, shipment, start_s=start, secret=secret)
    temps = temperatures(20, excursion=(6, 2, 46.0))
    cluster.publish(device, secret, temps[:60], start_s=start)
    wait_until(lambda: cluster.shipment_events(shipment), timeout=90, what="the void on-chain")
    # More readings after the breach: nothing new is signed, nothing lands twice.
    cluster.publish(device, secret, temps[60:], start_s=start + 60 * 600, first_seq=60)
    time.sleep(3 * cluster.transmit_timeout_s)
    events = cluster.shipment_events(shipment)
    assert len(events) == 1
    assert events[0]["args"]["value"] == 1  # BREACH
    digest = "0x" + bytes(events[0]["args"]["reportHash"]).hex()
    for node_id in cluster.network.ids:
        view = wait_until(
            lambda n=node_id: (
                (v := cluster.round(n, shipment, 1, namespace="shipment"))["status"] == "landed" and v
            ),
            timeout=30,
            what=f"{node_id}'s shipment round",
        )
        assert view["digest"] == digest
    escrow = cluster.deployment.contract(cluster.w3, "ColdChainEscrow")
    voided = escrow.events.ShipmentVoided().get_logs(from_block=cluster.deployment.block)
    assert [bytes(e["args"]["shipmentId"]) for e in voided].count(subject_id("shipment", shipment)) == 1


def test_a_node_cut_off_from_its_peers_for_30_s_rejoins_with_no_duplicate_and_nothing_lost(
    cluster: Cluster,
) -> None:
    cut = PARTITIONED
    transmitter = _transmitter_address(cluster.directory, cut)
    sent_before = cluster.w3.eth.get_transaction_count(transmitter)
    cut_at = time.monotonic()
    cluster.cut_off()  # both ways; its chain and broker stay reachable
    try:
        _request_all(cluster, "s4")  # it computes and signs too, but can neither send nor receive
        assert _landed(cluster, "s4") == EPOCH  # the other three are k
        view = _settled(cluster, cut, "s4")  # it learns from the chain that the round is over
        assert view["status"] == "landed"
        assert [s["node"] for s in view["signatures"]] == [cut]
        others = cluster.round("node2", "s4", EPOCH)
        assert cut not in [s["node"] for s in others["signatures"]]
        time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    finally:
        cluster.reconnect()
    # Back: every member ends up holding every member's signature, all agreeing; nothing was sent twice.
    for node_id in cluster.network.ids:
        wait_until(
            lambda n=node_id: len(cluster.round(n, "s4", EPOCH)["signatures"]) == 4,
            timeout=60,
            what=f"{node_id} to hold all four signatures after the partition",
        )
        view = cluster.round(node_id, "s4", EPOCH)
        assert all(s["agrees"] for s in view["signatures"]), node_id
    _accepted_once(cluster, "s4")
    assert cluster.w3.eth.get_transaction_count(transmitter) == sent_before


def test_unauthenticated_and_forged_peer_messages_are_refused(cluster: Cluster) -> None:
    url = cluster.network.member("node1").url + "/v1/peer/signatures"
    r = httpx.post(url, json={"subject": "0x00", "epoch": 1}, timeout=10)
    assert r.status_code == 401
    assert r.json()["reason"] == "missing_headers"
    forged = {
        "X-Oracle-Node": "node2",
        "X-Oracle-Time": f"{time.time():.3f}",
        "X-Oracle-Signature": "0x" + "11" * 65,
    }
    r = httpx.post(url, json={}, headers=forged, timeout=10)
    assert r.status_code == 401
    assert r.json()["reason"] == "bad_signature"


def _transmitter_address(directory: Path, node_id: str) -> str:
    from oracle.network.init import transmitter_address

    return transmitter_address(directory, node_id)
