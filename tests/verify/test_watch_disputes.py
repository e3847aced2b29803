"""``oracle watch --dispute-key``: the watcher files the dispute itself (issue 14 items 3 and 4).

A real anvil, a real node API (uvicorn) and the pool with a one-hour liveness window on the drought
region. The honest network posts its report; a faulty configuration then posts a tampered revision (a
value the decision never produced, signed by k keys). The watcher, with a funded account of its own (a
key generated here, never stored anywhere else), replays both, disputes the tampered one inside the
window (approve, then dispute, through its own outbox) and nothing pays on it; the network's
replacement revision then upholds the dispute and the watcher gets its bond back plus the reward. The
same dispute, filed by an ``oracle watch`` process that is SIGKILLed and restarted, lands exactly once.
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
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from oracle.attest import attest
from oracle.chain.outbox import OutboxPoster
from oracle.context import Context
from oracle.decisions.drought import evaluate_drought
from oracle.reports import MAX_REVISIONS, Report
from oracle.storage.db import make_engine, session_factory
from oracle.storage.tables import OutboxRow
from oracle.verify.dispute_filer import DisputeFiler
from oracle.verify.replay import MISMATCH
from oracle.verify.watch import MATCH, Watcher
from tests.chain.dispute_kit import BOND, LIVENESS, REWARD, dispute_terms, fund_watcher, policy_with_window
from tests.drought.world import PERIOD, build
from tests.fixtures.chain import ChainKit
from tests.outbox.helpers import local_signers
from tests.verify.test_verify import post_and_settle
from tests.verify.test_watch import _serve, node_context

pytestmark = pytest.mark.chain

DAY = 86_400


@dataclasses.dataclass
class Setup:
    ctx: Context
    url: str
    honest: Report
    tampered: Report
    tampered_tx: str
    manifest: str
    policy: int
    watcher: LocalAccount
    key_file: Path


def _post(chain: ChainKit, ctx: Context, report: Report, manifest: str) -> str:
    """Attest ``report`` with k of the network's keys and post it; returns the accepting tx."""
    attest(
        ctx.sessions,
        report,
        signers=local_signers(chain.keys),
        threshold=2,
        chain_id=chain.deployment.chain_id,
        router=chain.router.address,
        subject_name="dry",
        detail={"manifest_cid": manifest},
    )
    OutboxPoster(ctx.sessions, chain.w3, chain.accounts.relayer).run_until_settled(timeout=60)
    last = chain.router.events.ReportAccepted().get_logs(from_block=chain.deployment.block)[-1]
    assert last["args"]["epoch"] == report.epoch
    return "0x" + bytes(last["transactionHash"]).hex()


@pytest.fixture
def setup(chain: ChainKit, tmp_path: Path) -> Iterator[Setup]:
    data = tmp_path / "data"
    ctx = node_context(data)
    build(ctx.sessions, ctx.blobs, tmp_path)
    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.report is not None
    honest = outcome.report
    # The insurer: a product on the region with a one-hour window; disputes on.
    dispute_terms(chain)
    policy = policy_with_window(
        chain,
        region=honest.subject,
        start=honest.observed_at - 100 * DAY,
        end=honest.observed_at + 100 * DAY,
        trigger=0,
        exit=5_000_000,
    )
    # The watcher's own account: a fresh key, ether for gas and one bond in the pool's token.
    watcher = Account.create()
    chain.w3.provider.make_request("anvil_setBalance", [watcher.address, hex(10**18)])  # type: ignore[arg-type]
    fund_watcher(chain, watcher.address)
    key_file = tmp_path / "watcher.key"
    key_file.write_text(bytes(watcher.key).hex())
    key_file.chmod(0o600)
    post_and_settle(chain, ctx.sessions, outcome)
    # A faulty network: same inputs and manifest, a value the decision never produced, k signatures.
    tampered = dataclasses.replace(
        honest, value=min(honest.value + 700_000, 5_000_000), epoch=honest.epoch + 1
    )
    tampered_tx = _post(chain, ctx, tampered, outcome.manifest_cid)
    server, thread, url = _serve(ctx)
    yield Setup(ctx, url, honest, tampered, tampered_tx, outcome.manifest_cid, policy, watcher, key_file)
    server.should_exit = True
    thread.join(timeout=10)
    ctx.close()


def _filed(chain: ChainKit, subject: bytes, epoch: int) -> list[dict[str, object]]:
    logs = chain.pool.events.DisputeFiled().get_logs(
        from_block=chain.deployment.block, argument_filters={"subject": subject, "epoch": epoch}
    )
    return [dict(e["args"]) for e in logs]


