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


def period_due(
    *,
    value: int,
    trigger: int,
    exit: int,
    limit: int,
    deductible: int,
    period_paid: int,
    policy_paid: int,
) -> int:
    """What ``DroughtInsurancePool`` pays a policy when a month's value is settled (its ``due``).

    The period's entitlement is ``drought_payout(...) - deductible`` (at least 0); the pool pays what it
    exceeds ``period_paid`` (what the period already settled: a top-up for a revision or a worse month
    of the same period, nothing when lower, never a claw-back), at most what is left of the limit after
    ``policy_paid`` (all periods' payouts so far). Raises ``ValueError`` on terms the contract refuses.
    """
    if not 0 <= deductible < limit:
        raise ValueError("deductible must be in [0, limit)")
    if not (0 <= period_paid <= policy_paid <= limit):
        raise ValueError("need 0 <= period_paid <= policy_paid <= limit")
    gross = drought_payout(value=value, trigger=trigger, exit=exit, limit=limit)
    entitled = max(gross - deductible, 0)
    return max(min(entitled - period_paid, limit - policy_paid), 0)
