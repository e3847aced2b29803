"""Who transmits a round: a rotation every node computes alike from the subject and epoch.

The order of the members for a round is their ids sorted by ``keccak(subject ‖ epoch ‖ id)``, so the
first in line changes from round to round (no node carries all the gas, no node is a fixed target) and
every node agrees on it without a message. The node at position ``p`` transmits once the round has k
matching signatures and ``p × timeout`` seconds have passed without the report landing; the first in
line transmits at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils.crypto import keccak


def transmit_order(subject: bytes, epoch: int, member_ids: Sequence[str]) -> list[str]:
    """Member ids in the order they should transmit the round ``(subject, epoch)``."""
    prefix = subject + epoch.to_bytes(8, "big")
    return sorted(member_ids, key=lambda m: (keccak(prefix + m.encode()), m))


def turn_starts_after(
    subject: bytes, epoch: int, member_ids: Sequence[str], me: str, timeout_s: float
) -> float:
    """Seconds after the round is ready at which ``me`` may transmit."""
    return transmit_order(subject, epoch, member_ids).index(me) * timeout_s
