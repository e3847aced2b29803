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

from oracle.chain.outbox import TxIntent, enqueue
from oracle.reports import MAX_REVISIONS
from oracle.storage.tables import Policy

log = logging.getLogger(__name__)

#: Policies ``settle`` pays per transaction (bounded gas: ~70,000 gas a policy).
SETTLE_PAGE = 50
#: Gas limit of one settle transaction of a full page.
SETTLE_GAS = 200_000 + 80_000 * SETTLE_PAGE
#: Blocks of ``RegionValue`` logs fetched per request.
LOG_CHUNK = 5_000


@dataclass
class SettlementKeeper:
    """Queues ``settle`` for every (region, month) whose report now pays; see the module docstring."""

    sessions: sessionmaker[Session]
    w3: Any
    pool: Any
    from_block: int
    rank: int = 0
    stagger_s: float = 15.0
    page: int = SETTLE_PAGE
    clock: Callable[[], float] = time.monotonic
    #: (region hex, month) -> revision of the report the pool holds, from RegionValue events.
    held: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (region hex, month) -> when this keeper first saw something due there.
    _due_since: dict[tuple[str, int], float] = field(default_factory=dict)
    _next_block: int = -1

    def tick(self) -> list[str]:
        """Follow new RegionValue events, then queue a settle wherever a payment is due; returns the keys
        of the settles queued by this tick."""
        self._follow()
        queued: list[str] = []
        for (region, month), revision in sorted(self.held.items()):
            key = self._settle_if_due(region, month, revision)
            if key is not None:
                queued.append(key)
        return queued

    def _follow(self) -> None:
        if self._next_block < 0:
            self._next_block = self.from_block
        head = int(self.w3.eth.block_number)
        while self._next_block <= head:
            to = min(head, self._next_block + LOG_CHUNK - 1)
            for event in self.pool.events.RegionValue().get_logs(from_block=self._next_block, to_block=to):
                args = event["args"]
                region = "0x" + bytes(args["region"]).hex()
                month, revision = int(args["month"]), int(args["revision"])
                if revision >= self.held.get((region, month), -1):
                    self.held[(region, month)] = revision
            self._next_block = to + 1

    def _settle_if_due(self, region: str, month: int, revision: int) -> str | None:
        policies = self._policies(region)
        fn = self.pool.functions
        if not policies or not any(int(fn.due(p, month).call()) > 0 for p in policies):
            self._due_since.pop((region, month), None)
            return None
        first = self._due_since.setdefault((region, month), self.clock())
        if self.clock() - first < self.rank * self.stagger_s:
            return None  # an earlier node in line settles first; look again next tick
        cursor = int(fn.observation(bytes.fromhex(region[2:]), month).call()[4])
        key = f"settle:{self.pool.address.lower()}:{region}:{month}:{revision}:{cursor}"
        call = fn.settle(bytes.fromhex(region[2:]), month, self.page)
        intent = TxIntent(
            key=key,
            purpose="settle",
            to=self.pool.address,
            calldata=bytes.fromhex(call._encode_transaction_data()[2:]),
            gas_limit=SETTLE_GAS,
        )
        with self.sessions() as s:
            row = enqueue(s, intent)
            fresh = row.status == "pending" and row.tx_hash is None
            s.commit()
        if fresh:
            log.info(
                "keeper: settle queued region=%s month=%d revision=%d epoch=%d",
                region,
                month,
                revision,
                month * MAX_REVISIONS + revision,
            )
        return key

    def _policies(self, region: str) -> list[int]:
        with self.sessions() as s:
            rows = s.scalars(
                select(Policy.policy_id).where(
                    Policy.pool == self.pool.address, Policy.region_subject.in_((region, region.lower()))
                )
            ).all()
        return sorted(int(p) for p in rows)
