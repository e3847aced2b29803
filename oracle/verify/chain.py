"""Finding an attestation: the report row and its manifest in the database, the accepted report on-chain.

An attestation is named by the report row id (``42``) or by the hash of the transaction that carried it
(``0x`` + 64 hex). Either way the report is read back from the router's ``ReportAccepted`` event, so what
is verified is what the chain accepted, not what the database says was sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eth_utils.address import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from oracle.chain.artifacts import load_artifact
from oracle.chain.client import translate_errors
from oracle.errors import NotFound, ValidationError
from oracle.reports import Report, ReportKind
from oracle.storage.tables import OutboxRow, ReportRow
from oracle.verify.replay import AttestedReport

_TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Located:
    """The report row and where its manifest is."""

    report_id: int
    manifest_cid: str
    tx_hash: str


def locate(sessions: sessionmaker[Session], attestation: str) -> Located:
    """Resolve a report row id or a transaction hash to the report row, its manifest and its tx.

    :raises ValidationError: neither an id nor a tx hash. :raises NotFound: unknown, not posted yet, or
        not a decision with a manifest.
    """
    with sessions() as s:
        row: ReportRow | None
        tx_hash: str | None = None
        if attestation.isdigit():
            row = s.get(ReportRow, int(attestation))
            if row is None:
                raise NotFound(f"no report with id {attestation}")
        elif _TX_HASH.match(attestation):
            tx_hash = attestation.lower()
            out = s.scalar(select(OutboxRow).where(OutboxRow.tx_hash == tx_hash))
            if out is None or out.report_id is None:
                raise NotFound(f"no report was posted in transaction {tx_hash}")
            row = s.get(ReportRow, out.report_id)
            if row is None:
                raise NotFound(f"transaction {tx_hash} names a report that is not in the database")
        else:
            raise ValidationError(
                f"attestation {attestation!r} must be a report id or a 0x-prefixed transaction hash",
                reason="bad_attestation",
            )
        manifest = (row.detail or {}).get("manifest_cid")
        if not manifest:
            raise NotFound(f"report {row.id} has no decision manifest (it was not made by a decision)")
        if tx_hash is None:
            out = s.scalar(select(OutboxRow).where(OutboxRow.report_id == row.id))
            if out is None or not out.tx_hash or out.status != "confirmed":
                status = out.status if out is not None else "not queued"
                raise NotFound(f"report {row.id} is not confirmed on-chain yet (outbox: {status})")
            tx_hash = out.tx_hash
        return Located(report_id=row.id, manifest_cid=str(manifest), tx_hash=tx_hash)


def read_attested(w3: Web3, *, router: str, tx_hash: str) -> AttestedReport:
    """The report ``router`` accepted in ``tx_hash``, from its ``ReportAccepted`` event.

    Events from any other contract are ignored: anyone can deploy a look-alike router.
    :raises NotFound: no such transaction, or it carries no report accepted by ``router``.
    """
    contract = w3.eth.contract(
        address=to_checksum_address(router), abi=list(load_artifact("OracleRouter").abi)
    )
    with translate_errors(f"read transaction {tx_hash}"):
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            raise NotFound(f"transaction {tx_hash} is not on this chain") from None
        chain_id = int(w3.eth.chain_id)
    logs = [
        log
        for log in contract.events.ReportAccepted().process_receipt(receipt, errors=DISCARD)
        if to_checksum_address(log["address"]) == contract.address
    ]
    if not logs:
        raise NotFound(f"transaction {tx_hash} carries no report accepted by router {contract.address}")
    args = logs[0]["args"]
    report = Report(
        subject=bytes(args["subject"]),
        kind=ReportKind(int(args["kind"])),
        value=int(args["value"]),
        epoch=int(args["epoch"]),
        observed_at=int(args["observedAt"]),
        inputs_root=bytes(args["inputsRoot"]),
        model_id=bytes(args["modelId"]),
    )
    return AttestedReport(
        report=report,
        chain_id=chain_id,
        router=contract.address,
        tx_hash=tx_hash,
        block_number=int(receipt["blockNumber"]),
        report_hash=bytes(args["reportHash"]),
    )


def router_for(sessions: sessionmaker[Session], tx_hash: str) -> str:
    """The router the oracle sent ``tx_hash`` to (from the outbox). :raises NotFound: unknown tx."""
    with sessions() as s:
        out = s.scalar(select(OutboxRow).where(OutboxRow.tx_hash == tx_hash))
        if out is None:
            raise NotFound(f"transaction {tx_hash} was not sent by this oracle")
        return to_checksum_address(out.to_address)
