"""Filing disputes on-chain for ``oracle watch --dispute-key`` (issue 14): durable and exactly once.

A drought report is disputed on the DroughtInsurancePool (``--pool``), a cold-chain verdict on the
ColdChainEscrow (``--escrow``; the report's subject is the shipment id); both take the same
``dispute(subject, epoch, evidenceCid)``. On a MISMATCH the watcher asks
:meth:`DisputeFiler.disputable` whether the consumer can still take a dispute of the report: on the
pool, disputes on, the pool holds that revision, the region's liveness window still open, nobody
disputed it yet; on the escrow, the shipment open with a dispute bond, that verdict held and its window
open, nobody disputed it yet. If so, :meth:`DisputeFiler.file` writes two rows in one database
transaction to an outbox of the watcher's own (SQLite under its state directory, the service's
:class:`~oracle.chain.outbox.OutboxPoster` and schema): ``approve(consumer, bond)`` on the bond's token
(the pool's token, or the shipment's) and ``dispute(subject, epoch, evidenceCid)``. Both start
``held``; :meth:`DisputeFiler.pump` releases them one pair at a time (the approve, then its dispute
once the approve is confirmed), so an allowance is never consumed by another dispute and the dispute's
gas estimate sees the allowance.

Rows are keyed by (subject, epoch), so a watcher killed at any moment and restarted neither loses the
dispute (the cursor passes a report only after its rows are stored) nor files it twice (the rows exist
already; the outbox re-sends the same signed bytes). The key is the watcher's own funded account; it is
never logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from sqlalchemy import select
from web3 import Web3

from oracle.chain.outbox import OPEN_STATES, OutboxPoster, TxIntent, enqueue
from oracle.errors import OracleError
from oracle.reports import MAX_REVISIONS, ReportKind
from oracle.storage import migrate
from oracle.storage.db import make_engine, session_factory
from oracle.storage.tables import OutboxRow

log = logging.getLogger(__name__)

#: Longest one pass waits for its approve and dispute to be confirmed, seconds.
PUMP_BUDGET_S = 5.0
APPROVE = "dispute-approve"
DISPUTE = "dispute"
HELD = "held"
#: Environment variable holding the password of a JSON keystore given as ``--dispute-key``.
PASSWORD_ENV = "ORACLE_WATCH_KEY_PASSWORD"  # noqa: S105 - the variable's name, not a password

_APPROVE_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "approve",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


def load_key(path: Path) -> LocalAccount:
    """The watcher's account from ``path``: a hex private key, or a JSON keystore whose password is in
    ``$ORACLE_WATCH_KEY_PASSWORD``. Errors never quote the file."""
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise OracleError(f"cannot read the dispute key file {path}: {e.strerror}") from None
    try:
        if text.startswith("{"):
            password = os.environ.get(PASSWORD_ENV)
            if password is None:
                raise OracleError(f"{path} is a keystore: set {PASSWORD_ENV} to its password")
            account: LocalAccount = Account.from_key(Account.decrypt(json.loads(text), password))
        else:
            account = Account.from_key(text)
    except OracleError:
        raise
    except Exception:  # noqa: BLE001 - whatever is wrong with the key, its bytes are never shown
        raise OracleError(f"{path} holds no usable private key or keystore") from None
    return account


#: ColdChainEscrow.Status.Open, and the fields of ``shipment(id)`` the filer reads.
_OPEN = 1
_STATUS, _TOKEN, _BOND = 2, 4, 10


class DisputeFiler:
    """Queues and sends ``dispute`` (with its ``approve``) through a durable outbox of its own, on the
    pool (drought reports) and/or the escrow (cold-chain verdicts)."""

    def __init__(
        self,
        w3: Web3,
        *,
        pool: str | None = None,
        escrow: str | None = None,
        account: LocalAccount,
        db_path: Path,
        confirmations: int = 1,
    ) -> None:
        from oracle.chain.artifacts import load_artifact

        if pool is None and escrow is None:
            raise OracleError("a dispute filer needs the pool, the escrow or both")
        self.w3 = w3
        self.account = account
        self.pool = (
            w3.eth.contract(
                address=to_checksum_address(pool), abi=list(load_artifact("DroughtInsurancePool").abi)
            )
            if pool is not None
            else None
        )
        self.escrow = (
            w3.eth.contract(
                address=to_checksum_address(escrow), abi=list(load_artifact("ColdChainEscrow").abi)
            )
            if escrow is not None
            else None
        )
        self.token = (
            w3.eth.contract(address=self.pool.functions.token().call(), abi=_APPROVE_ABI)
            if self.pool is not None
            else None
        )
        url = f"sqlite:///{db_path}"
        db_path.parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(url)
        self.sessions = session_factory(make_engine(url))
        self.poster = OutboxPoster(self.sessions, w3, account, confirmations=confirmations)

    def disputable(
        self, subject: bytes, epoch: int, tx_hash: str, *, kind: int = ReportKind.DROUGHT_SEVERITY
    ) -> str | None:
        """Why the consumer of a ``kind`` report would refuse a dispute of (subject, epoch) now, or None
        if it would take it."""
        if kind == ReportKind.COLDCHAIN_VERDICT:
            return self._escrow_disputable(subject, epoch)
        if self.pool is None:
            return "no pool to dispute on (--pool)"
        pool = self.pool.functions
        if int(pool.disputeBond().call()) == 0:
            return "the pool takes no disputes (bond 0)"
        known, revision, *_ = pool.observation(subject, epoch // MAX_REVISIONS).call()
        if not known or int(revision) != epoch % MAX_REVISIONS:
            return "the pool does not hold this revision"
        if int(pool.disputeOf(subject, epoch).call()[2]) != 0:
            return "already disputed"
        block = self.w3.eth.get_transaction_receipt(HexStr(tx_hash))["blockNumber"]
        arrived = int(self.w3.eth.get_block(block)["timestamp"])
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        if now >= arrived + int(pool.regionLiveness(subject).call()):
            return "outside the liveness window"
        return None

    def _escrow_disputable(self, subject: bytes, epoch: int) -> str | None:
        if self.escrow is None:
            return "no escrow to dispute on (--escrow)"
        escrow = self.escrow.functions
        shipment = escrow.shipment(subject).call()
        if int(shipment[_STATUS]) != _OPEN:
            return "the shipment is not open in the escrow"
        if int(shipment[_BOND]) == 0:
            return "the shipment takes no disputes (bond 0)"
        (value, held_epoch, _arrived), releasable_at = escrow.heldVerdict(subject).call()
        if int(value) == 0 or int(held_epoch) != epoch:
            return "the escrow does not hold this verdict"
        if int(escrow.disputeOf(subject, epoch).call()[2]) != 0:
            return "already disputed"
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        if now >= int(releasable_at):
            return "outside the liveness window"
        return None

    def file(
        self, subject: bytes, epoch: int, evidence_cid: str, *, kind: int = ReportKind.DROUGHT_SEVERITY
    ) -> bool:
        """Store the approve and the dispute (held); False when they were stored before."""
        tag = f"0x{subject.hex()}:{epoch}"
        if kind == ReportKind.COLDCHAIN_VERDICT:
            if self.escrow is None:
                raise OracleError("no escrow to dispute on")
            consumer = self.escrow
            shipment = consumer.functions.shipment(subject).call()
            bond = int(shipment[_BOND])
            token = self.w3.eth.contract(address=shipment[_TOKEN], abi=_APPROVE_ABI)
        else:
            if self.pool is None or self.token is None:
                raise OracleError("no pool to dispute on")
            consumer, token = self.pool, self.token
            bond = int(consumer.functions.disputeBond().call())
        approve = token.functions.approve(consumer.address, bond)._encode_transaction_data()
        dispute = consumer.functions.dispute(subject, epoch, evidence_cid)._encode_transaction_data()
        with self.sessions() as s:
            if s.scalar(select(OutboxRow.id).where(OutboxRow.key == f"{DISPUTE}:{tag}")) is not None:
                return False
            for purpose, to, data in (
                (APPROVE, token.address, approve),
                (DISPUTE, consumer.address, dispute),
            ):
                row = enqueue(
                    s,
                    TxIntent(
                        key=f"{purpose}:{tag}", purpose=purpose, to=to, calldata=bytes.fromhex(data[2:])
                    ),
                )
                row.status = HELD
            s.commit()
        log.info(
            "watch: dispute queued subject=0x%s epoch=%s evidence=%s bond=%s",
            subject.hex(),
            epoch,
            evidence_cid,
            bond,
        )
        return True

    def pump(self) -> int:
        """Release and send queued rows; returns how many disputes were confirmed on-chain by this pass."""
        before = self._confirmed()
        # approve: send, confirm; dispute: send, confirm. A node may serve a receipt a moment after it
        # mined the transaction, so the pass waits a little between pumps, within PUMP_BUDGET_S.
        deadline = time.monotonic() + PUMP_BUDGET_S
        while True:
            self._release()
            result = self.poster.pump()
            if result.open == 0 and not self._release():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        filed = self._confirmed() - before
        for key in sorted(filed):
            log.warning("watch: dispute filed %s", key)
        return len(filed)

    def _confirmed(self) -> set[str]:
        with self.sessions() as s:
            return set(
                s.scalars(
                    select(OutboxRow.key).where(OutboxRow.purpose == DISPUTE, OutboxRow.status == "confirmed")
                ).all()
            )

    def _release(self) -> bool:
        """Move the next held row to ``pending``: a dispute whose approve is confirmed; else, when no
        approve or dispute is in flight, the oldest held approve. A dispute whose approve reverted fails."""
        with self.sessions() as s:
            rows = s.scalars(
                select(OutboxRow).where(OutboxRow.purpose.in_((APPROVE, DISPUTE))).order_by(OutboxRow.id)
            ).all()
            by_key = {r.key: r for r in rows}
            changed = False
            for row in rows:
                if row.purpose != DISPUTE or row.status != HELD:
                    continue
                approve = by_key.get(APPROVE + row.key[len(DISPUTE) :])
                if approve is None or approve.status == "confirmed":
                    row.status, changed = "pending", True
                elif approve.status in ("reverted", "failed"):
                    row.status, row.last_error, changed = "failed", "its approve did not go through", True
            in_flight = any(r.status in OPEN_STATES for r in rows) or changed
            if not in_flight:
                held = [r for r in rows if r.purpose == APPROVE and r.status == HELD]
                if held:
                    held[0].status, changed = "pending", True
            if changed:
                s.commit()
            return changed
