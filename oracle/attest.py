"""From a decided report to a queued transaction: record → signatures → outbox.

:func:`attest` is resumable and idempotent: every step first looks for what an earlier, interrupted call
left behind. The report row (unique on subject and epoch) is written before any signature is asked for;
the signer re-signs an identical report for the same epoch and refuses a different one; the outbox row is
keyed ``report:<subject>:<epoch>``. So calling it again after a crash, or twice by mistake, ends with one
report, one transaction.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3

from oracle.chain.client import encode_signatures
from oracle.chain.outbox import TxIntent, enqueue
from oracle.errors import ValidationError
from oracle.reports import Report, ReportKind
from oracle.signer.client import Signer, collect_signatures
from oracle.storage.tables import OutboxRow, ReportRow

log = logging.getLogger(__name__)

#: Gas for the router's submit: verification plus forwarding to subscribers, each with a bounded stipend.
REPORT_GAS_LIMIT = 0  # 0 = estimate; the poster adds headroom


@dataclass(frozen=True)
class Attestation:
    report_id: int
    outbox_id: int
    outbox_key: str
    created: bool


def outbox_key(report: Report) -> str:
    return f"report:0x{report.subject.hex()}:{report.epoch}"


def report_row_values(report: Report) -> dict[str, Any]:
    return {
        "subject": "0x" + report.subject.hex(),
        "kind": int(report.kind),
        "value": str(report.value),
        "epoch": report.epoch,
        "observed_at": report.observed_at,
        "inputs_root": "0x" + report.inputs_root.hex(),
        "model_id": "0x" + report.model_id.hex(),
    }


def row_to_report(row: ReportRow) -> Report:
    return Report(
        subject=bytes.fromhex(row.subject[2:]),
        kind=ReportKind(row.kind),
        value=int(row.value),
        epoch=row.epoch,
        observed_at=row.observed_at,
        inputs_root=bytes.fromhex(row.inputs_root[2:]),
        model_id=bytes.fromhex(row.model_id[2:]),
    )


def next_epoch(session: Session, subject: bytes, *, chain_latest: int = 0) -> int:
    """One above the highest epoch known for ``subject`` locally or on-chain."""
    local = session.scalar(select(func.max(ReportRow.epoch)).where(ReportRow.subject == "0x" + subject.hex()))
    return max(int(local or 0), chain_latest) + 1


def record_report(
    session: Session, report: Report, *, subject_name: str = "", detail: dict[str, Any] | None = None
) -> tuple[ReportRow, bool]:
    """Insert the report row, or return the identical one already there. A different report with the
    same subject and epoch is refused: an epoch names exactly one report, forever."""
    report.check_value_range()
    values = report_row_values(report)
    existing = session.scalar(
        select(ReportRow).where(ReportRow.subject == values["subject"], ReportRow.epoch == report.epoch)
    )
    if existing is not None:
        if row_to_report(existing) != report:
            raise ValidationError(
                f"subject {subject_name or values['subject']} already has a different report for epoch "
                f"{report.epoch}; reports are immutable, use a higher epoch",
                reason="epoch_conflict",
            )
        return existing, False
    row = ReportRow(**values, subject_name=subject_name, status="pending", detail=detail or {})
    session.add(row)
    session.flush()
    return row, True


def store_report(
    sessions: sessionmaker[Session],
    report: Report,
    *,
    subject_name: str = "",
    detail: dict[str, Any] | None = None,
) -> tuple[int, bool]:
    """:func:`record_report` in a transaction of its own, committed; returns (row id, created).

    Two callers recording the same report at once (the scheduler and an operator's request, two API
    workers) both find no row and both insert: the loser's commit hits the unique (subject, epoch)
    constraint. It then reads the winner's row, which is the same report (or a conflicting one, refused
    as ``epoch_conflict``), instead of failing with a database error.
    """
    for attempt in (1, 2):
        with sessions() as s:
            try:
                row, created = record_report(s, report, subject_name=subject_name, detail=detail)
                s.commit()
            except DbIntegrityError:
                s.rollback()
                if attempt == 2:
                    raise
                continue
            return row.id, created
    raise AssertionError("unreachable")


def attest(
    sessions: sessionmaker[Session],
    report: Report,
    *,
    signers: Sequence[Signer],
    threshold: int,
    chain_id: int,
    router: str,
    subject_name: str = "",
    detail: dict[str, Any] | None = None,
) -> Attestation:
    """Record ``report``, gather ``threshold`` signatures and queue the router transaction."""
    report_id, created = store_report(sessions, report, subject_name=subject_name, detail=detail)
    with sessions() as s:
        queued = s.scalar(select(OutboxRow).where(OutboxRow.key == outbox_key(report)))
        if queued is not None:
            return Attestation(report_id, queued.id, queued.key, created)
    signed = collect_signatures(signers, report, chain_id=chain_id, router=router, threshold=threshold)
    signatures = encode_signatures((sr.signer, sr.signature) for sr in signed)
    calldata = submit_calldata(report, signatures)
    with sessions() as s:
        row_ = s.get(ReportRow, report_id)
        assert row_ is not None
        row_.detail = {**row_.detail, "signers": [sr.signer for sr in signed]}
        row_.status = "queued"
        out = enqueue(
            s,
            TxIntent(
                key=outbox_key(report),
                purpose="report",
                to=router,
                calldata=calldata,
                gas_limit=REPORT_GAS_LIMIT,
                report_id=report_id,
            ),
        )
        s.commit()
        log.info(
            "report queued subject=%s epoch=%s kind=%s outbox=%s",
            subject_name or row_.subject,
            report.epoch,
            report.kind.name,
            out.key,
        )
        return Attestation(report_id, out.id, out.key, created)


@functools.cache
def _router_abi_encoder() -> Any:
    from oracle.chain.artifacts import load_artifact

    return Web3().eth.contract(abi=list(load_artifact("OracleRouter").abi))


def submit_calldata(report: Report, signatures: bytes) -> bytes:
    """ABI-encoded ``OracleRouter.submit(report, signatures)``."""
    data = _router_abi_encoder().encode_abi("submit", args=[report.as_tuple(), signatures])
    return bytes.fromhex(str(data)[2:])
