"""The durable transaction outbox: every transaction the oracle owes the chain, posted exactly once.

A row is written before anything is signed. The poster then moves each row through::

    pending ──(estimate, nonce, sign, store raw bytes)──► signed ──(broadcast)──► sent ──► confirmed
        │                                                   ▲                       │
        └──(estimate reverts: decoded reason)──► reverted   └──(stuck: same nonce, ─┘──► reverted
                                                               bumped fee, capped)     (receipt status 0)

Guarantees, each covered by a test:

* nonce assignment, signing and storing the raw bytes happen in one database transaction, so after a
  crash the row is either still ``pending`` (nothing was signed for it) or ``signed`` with the exact
  bytes to send: a retry re-sends those bytes, never a second, different transaction;
* a stuck transaction is replaced with the same nonce and a fee bumped by ``bump_percent`` (capped), and
  receipts are looked up for every hash the row ever had, so whichever version is mined counts once;
* a receipt that disappears in a reorg before ``confirmations`` blocks sends the row back to
  re-broadcasting the same bytes;
* a broadcast refused because the max fee is below the block's base fee (signed before a base-fee
  spike, e.g. by a poster that crashed right after signing) is re-signed with the same nonce at a fee
  priced from the current base fee, so the row cannot sit in ``signed`` with every later nonce behind it;
* a nonce used by a foreign transaction (the same key used elsewhere), once that block is settled and
  no version of the row has a receipt, moves the row to a fresh nonce: the old nonce is spent, so no
  earlier version can land, and the router refuses a second report for the same (subject, epoch);
* an unreachable RPC is recorded and retried with backoff; nothing is lost;
* a revert is recorded with its decoded reason and not retried blindly.

The sender key here is the *transmitter*: it pays gas and nothing else. Reports are authorised by the
signer service's EIP-712 signatures, which the router checks; a stolen transmitter key cannot forge one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from web3 import Web3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

from oracle.chain.client import decode_revert
from oracle.storage.tables import NonceRow, OutboxRow, utcnow

log = logging.getLogger(__name__)

GWEI = 10**9
OPEN_STATES = ("pending", "signed", "sent")

#: Errors that mean "the RPC did not answer usefully": retry later, change nothing.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    TimeExhausted,
    ConnectionError,
    TimeoutError,
    OSError,
)


@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 fees. ``bump_percent`` must be ≥ 10 for nodes to accept a replacement."""

    priority_fee: int = 1 * GWEI
    base_fee_multiplier: int = 2
    max_fee_cap: int = 500 * GWEI
    bump_percent: int = 20
    stuck_after_s: float = 30.0
    rebroadcast_every_s: float = 5.0
    max_replacements: int = 10
    #: How long a sent row must have gone without a receipt before its nonce, seen used, is taken to be a
    #: foreign transaction's: a node can count a nonce as used a moment before it serves the receipt.
    foreign_nonce_after_s: float = 10.0


@dataclass(frozen=True)
class TxIntent:
    """What to send: ``key`` makes it idempotent (e.g. ``report:<subject>:<epoch>``)."""

    key: str
    purpose: str
    to: str
    calldata: bytes
    gas_limit: int = 0
    report_id: int | None = None


@dataclass
class PumpResult:
    signed: int = 0
    sent: int = 0
    confirmed: int = 0
    reverted: int = 0
    replaced: int = 0
    transient_errors: int = 0
    open: int = 0
    events: list[str] = field(default_factory=list)


def enqueue(session: Session, intent: TxIntent) -> OutboxRow:
    """Insert the intent unless its key exists; return the row either way. Caller commits."""
    existing = session.scalar(select(OutboxRow).where(OutboxRow.key == intent.key))
    if existing is not None:
        return existing
    row = OutboxRow(
        key=intent.key,
        purpose=intent.purpose,
        report_id=intent.report_id,
        to_address=Web3.to_checksum_address(intent.to),
        calldata=intent.calldata,
        gas_limit=intent.gas_limit,
        status="pending",
        previous_hashes=[],
    )
    session.add(row)
    session.flush()
    return row


