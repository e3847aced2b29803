"""``oracle watch`` on the cold-chain escrow (issue 14): the watcher follows the escrow's verdicts too.

A real anvil, a real node API (uvicorn), readings signed by a real device key through the ingest
pipeline, and a shipment whose terms carry a one-hour liveness window with a bond in the shipment's
token. The honest network posts its verdict (BREACH: the logger saw an excursion); a faulty
configuration then posts a tampered revision (DELIVERED, signed by k keys). The watcher, with a funded
account of its own, replays both, disputes the tampered verdict inside its window, and nothing pays or
voids on it; the network's replacement upholds the dispute (bond back) and the shipment is voided after
the replacement's own window. A dishonest watcher who disputes the honest verdict loses its bond to the
buyer once the answer window has passed, and the verdict then applies.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from eth_account.signers.local import LocalAccount

from oracle.attest import attest
from oracle.chain.outbox import OutboxPoster
from oracle.context import Context
from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
from oracle.errors import RevertError
from oracle.reports import Report, Verdict
from oracle.verify.dispute_filer import DisputeFiler
from oracle.verify.replay import MISMATCH
from oracle.verify.watch import MATCH, Watcher
from tests.chain.escrow_window_kit import (
    AMOUNT,
    ANSWER,
    BOND,
    LIVENESS,
    OPEN,
    REJECTED,
    UPHELD,
    VOIDED,
    file_escrow_dispute,
    open_with_window,
    status,
)
from tests.coldchain.helpers import Fleet, day_ago, temperatures
from tests.fixtures.chain import ChainKit, buyer_shipment
from tests.outbox.helpers import local_signers
from tests.verify.test_watch import _serve, node_context

pytestmark = pytest.mark.chain

SHIPMENT = buyer_shipment("SHP-DISPUTE")


@dataclasses.dataclass
class Node:
    ctx: Context
    url: str
    honest: Report
    manifest: str
    watcher: LocalAccount


def _post(chain: ChainKit, ctx: Context, report: Report, manifest: str) -> None:
    """Attest ``report`` with k of the network's keys and post it (a faulty configuration may sign a
    report its decision never produced: the signers are handed the report, not the decision)."""
    attest(
        ctx.sessions,
        report,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name=SHIPMENT,
        detail={"manifest_cid": manifest},
    )
    OutboxPoster(ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    last = chain.router.events.ReportAccepted().get_logs(from_block=chain.deployment.block)[-1]
    assert last["args"]["epoch"] == report.epoch


@pytest.fixture
def node(chain: ChainKit, tmp_path: Path) -> Iterator[Node]:
    ctx = node_context(tmp_path / "data")
    fleet = Fleet(ctx.sessions, ctx.blobs)
    start = day_ago()
    fleet.add("logger-1", SHIPMENT, start_s=start, key=ec.generate_private_key(ec.SECP256R1()))
    temps = temperatures(6, excursion=(2, 2, 46.0))
    assert fleet.publish("logger-1", temps, start_s=start, batch=12) == len(temps)
    outcome = evaluate_shipment(
        ctx.sessions, ctx.blobs, shipment_id=SHIPMENT, terms=ShipmentTerms(profile="refrigerated")
    )
    assert outcome.report is not None
    assert outcome.report.value == int(Verdict.BREACH)
    # The buyer and seller agreed on a one-hour window and a bond in the shipment's token.
    open_with_window(chain, SHIPMENT)
    watcher = Account.create()
    chain.w3.provider.make_request("anvil_setBalance", [watcher.address, hex(10**18)])  # type: ignore[arg-type]
    chain.send(chain.coin.functions.mint(watcher.address, BOND))
    _post(chain, ctx, outcome.report, outcome.manifest_cid)
    server, thread, url = _serve(ctx)
    yield Node(ctx, url, outcome.report, outcome.manifest_cid, watcher)
    server.should_exit = True
    thread.join(timeout=10)
    ctx.close()


def _watcher(chain: ChainKit, node: Node, tmp_path: Path) -> Watcher:
    filer = DisputeFiler(
        chain.w3,
        escrow=chain.escrow.address,
        account=node.watcher,
        db_path=tmp_path / "watch" / "disputes.sqlite3",
    )
    return Watcher(
        chain.w3,
        router=chain.router.address,
        nodes=[node.url],
        state_path=tmp_path / "watch" / "state.json",
        evidence_dir=tmp_path / "watch" / "evidence",
        from_block=chain.deployment.block,
        filer=filer,
    )


def _filed(chain: ChainKit, subject: bytes) -> list[dict[str, object]]:
    logs = chain.escrow.events.DisputeFiled().get_logs(
        from_block=chain.deployment.block, argument_filters={"subject": subject}
    )
    return [dict(e["args"]) for e in logs]


def test_the_watcher_freezes_a_tampered_verdict_and_the_replacement_upholds_it(
    node: Node, chain: ChainKit, tmp_path: Path
) -> None:
    subject, honest = node.honest.subject, node.honest
    tampered = dataclasses.replace(honest, value=int(Verdict.DELIVERED), epoch=honest.epoch + 1)
    _post(chain, node.ctx, tampered, node.manifest)
    seller_before = chain.balance(chain.accounts.seller.address)
    watcher = _watcher(chain, node, tmp_path)
    try:
        results = {r.epoch: r for r in watcher.poll()}
        assert results[honest.epoch].status == MATCH
        bad = results[tampered.epoch]
        assert (bad.status, bad.dispute) == (MISMATCH, "queued")
        # Filed within the window by the watcher alone; the bond is in the vault, the verdict frozen.
        (filed,) = _filed(chain, subject)
        assert (filed["epoch"], filed["watcher"], filed["bond"], filed["evidenceCid"]) == (
            tampered.epoch,
            node.watcher.address,
            BOND,
            bad.evidence_cid,
        )
        assert chain.escrow.functions.frozen(subject).call()
        chain.advance_time(LIVENESS + 1)
        with pytest.raises(RevertError) as e:
            chain.send(chain.escrow.functions.finalize(subject))
        assert e.value.reason == "NotFinal"
        assert status(chain, subject) == OPEN
        assert chain.balance(chain.accounts.seller.address) == seller_before
        assert [r.status for r in watcher.poll()] == []  # a second pass files nothing more
        # The network's replacement (the decision's own verdict) upholds the dispute.
        replacement = dataclasses.replace(honest, epoch=honest.epoch + 2)
        _post(chain, node.ctx, replacement, node.manifest)
        (checked,) = watcher.poll()
        assert (checked.epoch, checked.status, checked.dispute) == (replacement.epoch, MATCH, None)
        before = chain.balance(node.watcher.address)
        receipt = chain.send(chain.escrow.functions.resolveDispute(subject, tampered.epoch))
        (upheld,) = chain.events(chain.escrow, "DisputeUpheld", receipt)
        assert upheld["bond"] == BOND
        assert chain.balance(node.watcher.address) - before == BOND
        assert chain.escrow.functions.disputeOf(subject, tampered.epoch).call()[2] == UPHELD
        # The replacement applies after its own window: voided, never the tampered DELIVERED.
        chain.advance_time(LIVENESS + 1)
        buyer_before = chain.balance(chain.accounts.buyer.address)
        chain.send(chain.escrow.functions.finalize(subject))
        assert status(chain, subject) == VOIDED
        assert chain.balance(chain.accounts.buyer.address) - buyer_before == AMOUNT
        assert chain.balance(chain.accounts.seller.address) == seller_before
    finally:
        watcher.close()


def test_a_watcher_who_disputes_an_honest_verdict_loses_its_bond(
    node: Node, chain: ChainKit, tmp_path: Path
) -> None:
    subject, honest = node.honest.subject, node.honest
    dishonest = chain.accounts.stranger
    file_escrow_dispute(chain, dishonest, subject, honest.epoch, "bafkreinoevidence")
    watcher = _watcher(chain, node, tmp_path)
    try:
        (result,) = watcher.poll()
        assert (result.status, result.dispute) == (MATCH, None)  # the honest watcher files nothing
    finally:
        watcher.close()
    assert len(_filed(chain, subject)) == 1
    assert chain.escrow.functions.frozen(subject).call()
    chain.advance_time(ANSWER + 1)
    dishonest_before = chain.balance(dishonest.address)
    buyer_before = chain.balance(chain.accounts.buyer.address)
    receipt = chain.send(chain.escrow.functions.resolveDispute(subject, honest.epoch))
    (rejected,) = chain.events(chain.escrow, "DisputeRejected", receipt)
    assert (rejected["watcher"], rejected["bond"]) == (dishonest.address, BOND)
    assert chain.escrow.functions.disputeOf(subject, honest.epoch).call()[2] == REJECTED
    # The bond compensates the buyer the verdict pays, and the verdict applies.
    assert chain.balance(dishonest.address) == dishonest_before
    assert chain.balance(chain.accounts.buyer.address) - buyer_before == AMOUNT + BOND
    assert status(chain, subject) == VOIDED


def test_oracle_watch_given_the_escrow_files_the_dispute_with_no_human_involved(
    node: Node, chain: ChainKit, tmp_path: Path
) -> None:
    subject, honest = node.honest.subject, node.honest
    tampered = dataclasses.replace(honest, value=int(Verdict.DELIVERED), epoch=honest.epoch + 1)
    _post(chain, node.ctx, tampered, node.manifest)
    key_file = tmp_path / "watcher.key"
    key_file.write_text(bytes(node.watcher.key).hex())
    key_file.chmod(0o600)
    state, log = tmp_path / "watch", tmp_path / "watch.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    args = [
        *("watch", "--rpc-url", chain.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        *("--router", chain.router.address, "--node", node.url, "--state", str(state / "state.json")),
        *("--evidence", str(state / "evidence"), "--from-block", str(chain.deployment.block)),
        *("--interval", "0.2", "--dispute-key", str(key_file), "--escrow", chain.escrow.address),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from oracle.cli import main; main()", *args],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while not _filed(chain, subject):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    (filed,) = _filed(chain, subject)
    assert (filed["epoch"], filed["watcher"], filed["bond"]) == (tampered.epoch, node.watcher.address, BOND)
    assert chain.escrow.functions.frozen(subject).call()
    assert bytes(node.watcher.key).hex() not in log.read_text(errors="replace")
