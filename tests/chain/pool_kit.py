"""Helpers the DroughtInsurancePool tests share: writing policies and products, drought reports."""

from __future__ import annotations

from typing import Any

from oracle.reports import MAX_REVISIONS, Report, ReportKind, month_index_of, subject_id
from tests.fixtures.chain import ChainKit, make_report

USD = 10**6
REGION = subject_id("region", "test-pool")
START, END = 1_690_000_000, 1_700_000_000
#: The month ``END`` falls in; reports "for" it carry epochs MONTH * 1000 + revision.
MONTH = month_index_of(END)


def create_policy(
    chain: ChainKit,
    *,
    trigger: int = 2_000_000,
    exit: int = 4_000_000,
    limit: int = 1_000 * USD,
    insured: str | None = None,
    region: bytes = REGION,
    start: int = START,
    end: int = END,
    pool: Any = None,
) -> int:
    """``createPolicy`` as the insurer; returns the policy id."""
    pool = pool or chain.pool
    call = pool.functions.createPolicy(
        insured or chain.accounts.insured.address, region, start, end, trigger, exit, limit
    )
    receipt = chain.send(call)
    (event,) = chain.events(pool, "PolicyCreated", receipt)
    return int(event["policyId"])


def severity(
    value: int,
    *,
    month: int = 0,
    revision: int = 1,
    observed_at: int = END - 86_400,
    region: bytes = REGION,
) -> Report:
    """A drought report for ``region``; epoch = month * 1000 + revision (month 0: the small epochs the
    router tests use)."""
    return make_report(
        region,
        kind=ReportKind.DROUGHT_SEVERITY,
        value=value,
        epoch=month * MAX_REVISIONS + revision,
        observed_at=observed_at,
    )


def paid(chain: ChainKit, receipt: Any) -> dict[int, int]:
    """policyId -> amount of the PayoutSent events in ``receipt`` (summed)."""
    out: dict[int, int] = {}
    for e in chain.events(chain.pool, "PayoutSent", receipt):
        out[e["policyId"]] = out.get(e["policyId"], 0) + e["amount"]
    return out
