"""Router governance for the dashboard, read from the chain: the signer set and threshold in force, the
timelock, and every signer, threshold or consumer change waiting it out (``OracleRouter.pendingGovernance``)
with the block time from which anyone may activate it.

Times are the chain's (block timestamps, UNIX seconds), as the router's timelock uses them. Pending model
changes are not listed: the router keeps them in a mapping with no enumeration (their ``ModelScheduled``
events are the record).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oracle.chain.client import translate_errors

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract

#: ``OracleRouter.ADD_SIGNER``, ``SET_THRESHOLD``, ``APPROVE_CONSUMER`` by name.
ACTIONS: dict[int, str] = {1: "add_signer", 2: "set_threshold", 3: "approve_consumer"}


def pending_changes(raw: Sequence[Sequence[Any]], *, now: int) -> list[dict[str, Any]]:
    """``pendingGovernance()`` tuples (id, action, target, threshold, activatesAt) as dicts, soonest
    first. ``ready`` means the timelock has passed at chain time ``now``; ``seconds_left`` is 0 then."""
    out = []
    for change_id, action, target, threshold, activates_at in raw:
        is_threshold = ACTIONS.get(int(action)) == "set_threshold"
        out.append(
            {
                "id": "0x" + bytes(change_id).hex(),
                "action": ACTIONS.get(int(action), f"unknown({int(action)})"),
                "target": None if is_threshold else str(target),
                "threshold": int(threshold) if is_threshold else None,
                "activates_at": int(activates_at),
                "ready": int(activates_at) <= now,
                "seconds_left": max(0, int(activates_at) - now),
            }
        )
    return sorted(out, key=lambda c: (c["activates_at"], c["id"]))


def governance_view(w3: Web3, router: Contract) -> dict[str, Any]:
    """What the governance panel shows, from ``router`` at the latest block. Raises ``ChainError`` when
    the chain cannot be read."""
    with translate_errors("read router governance"):
        now = int(w3.eth.get_block("latest")["timestamp"])
        signers = router.functions.signers().call()
        threshold = int(router.functions.threshold().call())
        delay = int(router.functions.modelDelay().call())
        shorter_delay, shorter_delay_at = router.functions.pendingModelDelay().call()
        raw = router.functions.pendingGovernance().call()
    return {
        "available": True,
        "router": router.address,
        "chain_time": now,
        "signers": sorted(str(s) for s in signers),
        "threshold": threshold,
        "delay_s": delay,
        "pending_delay": (
            {"delay_s": int(shorter_delay), "effective_at": int(shorter_delay_at)}
            if shorter_delay_at
            else None
        ),
        "pending": pending_changes(raw, now=now),
    }
