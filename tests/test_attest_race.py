"""Two callers attesting the same report at the same moment (the scheduler and an operator's request)
get the same attestation; neither fails on the database's unique constraints.

The race is forced, not hoped for: each thread waits at a barrier just before it inserts the report row,
so both have looked, found nothing, and insert together.
Runs on SQLite and on the real PostgreSQL.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eth_account import Account
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from oracle.attest import Attestation, attest
from oracle.reports import ReportKind, subject_id
from oracle.signer.client import LocalSigner
from oracle.storage.tables import OutboxRow, ReportRow
from tests.fixtures.chain import make_report
from tests.outbox.helpers import open_db

ROUTER = "0x" + "44" * 20


def test_the_same_report_attested_twice_at_once_is_one_report_and_one_transaction(database_url: str) -> None:
    sessions = open_db(database_url)
    if database_url.startswith("postgresql"):
        with sessions() as s:  # the shared database may hold this subject from an earlier run
            s.query(OutboxRow).delete()
            s.query(ReportRow).where(ReportRow.subject == "0x" + subject_id("region", "race").hex()).delete()
            s.commit()
    # Only the report insert can race: before queueing, each caller updates that one report row, so
    # the second waits for the first's commit (row lock; SQLite's single writer) and then finds its
    # outbox row.
    barriers = {"ReportRow": threading.Barrier(2)}
    waited: dict[int, set[str]] = {}

    def before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
        mine = waited.setdefault(threading.get_ident(), set())
        for kind, barrier in barriers.items():
            if kind not in mine and any(type(o).__name__ == kind for o in session.new):
                mine.add(kind)
                barrier.wait(timeout=20)

    event.listen(sessions, "before_flush", before_flush)
    report = make_report(
        subject_id("region", "race"), kind=ReportKind.DROUGHT_SEVERITY, value=2_000_000, epoch=3
    )
    signers = [LocalSigner(bytes(Account.create().key)) for _ in range(2)]

    def call() -> Attestation:
        return attest(sessions, report, signers=signers, threshold=2, chain_id=31337, router=ROUTER)

    with ThreadPoolExecutor(2) as pool:
        a, b = (f.result(timeout=60) for f in [pool.submit(call), pool.submit(call)])
    assert not any(b.broken for b in barriers.values())  # both really inserted together, each time
    assert (a.report_id, a.outbox_id) == (b.report_id, b.outbox_id)
    assert sorted([a.created, b.created]) == [False, True]  # one of them created it
    with sessions() as s:
        assert (
            len(s.scalars(select(ReportRow).where(ReportRow.subject == "0x" + report.subject.hex())).all())
            == 1
        )
        assert len(s.scalars(select(OutboxRow).where(OutboxRow.key == a.outbox_key)).all()) == 1
