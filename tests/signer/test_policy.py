"""The pure signing rules: parsing, content and domain checks, epoch decisions, token buckets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oracle.errors import SignerError, ValidationError
from oracle.signer.policy import (
    Domain,
    EpochRecord,
    RateLimiter,
    RateLimits,
    SigningPolicy,
    SigningRefused,
    TokenBucket,
    decide_epoch,
    domains_of,
    parse_sign_request,
)
from tests.signer.conftest import CHAIN_ID, OTHER_ROUTER, ROUTER, fresh_subject, make_report


def body(**report_changes: Any) -> dict[str, Any]:
    report = make_report(fresh_subject(), 1).to_json()
    report.update(report_changes)
    return {"report": report, "chainId": CHAIN_ID, "router": ROUTER.lower()}


def reason_of(fn: Any) -> str:
    with pytest.raises(SigningRefused) as info:
        fn()
    assert isinstance(info.value, SignerError)
    return info.value.reason


def test_parse_round_trips_and_checksums_router() -> None:
    b = body()
    req = parse_sign_request(b)
    assert req.router == ROUTER
    assert req.chain_id == CHAIN_ID
    assert req.report.to_json() == b["report"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kind": 0}, "unknown_kind"),
        ({"kind": 3}, "unknown_kind"),
        ({"kind": "1"}, "bad_report"),
        ({"kind": True}, "bad_report"),
        ({"epoch": 0}, "bad_epoch"),
        ({"epoch": 2**64}, "bad_epoch"),
        ({"subject": "0x1234"}, "bad_report"),
        ({"value": "1.5"}, "bad_report"),
        ({"observedAt": -1}, "bad_report"),
    ],
)
def test_parse_refuses_bad_reports_with_reason(changes: dict[str, Any], reason: str) -> None:
    assert reason_of(lambda: parse_sign_request(body(**changes))) == reason


@pytest.mark.parametrize(
    "change",
    [
        {"chainId": 0},
        {"chainId": True},
        {"chainId": None},
        {"router": "0xabc"},
        {"router": 5},
        {"report": []},
    ],
)
def test_parse_refuses_bad_envelope(change: dict[str, Any]) -> None:
    assert reason_of(lambda: parse_sign_request(body() | change)) == "bad_request"


def test_policy_checks_values_and_domains() -> None:
    policy = SigningPolicy(domains=domains_of([(CHAIN_ID, ROUTER)]))
    ok = make_report(fresh_subject(), 1, value=5_000_000)
    policy.check(ok, chain_id=CHAIN_ID, router=ROUTER.lower())
    too_high = make_report(fresh_subject(), 1, value=5_000_001)
    assert reason_of(lambda: policy.check(too_high, chain_id=CHAIN_ID, router=ROUTER)) == "value_out_of_range"
    assert reason_of(lambda: policy.check(ok, chain_id=1, router=ROUTER)) == "wrong_chain_id"
    assert reason_of(lambda: policy.check(ok, chain_id=CHAIN_ID, router=OTHER_ROUTER)) == "wrong_router"
    # With no domain set (the in-memory test signer) any domain is accepted, values are still checked.
    SigningPolicy().check(ok, chain_id=1, router=OTHER_ROUTER)
    assert (
        reason_of(lambda: SigningPolicy().check(too_high, chain_id=1, router=ROUTER)) == "value_out_of_range"
    )


def test_domain_validation() -> None:
    with pytest.raises(ValidationError):
        Domain.of(0, ROUTER)
    with pytest.raises(ValidationError):
        Domain.of(1, "0x12")
    assert Domain.of(1, ROUTER.lower()).router == ROUTER


def test_decide_epoch() -> None:
    rec = EpochRecord(subject=b"s" * 32, epoch=5, digest=b"d" * 32, signature=b"x" * 65)
    assert decide_epoch(same_epoch=None, latest_epoch=None, epoch=1, digest=b"a" * 32) is False
    assert decide_epoch(same_epoch=None, latest_epoch=5, epoch=6, digest=b"a" * 32) is False
    assert decide_epoch(same_epoch=rec, latest_epoch=9, epoch=5, digest=b"d" * 32) is True
    assert reason_of(lambda: decide_epoch(same_epoch=rec, latest_epoch=5, epoch=5, digest=b"e" * 32)) == (
        "epoch_conflict"
    )
    assert reason_of(lambda: decide_epoch(same_epoch=None, latest_epoch=5, epoch=5, digest=b"e" * 32)) == (
        "stale_epoch"
    )
    assert reason_of(lambda: decide_epoch(same_epoch=None, latest_epoch=5, epoch=4, digest=b"e" * 32)) == (
        "stale_epoch"
    )


def test_token_bucket_refills_at_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3.0, tokens=3.0, updated=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.4) is False  # 0.8 tokens
    assert b.take(0.5) is True  # 1.0 token
    assert [b.take(100.0) for _ in range(3)] == [True, True, True]  # capped at burst 3
    assert b.take(100.0) is False


@given(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=60))
def test_token_bucket_never_exceeds_rate_times_time_plus_burst(gaps: list[float]) -> None:
    b = TokenBucket(rate=1.5, burst=4.0, tokens=4.0, updated=0.0)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += b.take(now)
    assert granted <= 4.0 + 1.5 * now + 1e-9


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_per_subject_and_global() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimits(global_rate=1.0, global_burst=4, subject_rate=0.5, subject_burst=2), clock
    )
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    limiter.take(a)
    limiter.take(a)
    assert reason_of(lambda: limiter.take(a)) == "rate_limited"
    limiter.take(b)
    limiter.take(b)
    # The global bucket (4) is empty now: c is refused although its own bucket is full ...
    with pytest.raises(SigningRefused, match="global"):
        limiter.take(c)
    # ... and that refusal did not cost c its own token: after 1 s the global bucket has one token.
    clock.now = 1.0
    limiter.take(c)
    clock.now = 4.0  # a's bucket refilled at 0.5/s for 4 s; the global one has tokens again too
    limiter.take(a)
    limiter.take(a)
    assert reason_of(lambda: limiter.take(a)) == "rate_limited"


def test_rate_limits_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        RateLimits(subject_rate=0)
    with pytest.raises(ValidationError):
        RateLimits(global_burst=0.5)


def test_epochs_ahead_of_the_period_clock_are_refused() -> None:
    """An epoch of 2^63 − 1 would make every later report for the subject stale: refused by the signer."""
    import time

    from oracle.reports import MAX_REVISIONS, ReportKind, max_epoch, month_index_of

    policy = SigningPolicy(domains=domains_of([(CHAIN_ID, ROUTER)]))
    now = int(time.time())
    this_month = month_index_of(now) * MAX_REVISIONS
    assert max_epoch(ReportKind.DROUGHT_SEVERITY, now=now) == this_month + MAX_REVISIONS - 1
    # The last month's revisions, this month's, and a cold-chain revision are fine.
    for epoch, kind in (
        (this_month - MAX_REVISIONS + 3, ReportKind.DROUGHT_SEVERITY),
        (this_month + 999, ReportKind.DROUGHT_SEVERITY),
        (MAX_REVISIONS, ReportKind.COLDCHAIN_VERDICT),
    ):
        report = make_report(
            fresh_subject(), epoch, kind=kind, value=1 if kind is ReportKind.COLDCHAIN_VERDICT else 2_500_000
        )
        policy.check(report, chain_id=CHAIN_ID, router=ROUTER)
    for epoch, kind in (
        (2**63 - 1, ReportKind.DROUGHT_SEVERITY),
        (this_month + MAX_REVISIONS, ReportKind.DROUGHT_SEVERITY),
        (MAX_REVISIONS + 1, ReportKind.COLDCHAIN_VERDICT),
    ):
        report = make_report(
            fresh_subject(), epoch, kind=kind, value=1 if kind is ReportKind.COLDCHAIN_VERDICT else 2_500_000
        )
        assert (
            reason_of(lambda r=report: policy.check(r, chain_id=CHAIN_ID, router=ROUTER))
            == "epoch_too_far_ahead"
        )
