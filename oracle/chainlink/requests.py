"""Direct requests: follow a Chainlink ``Operator``'s ``OracleRequest`` logs and fulfil them through the
durable outbox.

For each log of a known job id (``DirectRequestConfig.jobs``), in block order:

1. **Once per request id.** The outbox key ``chainlink:0x<requestId>`` (unique in the database) and the
   refusal record (``rejects`` row, source ``chainlink``, subject = the same key) are the memory: a replayed,
   re-read or re-orged log of a request already queued or refused is skipped.
2. **Validate before fulfilling.** A reverting consumer callback still consumes the request (the Operator
   deletes the commitment first), so every refusal happens here, recorded with a reason and never answered
   with a made-up value: ``payment_below_minimum`` (per job), ``expired`` (fewer than
   ``expiry_margin_s`` seconds left at the chain head), ``unsupported_data_version``, ``bad_request_data``
   (CBOR), ``bad_period``/``missing_<key>``/``bad_times``, ``unknown_region``/``unknown_shipment``,
   ``incomplete`` (the decision lacks inputs), ``unsupported_task``.
3. **Fulfil** with ``fulfillOracleRequest2(requestId, payment, callbackAddress, callbackFunctionId,
   expiration, abi.encode(requestId, int256 result))`` queued as an outbox intent (purpose ``fulfil``); the
   ``OutboxPoster`` signs it with the transmitter, which must be an authorised sender
   (:func:`oracle.chainlink.setup.setup_direct_requests`).

``CancelOracleRequest`` logs withdraw a still-unsigned fulfilment (outbox status ``cancelled``) and record
reason ``cancelled``. Logs of unknown job ids are ignored without a record (other jobs may share the
Operator). The block cursor is the ``chain_cursors`` row ``chainlink``; logs are read up to
``head − confirmations``. A failure that is not a refusal (database or RPC down) stops the poll before the
cursor moves, so the same range is read again next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode as abi_encode
from hexbytes import HexBytes
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3

from oracle.chain.artifacts import load_artifact
from oracle.chain.outbox import TxIntent, enqueue
from oracle.chainlink.cbor import decode_request_data
from oracle.chainlink.tasks import (
    TaskAnswer,
    TaskRequest,
    Unsupported,
    answer_task,
    not_found_reason,
    parse_task,
)
from oracle.errors import NotFound, ValidationError
from oracle.storage.blobs import BlobStore
from oracle.storage.tables import ChainCursor, OutboxRow, Reject

log = logging.getLogger(__name__)

CURSOR = "chainlink"
SOURCE = "chainlink"
#: The Operator refuses to call the consumer with less gas left than this (MINIMUM_CONSUMER_GAS_LIMIT).
OPERATOR_MIN_CONSUMER_GAS = 400_000
#: Commitment check, payment release, event and calldata before the callback (measured ≈ 60k; doubled).
FULFIL_OVERHEAD_GAS = 120_000
#: fulfillOracleRequest2 (Operator 1.0.0) accepts commitments of data version 1 and 2.
MAX_DATA_VERSION = 2


@dataclass(frozen=True)
class DirectRequestConfig:
    """``operator``: the Operator's address; ``jobs``: job id → task; ``min_payment``: job id → least
    payment in juels (1e-18 LINK) accepted, else ``default_min_payment``; ``callback_gas``: gas allowed for
    the consumer's callback on top of the Operator's 400,000 minimum; ``expiry_margin_s``: refuse requests
    that expire sooner than this after the chain head's time; ``start_block``: first block read when no
    cursor exists."""

    operator: str
    jobs: Mapping[bytes, str]
    min_payment: Mapping[bytes, int] = field(default_factory=dict)
    default_min_payment: int = 0
    callback_gas: int = 200_000
    expiry_margin_s: int = 60
    confirmations: int = 1
    max_range: int = 2_000
    start_block: int = 0

    @property
    def gas_limit(self) -> int:
        return OPERATOR_MIN_CONSUMER_GAS + FULFIL_OVERHEAD_GAS + self.callback_gas


@dataclass(frozen=True)
class OracleRequestLog:
    """One decoded ``OracleRequest`` event. ``callback_function_id`` is 4 bytes; amounts in juels."""

    spec_id: bytes
    requester: str
    request_id: bytes
    payment: int
    callback_address: str
    callback_function_id: bytes
    expiration: int
    data_version: int
    data: bytes
    block_number: int
    tx_hash: str
    log_index: int

    @property
    def key(self) -> str:
        return request_key(self.request_id)


@dataclass(frozen=True)
class Handled:
    """What became of one log: ``queued`` (fulfilment in the outbox, ``value`` = the answer), ``rejected``
    (``reason``), ``duplicate``, ``ignored`` (unknown job id) or ``cancelled``."""

    request_id: bytes
    outcome: str
    reason: str = ""
    value: int | None = None


@dataclass(frozen=True)
class PollResult:
    from_block: int
    to_block: int
    handled: tuple[Handled, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for h in self.handled if h.outcome == outcome)


def request_key(request_id: bytes) -> str:
    """The outbox key (and refusal subject) of a request: ``chainlink:0x<requestId>``."""
    return f"chainlink:0x{request_id.hex()}"


Evaluator = Callable[[TaskRequest], TaskAnswer]


class OracleRequestFollower:
    """Follows one Operator. One active follower per transmitter (like the outbox poster)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        w3: Web3,
        config: DirectRequestConfig,
        *,
        evaluate: Evaluator | None = None,
    ) -> None:
        self.sessions = sessions
        self.w3 = w3
        self.config = config
        self.operator = w3.eth.contract(
            address=Web3.to_checksum_address(config.operator), abi=list(load_artifact("Operator").abi)
        )
        self._request_event = self.operator.events.OracleRequest()
        self._cancel_event = self.operator.events.CancelOracleRequest()
        self._request_topic = HexBytes(self._topic(self._request_event))
        self._cancel_topic = HexBytes(self._topic(self._cancel_event))
        self.evaluate: Evaluator = evaluate or (lambda request: answer_task(sessions, blobs, request))

    @staticmethod
    def _topic(event: Any) -> bytes:
        abi = event.abi
        types = ",".join(str(i["type"]) for i in abi["inputs"])
        return bytes(Web3.keccak(text=f"{abi['name']}({types})"))

    # -- polling --------------------------------------------------------------------------------

    def poll(self) -> PollResult:
        """Handle every final log after the cursor; returns what happened to each request log."""
        head = int(self.w3.eth.block_number)
        final = head - max(0, self.config.confirmations)
        with self.sessions() as s:
            cursor = s.get(ChainCursor, CURSOR)
            start = cursor.block + 1 if cursor is not None else self.config.start_block
        first, handled = start, []
        while start <= final:
            end = min(final, start + self.config.max_range - 1)
            logs = self.w3.eth.get_logs(
                {
                    "fromBlock": start,
                    "toBlock": end,
                    "address": self.operator.address,
                    "topics": [[self._request_topic, self._cancel_topic]],
                }
            )
            now = int(self.w3.eth.get_block("latest")["timestamp"])
            for raw in sorted(logs, key=lambda r: (int(r["blockNumber"]), int(r["logIndex"]))):
                h = self.handle_log(raw, now=now)
                if h is not None:
                    handled.append(h)
            self._move_cursor(end)
            start = end + 1
        return PollResult(from_block=first, to_block=final, handled=tuple(handled))

    def _move_cursor(self, block: int) -> None:
        block_hash = "0x" + bytes(self.w3.eth.get_block(block)["hash"]).hex()
        with self.sessions() as s:
            cursor = s.get(ChainCursor, CURSOR)
            if cursor is None:
                s.add(ChainCursor(name=CURSOR, block=block, block_hash=block_hash))
            elif block > cursor.block:
                cursor.block, cursor.block_hash = block, block_hash
            s.commit()

    def handle_log(self, raw: Any, *, now: int) -> Handled | None:
        """Handle one raw log of the Operator (``OracleRequest`` or ``CancelOracleRequest``); ``now`` is the
        chain head's timestamp. Safe to call again with the same log. ``None`` for other events."""
        topics = raw.get("topics") or []
        if not topics:
            return None
        if HexBytes(topics[0]) == self._cancel_topic:
            return self._cancelled(bytes(HexBytes(topics[1])))
        if HexBytes(topics[0]) != self._request_topic:
            return None
        return self.handle_request(self._decode(raw), now=now)

    def _decode(self, raw: Any) -> OracleRequestLog:
        a = self._request_event.process_log(raw)["args"]
        return OracleRequestLog(
            spec_id=bytes(a["specId"]),
            requester=str(a["requester"]),
            request_id=bytes(a["requestId"]),
            payment=int(a["payment"]),
            callback_address=str(a["callbackAddr"]),
            callback_function_id=bytes(a["callbackFunctionId"]),
            expiration=int(a["cancelExpiration"]),
            data_version=int(a["dataVersion"]),
            data=bytes(a["data"]),
            block_number=int(raw["blockNumber"]),
            tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
            log_index=int(raw["logIndex"]),
        )

    # -- one request ----------------------------------------------------------------------------

    def handle_request(self, req: OracleRequestLog, *, now: int) -> Handled:
        task = self.config.jobs.get(req.spec_id)
        if task is None:
            return Handled(req.request_id, "ignored", "unknown_job")
        if self._seen(req.key):
            return Handled(req.request_id, "duplicate")
        try:
            request = self._validate(req, task, now=now)
            answer = self.evaluate(request)
        except NotFound as e:
            return self._reject(req, task, not_found_reason(task), str(e))
        except Unsupported as e:
            return self._reject(req, task, "unsupported_task", str(e))
        except ValidationError as e:
            return self._reject(req, task, e.reason, str(e))
        except Exception as e:  # one request must never stop the follower: refuse it, move on
            log.exception("chainlink request 0x%s could not be handled", req.request_id.hex())
            return self._reject(req, task, "internal_error", f"{type(e).__name__}: {e}")
        return self._queue(req, task, answer)

    def _validate(self, req: OracleRequestLog, task: str, *, now: int) -> TaskRequest:
        least = self.config.min_payment.get(req.spec_id, self.config.default_min_payment)
        if req.payment < least:
            raise ValidationError(
                f"payment {req.payment} juels is below this job's minimum of {least}",
                reason="payment_below_minimum",
            )
        if req.expiration - now < self.config.expiry_margin_s:
            raise ValidationError(
                f"request expires at {req.expiration}, {req.expiration - now}s after the chain head "
                f"(need at least {self.config.expiry_margin_s}s to fulfil)",
                reason="expired",
            )
        if req.data_version > MAX_DATA_VERSION:
            raise ValidationError(
                f"data version {req.data_version} is not fulfillable with fulfillOracleRequest2",
                reason="unsupported_data_version",
            )
        params = decode_request_data(req.data)
        # The job id decides the task; a "task" key in the request data cannot redirect it.
        return parse_task({**params, "task": task})

    def _seen(self, key: str) -> bool:
        with self.sessions() as s:
            if s.scalar(select(OutboxRow.id).where(OutboxRow.key == key)) is not None:
                return True
            refused = s.scalar(select(Reject.id).where(Reject.source == SOURCE, Reject.subject == key))
            return refused is not None

    def _reject(self, req: OracleRequestLog, task: str, reason: str, message: str) -> Handled:
        with self.sessions() as s:
            s.add(
                Reject(
                    source=SOURCE,
                    reason=reason[:60],
                    message=message,
                    subject=req.key,
                    meta=self._meta(req, task),
                )
            )
            s.commit()
        log.warning(
            "chainlink request refused request_id=0x%s reason=%s: %s", req.request_id.hex(), reason, message
        )
        return Handled(req.request_id, "rejected", reason)

    def _queue(self, req: OracleRequestLog, task: str, answer: TaskAnswer) -> Handled:
        calldata = fulfil_calldata(self.operator, req, answer.result)
        with self.sessions() as s:
            enqueue(
                s,
                TxIntent(
                    key=req.key,
                    purpose="fulfil",
                    to=self.operator.address,
                    calldata=calldata,
                    gas_limit=self.config.gas_limit,
                ),
            )
            s.commit()
        log.info(
            "chainlink request queued request_id=0x%s task=%s subject=%s result=%s decision=%s",
            req.request_id.hex(),
            task,
            answer.request.subject,
            answer.result,
            answer.decision_id,
        )
        return Handled(req.request_id, "queued", value=answer.result)

    def _cancelled(self, request_id: bytes) -> Handled | None:
        key = request_key(request_id)
        with self.sessions() as s:
            row = s.scalar(select(OutboxRow).where(OutboxRow.key == key))
            if row is None:
                return None  # never ours (unknown job) or already refused: nothing to withdraw
            if row.status == "pending":
                # Not signed yet: withdraw it so the poster never sends a fulfilment that would revert.
                row.status = "cancelled"
                row.last_error = "the requester cancelled the request"
            if s.scalar(select(Reject.id).where(Reject.source == SOURCE, Reject.subject == key)) is None:
                s.add(
                    Reject(
                        source=SOURCE,
                        reason="cancelled",
                        message=f"the requester cancelled the request (outbox row was {row.status})",
                        subject=key,
                        meta={"requestId": "0x" + request_id.hex()},
                    )
                )
            s.commit()
        return Handled(request_id, "cancelled")

    @staticmethod
    def _meta(req: OracleRequestLog, task: str) -> dict[str, Any]:
        return {
            "requestId": "0x" + req.request_id.hex(),
            "specId": "0x" + req.spec_id.hex(),
            "task": task,
            "requester": req.requester,
            "payment": str(req.payment),
            "expiration": req.expiration,
            "block": req.block_number,
            "tx_hash": req.tx_hash,
        }


def fulfil_calldata(operator: Any, req: OracleRequestLog, value: int) -> bytes:
    """ABI-encoded ``fulfillOracleRequest2`` answering ``req`` with ``int256 value``."""
    data = abi_encode(["bytes32", "int256"], [req.request_id, value])
    encoded = operator.encode_abi(
        "fulfillOracleRequest2",
        args=[
            req.request_id,
            req.payment,
            Web3.to_checksum_address(req.callback_address),
            req.callback_function_id,
            req.expiration,
            data,
        ],
    )
    return bytes.fromhex(str(encoded).removeprefix("0x"))
