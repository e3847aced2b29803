"""The event listener: follows our contracts' events and keeps the database's view current.

It reads logs from a persisted block cursor up to ``head − confirmations`` (so a shallow reorg never
reaches the database), in bounded block ranges. The cursor keeps its block's hash: when the chain's
block at that height has another hash, a deeper reorg happened, and the listener rewinds to the last
applied event still on the chain, recording each orphaned event (see ``_rewind_if_reorganised``).
Each event is stored once (unique on transaction hash and log index) in the same database transaction
as its effect and the cursor move, so a replay, a crash mid-range or two listeners racing all converge
on the same state.

Projections: subscriptions, policies, payouts, shipments and their settlement, and the status of our
own reports (``accepted`` with the transaction that carried them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak
from hexbytes import HexBytes
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import BlockNotFound

from oracle.chain.artifacts import load_artifact
from oracle.chain.deploy import Deployment
from oracle.storage.tables import (
    ChainCursor,
    ChainEvent,
    Payout,
    Policy,
    Reject,
    ReportRow,
    Shipment,
    Subscription,
)

log = logging.getLogger(__name__)

CURSOR = "contracts"


@dataclass(frozen=True)
class DecodedEvent:
    contract: str
    address: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | HexBytes):
        return "0x" + bytes(v).hex()
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**53:
        return str(v)
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


class EventDecoder:
    """Decodes raw logs of the deployed contracts by (address, topic0)."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3 = w3
        self.by_topic: dict[tuple[str, bytes], tuple[str, Any]] = {}
        for role, address in deployment.addresses.items():
            name = role.split(":", 1)[0]
            abi = list(load_artifact(name).abi)
            contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
            for item in abi:
                if item.get("type") != "event":
                    continue
                sig = f"{item['name']}({','.join(_canonical(i) for i in item['inputs'])})"
                event = contract.events[item["name"]]()
                self.by_topic[(Web3.to_checksum_address(address), keccak(text=sig))] = (name, event)
        self.addresses = sorted({a for a, _ in self.by_topic})

    def decode(self, raw: Any) -> DecodedEvent | None:
        address = Web3.to_checksum_address(raw["address"])
        topics = raw.get("topics") or []
        if not topics:
            return None
        found = self.by_topic.get((address, bytes(topics[0])))
        if found is None:
            return None
        contract, event = found
        data = event.process_log(raw)
        return DecodedEvent(
            contract=contract,
            address=address,
            name=str(data["event"]),
            args={k: _jsonable(v) for k, v in dict(data["args"]).items()},
            block_number=int(raw["blockNumber"]),
            block_hash="0x" + bytes(raw["blockHash"]).hex(),
            tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
            log_index=int(raw["logIndex"]),
        )


