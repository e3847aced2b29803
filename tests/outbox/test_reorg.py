"""The listener detects a reorg from the block hash it stored, on a real anvil of its own.

The chain is reorganised with ``evm_snapshot``/``evm_revert``: two reports are mined and applied, the
chain goes back to before them, one of the two transactions is mined again (a re-included
transaction, the common case) and the other never returns, and the new chain grows past the old head.
"""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from oracle.chain.listener import ChainListener
from oracle.chain.outbox import OutboxPoster
from oracle.storage.tables import ChainCursor, ChainEvent, OutboxRow, Reject
from tests.fixtures.chain import Accounts
from tests.outbox.helpers import drought_report, open_db, own_chain, post, sqlite_url


def test_a_reorg_deeper_than_the_confirmations_is_detected_and_the_new_chain_applied(
    tmp_path: Path, accounts: Accounts, oracle_keys: tuple[LocalAccount, ...]
) -> None:
    with own_chain(accounts, oracle_keys) as (_anvil, kit):
        w3, dep = kit.w3, kit.deployment
        sessions = open_db(sqlite_url(tmp_path))
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        kept, dropped = (
            drought_report("reorg-kept", epoch=1, severity=2.0),
            drought_report("reorg-dropped", epoch=1, severity=2.0),
        )
        post(sessions, kit, kept)
        post(sessions, kit, dropped)
        OutboxPoster(sessions, w3, accounts.relayer).run_until_settled(timeout=30)
        listener = ChainListener(sessions, w3, dep, confirmations=1, idle_final_s=0.0)
        listener.poll()
        with sessions() as s:
            applied = s.scalars(select(ChainEvent).where(ChainEvent.block_number > dep.block)).all()
            before = {e.tx_hash: e.block_hash for e in applied if e.name == "ReportAccepted"}
            assert len(before) == 2
            kept_row = s.scalars(select(OutboxRow).order_by(OutboxRow.id)).first()
            assert kept_row is not None
            raw_kept = bytes(kept_row.raw_tx or b"")
            kept_tx = kept_row.tx_hash

        # The reorg: back to before both, the first transaction mined again, the second gone for good.
        assert w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw_kept))
        for _ in range(3):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        listener.poll()
        assert listener.reorgs == 1
        with sessions() as s:
            events = s.scalars(select(ChainEvent).where(ChainEvent.block_number > dep.block)).all()
            rejects = s.scalars(select(Reject).where(Reject.reason == "reorg_orphaned")).all()
            cursor = s.get(ChainCursor, "contracts")
        # The re-included report is applied once, from its block on the new chain.
        assert [(e.name, e.tx_hash) for e in events] == [("ReportAccepted", kept_tx)]
        new_block = w3.eth.get_transaction_receipt(kept_tx)["blockHash"]  # type: ignore[arg-type]
        assert events[0].block_hash == "0x" + bytes(new_block).hex()
        assert events[0].block_hash != before[kept_tx]
        # Both applied copies from the old chain are recorded as orphaned, with their whole event.
        assert sorted(r.subject for r in rejects) == sorted(before)
        assert {r.meta["block_hash"] for r in rejects} == set(before.values())
        assert all(r.source == "chain" and r.meta["name"] == "ReportAccepted" for r in rejects)
        # The cursor stands on the new chain.
        assert cursor is not None
        assert cursor.block_hash == "0x" + bytes(w3.eth.get_block(cursor.block)["hash"]).hex()
        assert listener.poll() == 0  # settled: nothing re-applied twice
        assert listener.reorgs == 1
