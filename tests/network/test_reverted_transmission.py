"""The first transmitter's transaction is mined but reverts; the next node in line lands the report, once.

Three nodes in one process, each with its own database, signer, transmitter account, peer endpoint, round
driver and outbox poster, against a real router on anvil (2 of 3). The node first in the transmission
schedule has a broken outbox: it sends the report with a gas limit too low for the router's signature
checks, so its transaction is mined and reverts (out of gas), as with a misconfigured or buggy node. The
others do not know why the report has not landed; they only see that it has not, and the next in line
queues it in its own outbox, under its own key, once its turn comes. The third never sends it: the router
already holds it when its turn comes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from sqlalchemy import select

from oracle.chain.anvil import free_port
from oracle.chain.outbox import OutboxPoster
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.network.membership import Member, Network, NodeIdentity
from oracle.network.peer import peer_router
from oracle.network.rounds import NodeRuntime, RoundDriver, begin_round
from oracle.network.schedule import transmit_order
from oracle.reports import ReportKind, Verdict, report_digest, subject_id
from oracle.signer.client import LocalSigner
from oracle.storage.network_tables import NetworkRound
from oracle.storage.tables import OutboxRow
from tests.fixtures.chain import ChainKit, make_report
from tests.fixtures.server import start_server

#: Enough to be mined (the calldata's intrinsic gas), far too little for the router's checks.
TOO_LITTLE_GAS = 45_000
TRANSMIT_TIMEOUT_S = 3.0


@dataclass
class Node:
    ctx: Context
    runtime: NodeRuntime
    poster: OutboxPoster
    transmitter: LocalAccount
    driver: RoundDriver | None = None


def _starve(poster: OutboxPoster) -> Any:
    """A poster hook: once a report row is signed, sign it again with too little gas (same nonce)."""

    def hook(step: str, row: OutboxRow) -> None:
        if step != "signed" or not row.key.startswith("report:"):
            return
        assert row.nonce is not None
        tx = poster._sign_tx(
            row,
            nonce=row.nonce,
            gas=TOO_LITTLE_GAS,
            max_fee=int(row.max_fee or 0),
            tip=int(row.priority_fee or 0),
        )
        row.gas_limit = TOO_LITTLE_GAS
        row.raw_tx = bytes(tx.raw_transaction)
        row.tx_hash = "0x" + bytes(tx.hash).hex()

    return hook


@pytest.fixture
def subject() -> bytes:
    return subject_id("shipment", f"revert-{time.time_ns()}")


@pytest.fixture
def nodes(tmp_path: Path, chain: ChainKit, subject: bytes) -> Iterator[dict[str, Node]]:
    ids = ["node1", "node2", "node3"]
    first = transmit_order(subject, 1, ids)[0]
    ports = {i: free_port() for i in ids}
    identities = {i: NodeIdentity(i, Account.create()) for i in ids}
    transmitters = {i: Account.create() for i in ids}
    members = tuple(
        Member(i, key.address, identities[i].address, f"http://127.0.0.1:{ports[i]}", transmitters[i].address)
        for i, key in zip(ids, chain.keys, strict=True)
    )
    network = Network(name="t", threshold=2, members=members, transmit_timeout_s=TRANSMIT_TIMEOUT_S)
    out: dict[str, Node] = {}
    servers = []
    for i, key in zip(ids, chain.keys, strict=True):
        chain.w3.provider.make_request("anvil_setBalance", [transmitters[i].address, hex(10**18)])  # type: ignore[arg-type]
        ctx = open_context(Settings(env="dev", data_dir=tmp_path / i, _env_file=None))  # type: ignore[call-arg]
        runtime = NodeRuntime(
            network=network,
            identity=identities[i],
            signer=LocalSigner(bytes(key.key)),
            chain_id=chain.deployment.chain_id,
            router=chain.router.address,
        )
        poster = OutboxPoster(ctx.sessions, chain.w3, transmitters[i])
        if i == first:
            # Only the test's pump loop drives this outbox: the hook re-signs a row after the poster
            # committed it, and a second pump (the driver's immediate one) could broadcast the row's
            # first bytes in between, which is the test's seam racing, not a node.
            poster.hook = _starve(poster)
        else:
            ctx.extras["poster"] = poster  # the round driver pumps right after queuing, as in the service
        out[i] = Node(ctx, runtime, poster, transmitters[i])
        app = FastAPI()
        app.include_router(peer_router(ctx, runtime))
        servers.append(start_server(app, ports[i]))
    yield out
    for node in out.values():
        if node.driver is not None:
            node.driver.stop()
        else:
            node.runtime.client.close()
    for srv in servers:
        srv.should_exit = True
    for node in out.values():
        node.ctx.close()


def _pump_until(nodes: dict[str, Node], done: Any, timeout: float) -> None:
    """What each node's scheduler does with its outbox: pump it, until ``done()`` or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in nodes.values():
            node.poster.pump()
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(f"not done within {timeout} s")


