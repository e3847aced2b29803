"""The outbox never wedges: the review's reproduction and a chaos run on a real anvil of its own.

The run combines, in this order: a poster that crashes right after signing row 1; a foreign
transaction (the transmitter key used elsewhere) that takes row 1's nonce; a restarted poster that
crashes right after signing row 2; a base-fee spike while no poster runs
(``anvil_setNextBlockBaseFeePerGas``), which leaves row 2's stored bytes below the base fee; and the
RPC failing for 30 s (a TCP proxy in front of anvil cut) as the next poster starts. Every report must
then land exactly once, and the transmitter's nonces must run without a gap.

A "crash" here is the poster's test hook raising at the step boundary: the database is left exactly as
a process killed there leaves it (the signed row committed, nothing broadcast), which
tests/outbox/test_reliability.py checks with real SIGKILLs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from oracle.chain.client import connect
from oracle.chain.outbox import OutboxPoster
from oracle.storage.tables import OutboxRow
from tests.fixtures.chain import Accounts
from tests.network.cluster import TcpProxy
from tests.outbox.helpers import drought_report, open_db, own_chain, post, sqlite_url

pytestmark = [pytest.mark.chain, pytest.mark.slow]

GWEI = 10**9


class _Crash(Exception):
    """The poster process dies here."""


def _crash_after(step: str) -> object:
    def hook(name: str, row: OutboxRow) -> None:
        if name == step:
            raise _Crash(f"crashed right after {step} (row {row.id}, nonce {row.nonce})")

    return hook


def _rows(sessions: object) -> list[OutboxRow]:
    with sessions() as s:  # type: ignore[operator]
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def test_crash_after_signing_fee_spike_foreign_nonce_and_rpc_down_30s_every_report_lands_once(
    tmp_path: Path, accounts: Accounts, oracle_keys: tuple[LocalAccount, ...]
) -> None:
    with own_chain(accounts, oracle_keys) as (anvil, kit):
        w3, dep = kit.w3, kit.deployment
        relayer = accounts.relayer
        sessions = open_db(sqlite_url(tmp_path))
        reports = [drought_report(f"chaos-{i}", epoch=1, severity=3.0) for i in range(6)]
        for r in reports:
            post(sessions, kit, r)
        first = w3.eth.get_transaction_count(relayer.address)
        proxy = TcpProxy(anvil.port)
        via_proxy = connect(proxy.url)

        # 1. Crash right after signing row 1: its nonce is reserved and its bytes stored, never sent.
        with pytest.raises(_Crash):
            OutboxPoster(sessions, via_proxy, relayer, hook=_crash_after("signed")).pump()  # type: ignore[arg-type]
        row1 = _rows(sessions)[0]
        assert (row1.status, row1.nonce) == ("signed", first)
        assert w3.eth.get_transaction_count(relayer.address, "pending") == first

        # 2. A foreign transaction takes that nonce (the key used from an operator's wallet).
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])  # type: ignore[arg-type]
        foreign = relayer.sign_transaction(
            {
                "type": 2,
                "chainId": w3.eth.chain_id,
                "nonce": first,
                "to": relayer.address,
                "value": 0,
                "gas": 21_000,
                "maxFeePerGas": base * 4 + GWEI,
                "maxPriorityFeePerGas": GWEI,
            }
        )
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(foreign.raw_transaction))

        # 3. Restarted, the poster finds row 1's nonce used, and crashes right after signing row 2.
        with pytest.raises(_Crash):
            OutboxPoster(sessions, via_proxy, relayer, hook=_crash_after("signed")).pump()  # type: ignore[arg-type]
        row1, row2 = _rows(sessions)[:2]
        assert row1.status == "sent"  # refused as "nonce too low": the receipt check decides
        assert (row2.status, row2.nonce) == ("signed", first + 1)

        # 4. While no poster runs, the base fee jumps 50-fold: row 2's stored bytes are now underpriced.
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(base * 50)])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        spiked = int(w3.eth.get_block("latest")["baseFeePerGas"])  # type: ignore[arg-type]
        assert int(row2.max_fee or 0) < spiked

        # 5. The next poster starts while the RPC fails, for 30 s.
        poster = OutboxPoster(sessions, via_proxy, relayer)
        proxy.cut()
        down = time.monotonic()
        errors = 0
        while time.monotonic() - down < 30:
            errors += poster.pump().transient_errors
            time.sleep(0.5)
        assert errors >= 3  # it kept trying (with backoff) and recorded each failure, without crashing
        assert all(r.last_error for r in _rows(sessions)[:1])
        assert w3.eth.get_transaction_count(relayer.address) == first + 1  # only the foreign one
        proxy.mend()
        settled = poster.run_until_settled(timeout=120)
        assert settled.open == 0

        rows = _rows(sessions)
        assert [r.status for r in rows] == ["confirmed"] * 6
        assert "taken by a foreign transaction" in (rows[0].last_error or "")
        assert rows[1].nonce == first + 1
        assert rows[1].replacements >= 1  # re-priced with its nonce kept
        # Exactly once: one ReportAccepted per report (what a subscriber pays on).
        accepted = kit.router.events.ReportAccepted().get_logs(from_block=dep.block)
        assert sorted(bytes(e["args"]["subject"]) for e in accepted) == sorted(r.subject for r in reports)
        # No gap: the account's nonces first .. first+6 were each used once (1 foreign + 6 reports), and
        # the rows hold exactly the six after the foreign one.
        assert w3.eth.get_transaction_count(relayer.address) == first + 7
        assert sorted(r.nonce for r in rows) == list(range(first + 1, first + 7))
        for r in rows:
            receipt = w3.eth.get_transaction_receipt(r.tx_hash)  # type: ignore[arg-type]
            assert receipt["status"] == 1
        proxy.cut()