def test_the_watcher_disputes_a_tampered_report_and_the_replacement_pays_it_back(
    setup: Setup, chain: ChainKit, tmp_path: Path
) -> None:
    subject, month = setup.honest.subject, setup.honest.epoch // MAX_REVISIONS
    filer = DisputeFiler(
        chain.w3,
        pool=chain.pool.address,
        account=setup.watcher,
        db_path=tmp_path / "watch" / "disputes.sqlite3",
    )
    watcher = Watcher(
        chain.w3,
        router=chain.router.address,
        nodes=[setup.url],
        state_path=tmp_path / "watch" / "state.json",
        evidence_dir=tmp_path / "watch" / "evidence",
        from_block=chain.deployment.block,
        filer=filer,
    )
    try:
        results = {r.epoch: r for r in watcher.poll()}
        assert results[setup.honest.epoch].status == MATCH
        bad = results[setup.tampered.epoch]
        assert (bad.status, bad.dispute) == (MISMATCH, "queued")
        # Filed within the window, bond in the vault, the report frozen: nothing pays on it.
        (filed,) = _filed(chain, subject, setup.tampered.epoch)
        assert (filed["watcher"], filed["bond"], filed["evidenceCid"]) == (
            setup.watcher.address,
            BOND,
            bad.evidence_cid,
        )
        assert watcher.metrics.registry.get_sample_value("oracle_watch_disputes_filed_total") == 1.0
        assert chain.pool.functions.frozen(subject, month).call()
        chain.advance_time(LIVENESS + 1)
        assert chain.pool.functions.due(setup.policy, month).call() == 0
        receipt = chain.send(chain.pool.functions.settle(subject, month, 10))
        assert chain.events(chain.pool, "PayoutSent", receipt) == []
        # A second pass files nothing more.
        assert [r.status for r in watcher.poll()] == []
        # The network's replacement revision (the decision's own value) upholds the dispute.
        replacement = dataclasses.replace(setup.honest, epoch=setup.honest.epoch + 2)
        _post(chain, setup.ctx, replacement, setup.manifest)
        (checked,) = watcher.poll()
        assert (checked.epoch, checked.status, checked.dispute) == (replacement.epoch, MATCH, None)
        before = chain.balance(setup.watcher.address)
        receipt = chain.send(chain.pool.functions.resolveDispute(subject, setup.tampered.epoch))
        (upheld,) = chain.events(chain.pool, "DisputeUpheld", receipt)
        assert (upheld["bond"], upheld["reward"]) == (BOND, REWARD)
        assert chain.balance(setup.watcher.address) - before == BOND + REWARD
        # The replacement pays after its own window: the decision's value, never the tampered one.
        chain.advance_time(LIVENESS + 1)
        chain.send(chain.pool.functions.settle(subject, month, 10))
        expected = chain.pool.functions.payoutFor(setup.honest.value, 0, 5_000_000, 1_000 * 10**6).call()
        assert expected > 0
        assert chain.pool.functions.policy(setup.policy).call()[4] == expected
        assert len(_filed(chain, subject, setup.tampered.epoch)) == 1
    finally:
        watcher.close()


def _start(chain: ChainKit, setup: Setup, state: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from oracle.cli import main; main()",
            "watch",
            "--rpc-url",
            chain.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
            "--router",
            chain.router.address,
            "--node",
            setup.url,
            "--state",
            str(state / "state.json"),
            "--evidence",
            str(state / "evidence"),
            "--from-block",
            str(chain.deployment.block),
            "--interval",
            "0.2",
            "--dispute-key",
            str(setup.key_file),
            "--pool",
            chain.pool.address,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, (
            f"no {text!r} in the log: " + log.read_text(errors="replace")[-3000:]
        )
        time.sleep(0.02)


def test_a_sigkilled_watcher_files_its_dispute_exactly_once(
    setup: Setup, chain: ChainKit, tmp_path: Path
) -> None:
    state, subject = tmp_path / "watch", setup.honest.subject
    kills = []
    # Killed as soon as it logs the mismatch (before or while queueing), then as soon as it has signed
    # the dispute (before or while sending); the third run is left to finish.
    for marker in ("MISMATCH", "outbox signed key=dispute:"):
        log = tmp_path / f"run{len(kills)}.log"
        proc = _start(chain, setup, state, log)
        try:
            _wait_for(log, marker, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        kills.append(len(_filed(chain, subject, setup.tampered.epoch)))
    log = tmp_path / "run-final.log"
    sessions = session_factory(make_engine(f"sqlite:///{state / 'disputes.sqlite3'}"))

    def rows() -> list[tuple[str, str]]:
        with sessions() as s:
            return [(r.purpose, r.status) for r in s.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()]

    settled = [("dispute-approve", "confirmed"), ("dispute", "confirmed")]
    proc = _start(chain, setup, state, log)
    try:
        deadline = time.monotonic() + 90
        while rows() != settled:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"{rows()}: " + log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        time.sleep(1.0)  # a few more passes: nothing is sent twice
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(_filed(chain, subject, setup.tampered.epoch)) == 1
    assert all(n <= 1 for n in kills)
    assert rows() == settled
    text = "".join(p.read_text(errors="replace") for p in tmp_path.glob("run*.log"))
    assert bytes(setup.watcher.key).hex() not in text
    assert chain.pool.functions.disputeOf(subject, setup.tampered.epoch).call()[0] == setup.watcher.address
