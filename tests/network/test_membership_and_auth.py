"""The network file, peer-request authentication and the transmission schedule, without processes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from eth_account import Account

from oracle.errors import ConfigError
from oracle.network.auth import PeerAuthError, PeerVerifier, sign_request
from oracle.network.init import init_network
from oracle.network.membership import Member, Network, NodeIdentity, load_identity
from oracle.network.schedule import transmit_order


def _network(n: int, k: int) -> tuple[Network, list[NodeIdentity]]:
    ids = [NodeIdentity(f"node{i + 1}", Account.create()) for i in range(n)]
    members = tuple(
        Member(i.node_id, Account.create().address, i.address, f"http://127.0.0.1:{9000 + n}")
        for n, i in enumerate(ids)
    )
    return Network(name="t", threshold=k, members=members), ids


@pytest.mark.parametrize(("n", "k"), [(4, 2), (4, 5), (3, 1), (3, 0)])
def test_threshold_must_be_a_strict_majority(n: int, k: int) -> None:
    with pytest.raises(ConfigError, match="strict majority"):
        _network(n, k)


def test_init_writes_keys_per_node_and_a_network_file(tmp_path: Path) -> None:
    result = init_network(tmp_path / "net", nodes=3, threshold=2, ports=[8101, 8102, 8103])
    loaded = Network.load(tmp_path / "net")
    assert loaded == result.network
    assert loaded.threshold == 2
    assert len({m.signer for m in loaded.members}) == 3
    for m in loaded.members:
        d = tmp_path / "net" / "nodes" / m.id
        assert load_identity(d, m.id).address == m.peer_key
        keystore = json.loads((d / "signer" / "keystore.json").read_text())
        assert "0x" + keystore["address"].lower().removeprefix("0x") == m.signer.lower()
        assert (d / "transmitter" / "keystore.json").stat().st_mode & 0o077 == 0
    # No private key appears in the shared network file.
    text = (tmp_path / "net" / "network.json").read_text()
    assert "private" not in text
    assert "ciphertext" not in text
    with pytest.raises(ConfigError, match="refusing"):
        init_network(tmp_path / "net", nodes=3, threshold=2)


def test_a_signed_request_verifies_once_and_only_as_sent() -> None:
    net, ids = _network(4, 3)
    verifier = PeerVerifier(net)
    body = b'{"x": 1}'
    headers = sign_request(ids[1], net, "POST", "/v1/peer/signatures", body, now=1000.0)
    assert verifier.verify("POST", "/v1/peer/signatures", headers, body, now=1001.0).id == "node2"
    with pytest.raises(PeerAuthError) as replay:
        verifier.verify("POST", "/v1/peer/signatures", headers, body, now=1001.0)
    assert replay.value.reason == "replayed"
    fresh = sign_request(ids[1], net, "POST", "/v1/peer/signatures", body, now=1002.0)
    for method, path, b, reason in [
        ("POST", "/v1/peer/signatures", b'{"x": 2}', "bad_signature"),  # body changed
        ("POST", "/v1/peer/rounds", body, "bad_signature"),  # path changed
        ("GET", "/v1/peer/signatures", body, "bad_signature"),  # method changed
    ]:
        with pytest.raises(PeerAuthError) as e:
            verifier.verify(method, path, fresh, b, now=1002.0)
        assert e.value.reason == reason
    with pytest.raises(PeerAuthError) as stale:
        verifier.verify("POST", "/v1/peer/signatures", fresh, body, now=1100.0)
    assert stale.value.reason == "stale"
    # A member claiming to be another member: its key is not the other's peer key.
    posing = sign_request(NodeIdentity("node3", ids[1].account), net, "POST", "/p", body, now=1000.0)
    with pytest.raises(PeerAuthError) as e:
        verifier.verify("POST", "/p", posing, body, now=1000.0)
    assert e.value.reason == "bad_signature"
    outsider = sign_request(NodeIdentity("node9", Account.create()), net, "POST", "/p", body, now=1000.0)
    with pytest.raises(PeerAuthError) as e:
        verifier.verify("POST", "/p", outsider, body, now=1000.0)
    assert e.value.reason == "unknown_node"


def test_the_transmission_schedule_rotates_and_every_node_computes_the_same() -> None:
    ids = ["node1", "node2", "node3", "node4"]
    firsts = Counter(transmit_order(bytes([i]) * 32, 7, ids)[0] for i in range(200))
    assert set(firsts) == set(ids)
    assert min(firsts.values()) > 25  # roughly even: no node carries all the gas
    order = transmit_order(b"\x01" * 32, 24317000, ids)
    assert sorted(order) == ids
    assert order == transmit_order(b"\x01" * 32, 24317000, list(reversed(ids)))