def _canonical(item: dict[str, Any]) -> str:
    t = str(item["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in item["components"]) + ")" + t[len("tuple") :]
    return t


class ChainListener:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        w3: Web3,
        deployment: Deployment,
        *,
        confirmations: int = 1,
        max_range: int = 2_000,
        on_event: Callable[[DecodedEvent], None] | None = None,
        idle_final_s: float = 2.0,
    ) -> None:
        self.sessions = sessions
        self.w3 = w3
        self.deployment = deployment
        self.decoder = EventDecoder(w3, deployment)
        self.confirmations = max(0, confirmations)
        self.max_range = max_range
        self.on_event = on_event
        self.idle_final_s = idle_final_s
        self._head = -1
        self._head_since = 0.0
        #: Reorganisations seen (the cursor's block replaced), for /metrics and tests.
        self.reorgs = 0

    def poll(self) -> int:
        """Apply every final event not yet applied; returns how many new events were stored.

        With one confirmation (the default) the head block also counts as final once the chain has been
        idle for ``idle_final_s``: a chain that mines only on demand (anvil, a quiet devnet) would
        otherwise never show its last event, and nothing can replace a block no one builds on.
        """
        import time

        head = int(self.w3.eth.block_number)
        now = time.monotonic()
        if head != self._head:
            self._head, self._head_since = head, now
        final = head - self.confirmations
        if self.confirmations == 1 and now - self._head_since >= self.idle_final_s:
            final = head
        applied = 0
        self._rewind_if_reorganised()
        with self.sessions() as s:
            cursor = s.get(ChainCursor, CURSOR)
            start = (cursor.block + 1) if cursor is not None else self.deployment.block
        while start <= final:
            end = min(final, start + self.max_range - 1)
            logs = self.w3.eth.get_logs(
                {"fromBlock": start, "toBlock": end, "address": self.decoder.addresses}  # type: ignore[typeddict-item]
            )
            events = [e for e in (self.decoder.decode(raw) for raw in logs) if e is not None]
            end_hash = "0x" + bytes(self.w3.eth.get_block(end)["hash"]).hex()
            applied += self._apply(events, end, end_hash)
            start = end + 1
        return applied

    def _block_hash(self, number: int) -> str | None:
        try:
            return "0x" + bytes(self.w3.eth.get_block(number)["hash"]).hex()
        except BlockNotFound:
            return None  # the chain is now shorter than it was

    def _rewind_if_reorganised(self) -> None:
        """Compare the stored hash of the cursor's block with the chain's. If the block was replaced (a
        reorg deeper than the confirmations, or an idle head that got a rival), walk back over the
        applied events, newest first, to the last one whose block is still on the chain; record each
        event above it as orphaned (a ``reorg_orphaned`` reject with the whole event, kept for the audit
        trail), drop it from the applied set so a re-included transaction is applied again from its new
        block, and move the cursor back to that block. A projection made from an orphaned event that
        the new chain does not repeat is not undone here: the reject names it for an operator."""
        with self.sessions() as s:
            cursor = s.get(ChainCursor, CURSOR)
            if cursor is None or not cursor.block_hash:
                return
            if self._block_hash(cursor.block) == cursor.block_hash:
                return
            fork = self.deployment.block - 1
            hashes: dict[int, str | None] = {}
            orphaned: list[ChainEvent] = []
            rows = s.scalars(
                select(ChainEvent)
                .where(ChainEvent.block_number <= cursor.block)
                .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
            )
            for ev in rows:
                if ev.block_number not in hashes:
                    hashes[ev.block_number] = self._block_hash(ev.block_number)
                if hashes[ev.block_number] == ev.block_hash:
                    fork = ev.block_number
                    break
                orphaned.append(ev)
            old_block, old_hash = cursor.block, cursor.block_hash
            for ev in orphaned:
                s.add(
                    Reject(
                        source="chain",
                        reason="reorg_orphaned",
                        message=(
                            f"{ev.contract}.{ev.name} in block {ev.block_number} ({ev.block_hash}), "
                            f"transaction {ev.tx_hash}, is no longer on the chain"
                        ),
                        subject=ev.tx_hash,
                        meta={
                            "block_number": ev.block_number,
                            "block_hash": ev.block_hash,
                            "log_index": ev.log_index,
                            "contract": ev.contract,
                            "name": ev.name,
                            "args": ev.args,
                        },
                    )
                )
                s.delete(ev)
            cursor.block = fork
            cursor.block_hash = (self._block_hash(fork) or "") if fork >= 0 else ""
            s.commit()
        self.reorgs += 1
        log.warning(
            "chain reorganised: block %s (%s) is gone; %d applied event(s) orphaned; re-reading from %s",
            old_block,
            old_hash,
            len(orphaned),
            fork + 1,
        )

    def _apply(self, events: Iterable[DecodedEvent], end: int, end_hash: str) -> int:
        new = 0
        with self.sessions() as s:
            for ev in events:
                seen = s.scalar(
                    select(ChainEvent.id).where(
                        ChainEvent.tx_hash == ev.tx_hash, ChainEvent.log_index == ev.log_index
                    )
                )
                if seen is not None:
                    continue
                s.add(
                    ChainEvent(
                        block_number=ev.block_number,
                        block_hash=ev.block_hash,
                        tx_hash=ev.tx_hash,
                        log_index=ev.log_index,
                        contract=ev.contract,
                        name=ev.name,
                        args=ev.args,
                    )
                )
                project(s, ev)
                new += 1
            cursor = s.get(ChainCursor, CURSOR)
            if cursor is None:
                s.add(ChainCursor(name=CURSOR, block=end, block_hash=end_hash))
            elif end > cursor.block:
                cursor.block, cursor.block_hash = end, end_hash
            try:
                s.commit()
            except IntegrityError:
                # Another listener applied the same range first; its state is the same as ours would be.
                s.rollback()
                return 0
        if self.on_event is not None:
            for ev in events:
                self.on_event(ev)
        return new


