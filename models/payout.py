"""Parametric drought payout, the same rule as ``DroughtInsurancePool.payoutFor`` on chain.

All values are integers in the report's fixed point (``oracle.reports.VALUE_SCALE`` = 10**6); ``limit`` is in
the pool token's base units. Higher severity is worse: nothing at or below the trigger, the full limit at
or beyond the exit, linear in between, rounded down (floor) so the pool never pays a fraction of a base
unit more than the rule allows.
"""

from __future__ import annotations

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT128_MAX = 2**128 - 1


def drought_payout(*, value: int, trigger: int, exit: int, limit: int) -> int:
    """``floor(limit * (value - trigger) / (exit - trigger))`` clamped to ``[0, limit]``.

    ``trigger`` and ``exit`` must fit int64 with ``trigger < exit``; ``limit`` must fit uint128
    (the contract's storage types). Raises ``ValueError`` otherwise, as the contract reverts.
    """
    if not (INT64_MIN <= trigger <= INT64_MAX and INT64_MIN <= exit <= INT64_MAX):
        raise ValueError("trigger and exit must fit in int64")
    if not 0 <= limit <= UINT128_MAX:
        raise ValueError("limit must fit in uint128")
    if exit <= trigger:
        raise ValueError("exit must exceed trigger")
    if value <= trigger:
        return 0
    if value >= exit:
        return limit
    return limit * (value - trigger) // (exit - trigger)
