"""The settlement keeper: pays what the pool owes once a report's liveness window is over.

A report that reaches ``DroughtInsurancePool`` pays its region's policies inline only when the region's
products have no liveness window (and then only while the router's gas lasts). With a window the pool
records the report and pays nothing until the window is over and no dispute is open; the contract
leaves the paying to ``settle(region, month, count)``, which anyone may call. Nobody did, so a policy
holder had to call ``claim`` by hand. The keeper closes that gap on every node:

* it follows the pool's ``RegionValue`` events (one per recorded report: region, month, revision);
* for each (region, month) it asks the pool's own ``due(policy, month)`` view about the region's
  policies, which is 0 while the report is inside its window, frozen by a dispute, already paid or
  outside a policy's coverage: the contract, not the keeper, decides what is owed;
* when something is due it queues ``settle(region, month, page)`` in the node's durable outbox under the
  key ``settle:<pool>:<region>:<month>:<revision>:<cursor>``, so a restart, a second tick or a second
  process of the same node never queues the same page twice, and the next page (the cursor moved) or a
  corrected revision gets a key of its own.

It does the same for the other calls that anyone may make and that nobody made: ``resolveDispute`` of
an open dispute on the pool or the escrow once the contract would take it (the network posted a
replacement, or the answer window is over), and the escrow's ``finalize`` of a held verdict once its
window is over. For those the test is the contract itself: the keeper simulates the call (``eth_call``)
and queues it only if it would not revert, under the keys ``resolve:<contract>:<subject>:<epoch>`` and
``finalize:<escrow>:<shipment>:<epoch>``.

Several nodes run a keeper each. To spare gas, the node of rank r waits ``r * stagger_s`` seconds after it
first sees a payment due before it queues one; if an earlier node's settle lands in the meantime, nothing
is due any more and it queues nothing. A node that is down therefore only delays payment by the stagger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import ContractLogicError

from oracle.chain.outbox import TxIntent, enqueue
from oracle.storage.tables import Policy

log = logging.getLogger(__name__)

#: Policies ``settle`` pays per transaction (bounded gas: ~70,000 gas a policy).
SETTLE_PAGE = 50
#: Gas limit of one settle transaction of a full page.
SETTLE_GAS = 200_000 + 80_000 * SETTLE_PAGE
#: Gas limit of a resolveDispute (a rejection may apply the verdict: one payout or transfer) or finalize.
RESOLVE_GAS = 400_000
#: Blocks of logs fetched per request.
LOG_CHUNK = 5_000


@dataclass
class SettlementKeeper:
    """Queues ``settle`` for every (region, month) whose report now pays; see the module docstring."""

    sessions: sessionmaker[Session]
    w3: Any
    pool: Any
    from_block: int
    escrow: Any = None
    rank: int = 0
    stagger_s: float = 15.0
    page: int = SETTLE_PAGE
    clock: Callable[[], float] = time.monotonic
    #: (region hex, month) -> revision of the report the pool holds, from RegionValue events, until
    #: that report's windows are over and nothing is due on it (a new revision brings it back).
    held: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (region hex, month) -> block time at which the held revision reached the pool.
    _arrived: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Open disputes: (contract address, subject hex, epoch), from DisputeFiled until Upheld/Rejected.
    disputes: set[tuple[str, str, int]] = field(default_factory=set)
    #: The escrow's held verdicts: shipment hex -> epoch, from VerdictHeld until the shipment settles.
    verdicts: dict[str, int] = field(default_factory=dict)
    #: key base -> when this keeper first saw the call due.
    _due_since: dict[str, float] = field(default_factory=dict)
    _next_block: int = -1

    def tick(self) -> list[str]:
        """Follow new events, then queue every settle, resolveDispute and finalize that is due; returns
        the outbox keys this tick found due (queued now or already queued)."""
        self._follow()
        queued: list[str] = []
        for (region, month), revision in sorted(self.held.items()):
            key = self._settle_if_due(region, month, revision)
            if key is not None:
                queued.append(key)
        contracts = {c.address: c for c in (self.pool, self.escrow) if c is not None}
        for address, subject, epoch in sorted(self.disputes):
            call = contracts[address].functions.resolveDispute(bytes.fromhex(subject[2:]), epoch)
            key = self._if_it_would_pass(f"resolve:{address.lower()}:{subject}:{epoch}", call)
            if key is not None:
                queued.append(key)
        for shipment, epoch in sorted(self.verdicts.items()):
            call = self.escrow.functions.finalize(bytes.fromhex(shipment[2:]))
            key = self._if_it_would_pass(f"finalize:{self.escrow.address.lower()}:{shipment}:{epoch}", call)
            if key is not None:
                queued.append(key)
        return queued

    def _follow(self) -> None:
        if self._next_block < 0:
            self._next_block = self.from_block
        head = int(self.w3.eth.block_number)
        while self._next_block <= head:
            to = min(head, self._next_block + LOG_CHUNK - 1)
            for event in self._logs(self.pool, "RegionValue", to):
                args = event["args"]
                region = _hex(args["region"])
                month, revision = int(args["month"]), int(args["revision"])
                if revision >= self.held.get((region, month), -1):
                    self.held[(region, month)] = revision
                    block = self.w3.eth.get_block(event["blockNumber"])
                    self._arrived[(region, month)] = int(block["timestamp"])
            for contract in (self.pool, self.escrow):
                if contract is None:
                    continue
                for event in self._logs(contract, "DisputeFiled", to):
                    self.disputes.add(_dispute_of(contract, event))
                for name in ("DisputeUpheld", "DisputeRejected"):
                    for event in self._logs(contract, name, to):
                        self.disputes.discard(_dispute_of(contract, event))
            if self.escrow is not None:
                for event in self._logs(self.escrow, "VerdictHeld", to):
                    self.verdicts[_hex(event["args"]["shipmentId"])] = int(event["args"]["epoch"])
                for name in ("ShipmentVoided", "ShipmentReleased", "ShipmentReclaimed"):
                    for event in self._logs(self.escrow, name, to):
                        self.verdicts.pop(_hex(event["args"]["shipmentId"]), None)
            self._next_block = to + 1

    def _logs(self, contract: Any, event: str, to: int) -> list[Any]:
        return list(getattr(contract.events, event)().get_logs(from_block=self._next_block, to_block=to))

    def _settle_if_due(self, region: str, month: int, revision: int) -> str | None:
        policies = self._policies(region)
        fn = self.pool.functions
        base = f"settle:{self.pool.address.lower()}:{region}:{month}:{revision}"
        if not policies or not any(int(fn.due(p, month).call()) > 0 for p in policies):
            self._due_since.pop(base, None)
            if self._done(region, month):
                # Windows over, no dispute open, nothing due: only a new revision (a new RegionValue
                # event) can make it pay again, so stop asking every policy about it each tick.
                del self.held[(region, month)]
                self._arrived.pop((region, month), None)
            return None
        if not self._my_turn(base):
            return None
        cursor = int(fn.observation(bytes.fromhex(region[2:]), month).call()[4])
        call = fn.settle(bytes.fromhex(region[2:]), month, self.page)
        return self._queue(f"{base}:{cursor}", "settle", call, SETTLE_GAS)

    def _done(self, region: str, month: int) -> bool:
        """Whether the held report is past its region's longest window and not frozen by a dispute."""
        subject = bytes.fromhex(region[2:])
        window = int(self.pool.functions.regionLiveness(subject).call())
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        if now < self._arrived.get((region, month), now) + window:
            return False
        return not bool(self.pool.functions.frozen(subject, month).call())

    def _if_it_would_pass(self, key: str, call: Any) -> str | None:
        """Queue ``call`` under ``key`` if the contract would take it now (simulated), in this node's turn."""
        try:
            call.call()
        except ContractLogicError:
            self._due_since.pop(key, None)
            return None
        if not self._my_turn(key):
            return None
        return self._queue(key, key.split(":", 1)[0], call, RESOLVE_GAS)

    def _my_turn(self, base: str) -> bool:
        """Whether this node's turn has come: node r acts ``r * stagger_s`` s after it first saw ``base`` due
        (if an earlier node acted meanwhile, the call is no longer due and nothing is queued)."""
        first = self._due_since.setdefault(base, self.clock())
        return self.clock() - first >= self.rank * self.stagger_s

    def _queue(self, key: str, purpose: str, call: Any, gas: int) -> str:
        intent = TxIntent(
            key=key,
            purpose=purpose,
            to=call.address,
            calldata=bytes.fromhex(call._encode_transaction_data()[2:]),
            gas_limit=gas,
        )
        with self.sessions() as s:
            row = enqueue(s, intent)
            fresh = row.tx_hash is None and row.status == "pending"
            s.commit()
        if fresh:
            log.info("keeper: %s queued key=%s", purpose, key)
        return key

    def _policies(self, region: str) -> list[int]:
        with self.sessions() as s:
            rows = s.scalars(
                select(Policy.policy_id).where(
                    Policy.pool == self.pool.address, Policy.region_subject.in_((region, region.lower()))
                )
            ).all()
        return sorted(int(p) for p in rows)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _dispute_of(contract: Any, event: Any) -> tuple[str, str, int]:
    return (contract.address, _hex(event["args"]["subject"]), int(event["args"]["epoch"]))
