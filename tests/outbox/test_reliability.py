"""Reliability of the outbox against crashes and a chain outage, with real processes and a real anvil.

* The poster runs as `oracle outbox pump` in a child process and is SIGKILLed 20 times, each time right
  after it logged a step (signed, broadcast, confirmed) plus a random few milliseconds, across a run of
  50 reports: every policy is paid exactly once, every report lands, one transaction per report.
* anvil is stopped for 30 s with three reports broadcast but unmined and two more created during the
  outage, then restarted with its state: every report lands afterwards, once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from oracle.chain.anvil import AnvilProcess, start_anvil
from oracle.chain.client import connect
from oracle.chain.deploy import deploy_all
from oracle.chain.outbox import OutboxPoster
from oracle.config import load_settings
from oracle.devstack.localchain import load_or_create_transmitter, transact_value
from oracle.storage.tables import OutboxRow
from tests.fixtures.chain import TEST_MODELS, ChainKit
from tests.outbox.helpers import create_policy, drought_report, open_db, post, sqlite_url

pytestmark = [pytest.mark.chain, pytest.mark.slow]

N_REPORTS = 50
N_KILLS = 20


def _env(tmp_path: Path, rpc_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {
        "ORACLE_DATA_DIR": str(tmp_path / "data"),
        "ORACLE_DATABASE_URL": sqlite_url(tmp_path),
        "ORACLE_CHAIN_RPC_URL": rpc_url,
        "ORACLE_LOG_LEVEL": "INFO",
    }
    return env


def _pump_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from oracle.cli import main; main()", "outbox", "pump", *args]


def _steps(stream: object, seen: list[str], done: threading.Event) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        if "outbox signed" in line or "outbox confirmed" in line or "HTTP" in line:
            seen.append(line)
    done.set()


def test_poster_killed_20_times_pays_every_policy_exactly_once(chain: ChainKit, tmp_path: Path) -> None:
    rpc_url = chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    env = _env(tmp_path, rpc_url)
    settings = load_settings(data_dir=tmp_path / "data")
    transmitter = load_or_create_transmitter(settings)
    transact_value(chain.w3, chain.accounts.deployer, transmitter.address, 10 * 10**18)

    sessions = open_db(sqlite_url(tmp_path))
    policies = {}
    for i in range(N_REPORTS):
        report = drought_report(f"crash-{i}", epoch=1, severity=4.0)
        policies[create_policy(chain, report.subject, chain.accounts.insured.address)] = report
        post(sessions, chain, report)

    rng = random.Random(20261126)
    kills = 0
    while kills < N_KILLS:
        proc = subprocess.Popen(
            _pump_cmd(), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        seen: list[str] = []
        done = threading.Event()
        threading.Thread(target=_steps, args=(proc.stderr, seen, done), daemon=True).start()
        target = rng.randint(1, 3)
        deadline = time.monotonic() + 60
        while len(seen) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        with sessions() as s:
            if all(r.status == "confirmed" for r in s.scalars(select(OutboxRow))):
                break

    final = subprocess.run(
        _pump_cmd("--until-settled", "--timeout", "120"), env=env, capture_output=True, text=True, timeout=180
    )
    assert final.returncode == 0, final.stderr[-3000:]
    assert kills >= 15  # the run really was interrupted many times before it could finish

    with sessions() as s:
        rows = s.scalars(select(OutboxRow)).all()
        assert len(rows) == N_REPORTS
        assert {r.status for r in rows} == {"confirmed"}
        assert len({r.nonce for r in rows}) == N_REPORTS
    paid = chain.pool.events.PayoutSent().get_logs(from_block=chain.deployment.block)
    paid_ids = [int(e["args"]["policyId"]) for e in paid]
    assert sorted(paid_ids) == sorted(policies)  # every policy, each exactly once
    accepted = chain.router.events.ReportAccepted().get_logs(from_block=chain.deployment.block)
    assert len(accepted) == N_REPORTS
    # One transaction per report: the transmitter's nonce moved once per report and never more.
    assert chain.w3.eth.get_transaction_count(transmitter.address) == N_REPORTS


@pytest.fixture
def stateful_anvil(tmp_path: Path) -> Iterator[tuple[AnvilProcess, Path]]:
    state = tmp_path / "anvil-state.json"
    anvil = start_anvil(state_file=state)
    try:
        yield anvil, state
    finally:
        anvil.stop()


def test_anvil_down_30s_then_every_report_lands(
    stateful_anvil: tuple[AnvilProcess, Path], tmp_path: Path, chain: ChainKit
) -> None:
    """Reports cross the outage: three are broadcast but unmined when the chain goes away (mining is
    switched off first, and a stopped anvil keeps no mempool), two more are created while it is down.
    All ten land exactly once after it returns, with one transaction per report."""
    anvil, state = stateful_anvil
    w3 = connect(anvil.url)
    deployer, relayer = chain.accounts.deployer, chain.accounts.relayer
    dep = deploy_all(
        w3,
        deployer=deployer,
        signers=[k.address for k in chain.keys],
        threshold=2,
        chainlink=False,
        models=TEST_MODELS,
    )
    kit = ChainKit(w3=w3, accounts=chain.accounts, keys=chain.keys, deployment=dep)
    sessions = open_db(sqlite_url(tmp_path))
    reports = [drought_report(f"outage-{i}", epoch=1, severity=3.0) for i in range(10)]
    for r in reports:
        create_policy(kit, r.subject, chain.accounts.insured.address)
    for r in reports[:5]:
        post(sessions, kit, r)
    poster = OutboxPoster(sessions, w3, relayer)
    poster.run_until_settled(timeout=30)
    mined_before = w3.eth.get_transaction_count(relayer.address)

    # In flight at the outage: signed and broadcast, but the chain mines nothing more.
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    for r in reports[5:8]:
        post(sessions, kit, r)
    assert poster.pump().signed == 3
    assert w3.eth.get_transaction_count(relayer.address, "pending") == mined_before + 3
    assert w3.eth.get_transaction_count(relayer.address) == mined_before  # none of them mined
    port = anvil.port
    anvil.stop()  # SIGINT: anvil writes its state file; its mempool is gone
    outage_started = time.monotonic()
    errors = 0
    created_during_outage = False
    while time.monotonic() - outage_started < 30:
        if not created_during_outage and time.monotonic() - outage_started > 5:
            for r in reports[8:]:
                post(sessions, kit, r)  # decided and queued while the chain is unreachable
            created_during_outage = True
        errors += poster.pump().transient_errors
        with sessions() as s:
            for row in s.scalars(select(OutboxRow)):
                row.next_attempt_at = None  # keep knocking every second rather than backing off to 30 s
            s.commit()
        time.sleep(1.0)
    assert errors >= 20  # the poster kept trying, and recorded each failure instead of crashing
    with sessions() as s:
        assert sum(r.status != "confirmed" for r in s.scalars(select(OutboxRow))) == 5  # all five crossing

    restarted = start_anvil(port=port, state_file=state)
    try:
        assert w3.eth.get_transaction_count(relayer.address) == mined_before  # nothing landed while down
        poster.run_until_settled(timeout=60)
        with sessions() as s:
            rows = s.scalars(select(OutboxRow)).all()
            assert {r.status for r in rows} == {"confirmed"}
            assert len(rows) == 10
        accepted = kit.router.events.ReportAccepted().get_logs(from_block=dep.block)
        assert sorted(bytes(e["args"]["subject"]) for e in accepted) == sorted(r.subject for r in reports)
        paid = kit.pool.events.PayoutSent().get_logs(from_block=dep.block)
        assert sorted(int(e["args"]["policyId"]) for e in paid) == sorted(
            {int(e["args"]["policyId"]) for e in paid}
        )
        assert len(paid) == 10
        # One transaction per report: the in-flight ones were re-sent as the same bytes, not re-signed.
        assert w3.eth.get_transaction_count(relayer.address) == mined_before + 5
    finally:
        restarted.stop()