def _rows(node: Node) -> list[OutboxRow]:
    with node.ctx.sessions() as s:
        return list(s.scalars(select(OutboxRow).where(OutboxRow.purpose == "report")).all())


def _round(node: Node) -> NetworkRound:
    with node.ctx.sessions() as s:
        return s.scalars(select(NetworkRound)).one()


def test_a_reverted_transmission_is_taken_over_by_the_next_in_line_and_lands_once(
    nodes: dict[str, Node], chain: ChainKit, subject: bytes
) -> None:
    report = make_report(subject, kind=ReportKind.COLDCHAIN_VERDICT, value=int(Verdict.DELIVERED), epoch=1)
    first, second, third = transmit_order(subject, 1, list(nodes))
    start_block = chain.w3.eth.block_number
    for node in nodes.values():
        begin_round(node.ctx, node.runtime, report, subject_name="revert")
        node.driver = RoundDriver(node.ctx, node.runtime, chain.w3, interval=0.1)
    for node in nodes.values():
        assert node.driver is not None
        node.driver.start()

    def landed() -> bool:
        return all(_round(n).status == "landed" for n in nodes.values())

    _pump_until(nodes, landed, timeout=60)

    # The first in line sent it and its transaction was mined and reverted (out of gas), not retried.
    [bad] = _rows(nodes[first])
    assert bad.status == "reverted"
    assert "outofgas" in (bad.revert_reason or "").lower().replace(" ", "")
    receipt = chain.w3.eth.get_transaction_receipt(bad.tx_hash)
    assert receipt["status"] == 0
    # The next in line sent it under its own key; the router took it once.
    [good] = _rows(nodes[second])
    assert good.status == "confirmed"
    assert chain.w3.eth.get_transaction(good.tx_hash)["from"] == nodes[second].transmitter.address
    assert _round(nodes[second]).combined  # it combined k signatures itself
    assert nodes[second].runtime.counters["takeovers"] == 1
    events = chain.router.events.ReportAccepted().get_logs(
        from_block=start_block, argument_filters={"subject": subject}
    )
    assert len(events) == 1
    assert events[0]["transactionHash"].hex().removeprefix("0x") == good.tx_hash.removeprefix("0x")
    epoch, _, value, _, digest = chain.router.functions.latest(subject).call()
    assert (int(epoch), int(value)) == (1, int(Verdict.DELIVERED))
    assert bytes(digest) == report_digest(
        report, chain_id=chain.deployment.chain_id, router=chain.router.address
    )
    # The third found the report on the router before its turn and never sent it.
    time.sleep(TRANSMIT_TIMEOUT_S + 0.5)
    assert _rows(nodes[third]) == []
    assert [len(_rows(n)) for n in nodes.values()].count(1) == 2
    for node in nodes.values():
        assert _round(node).landed_tx == "0x" + good.tx_hash.removeprefix("0x")