def project(s: Session, ev: DecodedEvent) -> None:
    """Apply one event's effect to the read model. Must be idempotent per event."""
    a = ev.args
    key = (ev.contract, ev.name)
    if key == ("OracleRouter", "ReportAccepted"):
        row = s.scalar(
            select(ReportRow).where(ReportRow.subject == a["subject"], ReportRow.epoch == int(a["epoch"]))
        )
        if row is None:  # posted by another node of the oracle network, or by hand
            row = ReportRow(
                subject=a["subject"],
                kind=int(a["kind"]),
                value=str(a["value"]),
                epoch=int(a["epoch"]),
                observed_at=int(a["observedAt"]),
                inputs_root=a["inputsRoot"],
                model_id=a["modelId"],
                detail={},
            )
            s.add(row)
        row.status = "accepted"
        row.detail = {**(row.detail or {}), "tx_hash": ev.tx_hash, "block": ev.block_number}
    elif key == ("OracleRouter", "Subscribed"):
        sub = s.get(Subscription, (a["subject"], a["consumer"]))
        if sub is None:
            s.add(
                Subscription(
                    subject=a["subject"], consumer=a["consumer"], active=True, since_block=ev.block_number
                )
            )
        else:
            sub.active = True
    elif key == ("OracleRouter", "Unsubscribed"):
        sub = s.get(Subscription, (a["subject"], a["consumer"]))
        if sub is not None:
            sub.active = False
    elif key == ("DroughtInsurancePool", "PolicyCreated"):
        if s.get(Policy, (ev.address, int(a["policyId"]))) is None:
            s.add(
                Policy(
                    pool=ev.address,
                    policy_id=int(a["policyId"]),
                    insured=a["insured"],
                    region_subject=a["region"],
                    coverage_start=int(a["coverageStart"]),
                    coverage_end=int(a["coverageEnd"]),
                    trigger=str(a["trigger"]),
                    exit=str(a["exit"]),
                    limit=str(a["limit"]),
                )
            )
    elif key == ("DroughtInsurancePool", "PayoutSent"):
        policy = s.get(Policy, (ev.address, int(a["policyId"])))
        if policy is not None:
            policy.status = "paid"
        # One row per event (a policy is paid in several months, topped up, or paid what it was owed);
        # the event itself is applied once (chain_events), and (tx_hash, log_index) is unique here too.
        s.add(
            Payout(
                pool=ev.address,
                policy_id=int(a["policyId"]),
                insured=a["insured"],
                amount=str(a["amount"]),
                epoch=int(a["epoch"]),
                tx_hash=ev.tx_hash,
                log_index=ev.log_index,
                block_number=ev.block_number,
            )
        )
    elif key == ("DroughtInsurancePool", "PayoutFailed"):
        policy = s.get(Policy, (ev.address, int(a["policyId"])))
        if policy is not None and policy.status != "paid":
            policy.status = "owed"
    elif key == ("DroughtInsurancePool", "PolicyClosed"):
        policy = s.get(Policy, (ev.address, int(a["policyId"])))
        if policy is not None and policy.status == "active":
            policy.status = "closed"
    elif key == ("ColdChainEscrow", "ShipmentRegistered"):
        if s.get(Shipment, a["shipmentId"]) is None:
            s.add(
                Shipment(
                    subject=a["shipmentId"],
                    escrow=ev.address,
                    buyer=a["buyer"],
                    seller=a["seller"],
                    amount=str(a["amount"]),
                    profile=a["profile"],
                    deadline=int(a["deadline"]),
                )
            )
    elif ev.contract == "ColdChainEscrow" and ev.name in (
        "ShipmentVoided",
        "ShipmentReleased",
        "ShipmentReclaimed",
    ):
        shipment = s.get(Shipment, a["shipmentId"])
        if shipment is not None:
            shipment.status = {"ShipmentVoided": "voided", "ShipmentReleased": "released"}.get(
                ev.name, "reclaimed"
            )
            shipment.settled_tx = ev.tx_hash