def reserve_nonce(session: Session, *, chain_id: int, address: str, chain_pending: int) -> int:
    """Take the next nonce for ``address``; the caller's commit makes it permanent.

    The database's counter wins over the chain's pending count when it is ahead (nonces assigned to
    signed-but-unsent rows); the chain's wins when someone else used the account.
    """
    stmt = select(NonceRow).where(NonceRow.chain_id == chain_id, NonceRow.address == address)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        row = NonceRow(chain_id=chain_id, address=address, next_nonce=chain_pending)
        session.add(row)
    nonce = max(row.next_nonce, chain_pending)
    row.next_nonce = nonce + 1
    return nonce


class OutboxPoster:
    """Moves outbox rows towards ``confirmed``. One active poster per sender (the scheduler's leader)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        w3: Web3,
        account: LocalAccount,
        *,
        confirmations: int = 1,
        fees: FeePolicy | None = None,
        clock: Callable[[], float] = time.time,
        hook: Callable[[str, OutboxRow], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.w3 = w3
        self.account = account
        self.confirmations = max(1, confirmations)
        self.fees = fees or FeePolicy()
        self.clock = clock
        # Test seam: called at each step boundary ("signed", "sent", ...) so a harness can crash there.
        self.hook = hook
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # -- the pump -------------------------------------------------------------------------------

    def pump(self) -> PumpResult:
        """One pass over every open row, oldest first. RPC trouble is counted, never raised."""
        result = PumpResult()
        with self.sessions() as s:
            ids = s.scalars(
                select(OutboxRow.id).where(OutboxRow.status.in_(OPEN_STATES)).order_by(OutboxRow.id)
            ).all()
        now = self._now()
        for row_id in ids:
            try:
                self._advance(row_id, now, result)
            except (StaleDataError, DbIntegrityError):
                # Another poster moved this row first (or created the account's nonce counter at the same
                # moment); its version wins and ours was rolled back before anything was sent.
                log.info("outbox row %s was advanced by another poster", row_id)
            except TRANSIENT_ERRORS as e:
                result.transient_errors += 1
                self._note_transient(row_id, e)
                break  # the RPC is down: later rows would fail the same way, and order matters for nonces
        with self.sessions() as s:
            result.open = len(s.scalars(select(OutboxRow.id).where(OutboxRow.status.in_(OPEN_STATES))).all())
        return result

    def run_until_settled(self, *, timeout: float = 60.0, interval: float = 0.2) -> PumpResult:
        """Pump until no row is open or ``timeout`` passes; returns the last pass's result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.pump()
            if result.open == 0 or time.monotonic() > deadline:
                return result
            time.sleep(interval)

    def _advance(self, row_id: int, now: dt.datetime, result: PumpResult) -> None:
        with self.sessions() as s:
            row = s.get(OutboxRow, row_id)
            if row is None or row.status not in OPEN_STATES:
                return
            if row.next_attempt_at is not None and _aware(row.next_attempt_at) > now:
                return
            if row.status == "pending":
                self._sign(s, row, result)
            if row.status == "signed":
                self._broadcast(s, row, result)
            elif row.status == "sent":
                self._check(s, row, now, result)

    # -- steps ----------------------------------------------------------------------------------

    def _sign(self, s: Session, row: OutboxRow, result: PumpResult) -> None:
        sender = self.account.address
        try:
            estimate = int(
                self.w3.eth.estimate_gas({"from": sender, "to": row.to_address, "data": row.calldata})
            )
        except (ContractLogicError, ContractCustomError, ContractPanicError) as e:
            self._mark_reverted(s, row, _reason(e), result)
            return
        except Web3RPCError as e:
            if _is_revert_rpc_error(e):
                self._mark_reverted(s, row, _reason(e), result)
                return
            raise ConnectionError(str(e)) from e
        gas_limit = max(row.gas_limit, estimate * 5 // 4 + 20_000)
        max_fee, tip = self._initial_fees()
        nonce = self._next_nonce(s)
        signed = self._sign_tx(row, nonce=nonce, gas=gas_limit, max_fee=max_fee, tip=tip)
        row.sender = sender
        row.nonce = nonce
        row.gas_limit = gas_limit
        row.max_fee = str(max_fee)
        row.priority_fee = str(tip)
        row.raw_tx = bytes(signed.raw_transaction)
        row.tx_hash = "0x" + bytes(signed.hash).hex()
        row.status = "signed"
        row.last_error = None
        s.commit()
        result.signed += 1
        log.info("outbox signed key=%s nonce=%s tx_hash=%s", row.key, nonce, row.tx_hash)
        self._fire("signed", row)

    def _broadcast(self, s: Session, row: OutboxRow, result: PumpResult) -> None:
        assert row.raw_tx is not None
        try:
            self.w3.eth.send_raw_transaction(row.raw_tx)
        except Web3RPCError as e:
            message = str(e).lower()
            if "already known" in message or "already imported" in message:
                pass  # the node has these exact bytes: that is success
            elif "nonce too low" in message or "nonce has already been used" in message:
                # Mined already (maybe an earlier version of this row): the receipt check decides.
                log.info("outbox nonce already used key=%s tx_hash=%s", row.key, row.tx_hash)
            elif "underpriced" in message:
                self._replace(s, row, result, reason="replacement underpriced")
                return
            elif _is_fee_too_low(message):
                # Signed at a fee the chain's base fee has since passed (a spike while this poster was
                # down): the same nonce again, priced from the current base fee.
                self._replace(s, row, result, reason="max fee below the block base fee", reprice=True)
                return
            else:
                raise ConnectionError(str(e)) from e
        row.status = "sent"
        row.attempts += 1
        row.sent_at = row.sent_at or self._now()
        row.updated_at = self._now()
        row.next_attempt_at = None
        s.commit()
        result.sent += 1
        self._fire("sent", row)

    def _check(self, s: Session, row: OutboxRow, now: dt.datetime, result: PumpResult) -> None:
        receipt = self._find_receipt(row)
        if receipt is None:
            if row.block_number is not None:
                log.warning("outbox receipt vanished (reorg) key=%s tx_hash=%s", row.key, row.tx_hash)
                row.block_number = None
                row.status = "signed"
                s.commit()
                self._broadcast(s, row, result)
                return
            sent_at = _aware(row.sent_at) if row.sent_at else now
            waited = (now - sent_at).total_seconds()
            if waited >= self.fees.foreign_nonce_after_s and self._nonce_taken(row):
                self._renonce(s, row, result)
                return
            if waited >= self.fees.stuck_after_s and row.replacements < self.fees.max_replacements:
                self._replace(s, row, result, reason=f"no receipt after {waited:.0f}s")
            elif (now - _aware(row.updated_at)).total_seconds() >= self.fees.rebroadcast_every_s:
                # A restarted node may have lost its mempool; the same bytes are always safe to resend.
                self._broadcast(s, row, result)
            return
        tx_hash, rcpt = receipt
        row.tx_hash = tx_hash
        row.block_number = int(rcpt["blockNumber"])
        row.gas_used = int(rcpt["gasUsed"])
        if int(rcpt["status"]) == 0:
            self._mark_reverted(s, row, self._replay_reason(row), result)
            return
        head = int(self.w3.eth.block_number)
        if head - row.block_number + 1 >= self.confirmations:
            row.status = "confirmed"
            result.confirmed += 1
            log.info("outbox confirmed key=%s tx_hash=%s block=%s", row.key, tx_hash, row.block_number)
        s.commit()
        if row.status == "confirmed":
            self._fire("confirmed", row)

    def _nonce_taken(self, row: OutboxRow) -> bool:
        """True when the account's nonce ``row.nonce`` was used, deep enough not to be undone, by a
        transaction that is none of this row's: a foreign transaction (an operator's wallet, another
        tool with the same key) took it, and none of this row's signed versions can ever be mined."""
        assert row.nonce is not None
        sender = Web3.to_checksum_address(row.sender or self.account.address)
        if int(self.w3.eth.get_transaction_count(sender, "latest")) <= row.nonce:
            return False
        head = int(self.w3.eth.block_number)
        settled = max(0, head - self.confirmations)
        if int(self.w3.eth.get_transaction_count(sender, settled)) <= row.nonce:
            return False  # used in a block with nothing on top yet (could still be replaced): wait
        # Looked for after the nonce was seen used, so a version of ours mined meanwhile is found here.
        return self._find_receipt(row) is None

    def _renonce(self, s: Session, row: OutboxRow, result: PumpResult) -> None:
        """Move the row to a fresh nonce, signed at current fees. Safe against two landings: the old
        nonce is spent (settled), so no earlier version of this row can be mined any more; and the
        router refuses a second report for a (subject, epoch) it already accepted."""
        assert row.nonce is not None
        old = row.nonce
        max_fee, tip = self._initial_fees()
        nonce = self._next_nonce(s)
        signed = self._sign_tx(row, nonce=nonce, gas=row.gas_limit, max_fee=max_fee, tip=tip)
        row.previous_hashes = [*row.previous_hashes, row.tx_hash]
        row.nonce = nonce
        row.raw_tx = bytes(signed.raw_transaction)
        row.tx_hash = "0x" + bytes(signed.hash).hex()
        row.max_fee, row.priority_fee = str(max_fee), str(tip)
        row.status = "signed"
        row.sent_at = None
        row.last_error = f"nonce {old} was taken by a foreign transaction; moved to nonce {nonce}"
        s.commit()
        result.replaced += 1
        log.warning("outbox key=%s: %s (tx_hash=%s)", row.key, row.last_error, row.tx_hash)
        self._fire("renonced", row)
        self._broadcast(s, row, result)

    def _replace(
        self, s: Session, row: OutboxRow, result: PumpResult, *, reason: str, reprice: bool = False
    ) -> None:
        """Re-sign with the same nonce and bumped fees (with ``reprice``, at least what a fresh
        transaction would pay at the current base fee); store before broadcasting."""
        assert row.nonce is not None
        assert row.max_fee is not None
        assert row.priority_fee is not None
        bump = 100 + self.fees.bump_percent
        old_fee, old_tip = int(row.max_fee), int(row.priority_fee)
        tip = -(-old_tip * bump // 100)
        max_fee = min(max(-(-old_fee * bump // 100), tip), self.fees.max_fee_cap)
        if reprice:
            current, _ = self._initial_fees()
            max_fee = min(max(max_fee, current), self.fees.max_fee_cap)
        if max_fee <= old_fee or tip > max_fee:
            # At the cap: keep waiting on the bytes we have rather than send something a node refuses.
            row.status = "sent"
            row.updated_at = self._now()
            row.last_error = f"stuck at the fee cap ({reason})"
            s.commit()
            return
        signed = self._sign_tx(row, nonce=row.nonce, gas=row.gas_limit, max_fee=max_fee, tip=tip)
        row.previous_hashes = [*row.previous_hashes, row.tx_hash]
        row.raw_tx = bytes(signed.raw_transaction)
        row.tx_hash = "0x" + bytes(signed.hash).hex()
        row.max_fee, row.priority_fee = str(max_fee), str(tip)
        row.replacements += 1
        row.status = "signed"
        row.sent_at = None
        row.last_error = reason
        s.commit()
        result.replaced += 1
        log.info("outbox replaced key=%s nonce=%s tx_hash=%s (%s)", row.key, row.nonce, row.tx_hash, reason)
        self._fire("replaced", row)
        self._broadcast(s, row, result)

    # -- helpers --------------------------------------------------------------------------------

    def _next_nonce(self, s: Session) -> int:
        pending = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
        return reserve_nonce(s, chain_id=self.chain_id, address=self.account.address, chain_pending=pending)

    def _sign_tx(self, row: OutboxRow, *, nonce: int, gas: int, max_fee: int, tip: int) -> Any:
        """The row's call as an EIP-1559 transaction, signed by the transmitter (not yet stored)."""
        return self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": nonce,
                "to": Web3.to_checksum_address(row.to_address),
                "data": HexBytes(row.calldata),
                "value": 0,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": tip,
            }
        )

    def _find_receipt(self, row: OutboxRow) -> tuple[str, Any] | None:
        for h in [row.tx_hash, *reversed(row.previous_hashes)]:
            if not h:
                continue
            try:
                return h, self.w3.eth.get_transaction_receipt(h)
            except TransactionNotFound:
                continue
        return None

    def _replay_reason(self, row: OutboxRow) -> str:
        """Why a mined transaction failed: replay it as a call at its block's parent state."""
        assert row.block_number is not None
        try:
            self.w3.eth.call(
                {
                    "from": row.sender or self.account.address,
                    "to": row.to_address,
                    "data": row.calldata,
                    "gas": row.gas_limit,
                },
                block_identifier=max(0, row.block_number - 1),
            )
        except (ContractLogicError, ContractCustomError, ContractPanicError, Web3RPCError) as e:
            return _reason(e)
        return "reverted on-chain (likely out of gas; the replay at the parent block succeeds)"

    def _mark_reverted(self, s: Session, row: OutboxRow, reason: str, result: PumpResult) -> None:
        row.status = "reverted"
        row.revert_reason = reason
        s.commit()
        result.reverted += 1
        log.warning("outbox reverted key=%s reason=%s", row.key, reason)
        self._fire("reverted", row)

    def _note_transient(self, row_id: int, error: BaseException) -> None:
        with self.sessions() as s:
            row = s.get(OutboxRow, row_id)
            if row is None:
                return
            backoff = min(30.0, 0.5 * 2 ** min(row.attempts, 6))
            row.attempts += 1
            row.last_error = f"RPC unavailable: {error.__class__.__name__}"
            row.next_attempt_at = self._now() + dt.timedelta(seconds=backoff)
            s.commit()
        log.warning("outbox RPC unavailable, retrying in %.1fs: %s", backoff, error.__class__.__name__)

    def _initial_fees(self) -> tuple[int, int]:
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        tip = self.fees.priority_fee
        return min(base * self.fees.base_fee_multiplier + tip, self.fees.max_fee_cap), tip

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def _fire(self, step: str, row: OutboxRow) -> None:
        if self.hook is not None:
            self.hook(step, row)


def _is_fee_too_low(message: str) -> bool:
    """A node's refusal of a transaction whose max fee is below the current base fee (geth, anvil,
    reth, erigon and nethermind word it differently)."""
    return any(
        words in message
        for words in (
            "less than block base fee",
            "fee cap less than block base fee",
            "feecap too low",
            "fee cap too low",
            "max fee per gas less than",
            "maxfeepergas too low",
        )
    )


def _aware(t: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _revert_data(e: BaseException) -> bytes:
    data: Any = getattr(e, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return data.encode()
    if isinstance(data, bytes):
        return data
    return str(e).encode()


def _reason(e: BaseException) -> str:
    """A readable revert reason: a custom error with its arguments, an Error(string) or a Panic."""
    data = _revert_data(e)
    name, args = decode_revert(data)
    if name.startswith("unknown(") and not data.startswith(b"\x00") and data.isascii():
        return data.decode()  # the node sent a text message instead of revert data
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    return f"{name}({shown})" if args else name


def _is_revert_rpc_error(e: Web3RPCError) -> bool:
    message = str(e).lower()
    return "revert" in message or "execution reverted" in message


__all__ = [
    "FeePolicy",
    "OutboxPoster",
    "PumpResult",
    "TxIntent",
    "enqueue",
    "reserve_nonce",
    "utcnow",
]
