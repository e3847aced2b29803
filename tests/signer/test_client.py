"""LocalSigner follows the service's rules; collect_signatures builds a k-of-n set in router order."""

from __future__ import annotations

import pytest
from eth_account import Account

from oracle.errors import ConfigError, SignerError
from oracle.reports import Report, report_digest
from oracle.signer import (
    HttpSigner,
    LocalSigner,
    SignedReport,
    Signer,
    SignerUnavailable,
    SigningRefused,
    collect_signatures,
)
from oracle.signer.policy import RateLimits
from tests.signer.conftest import CHAIN_ID, OTHER_ROUTER, ROUTER, fresh_subject, make_report

# Made-up keys for tests only.
KEYS = ["0x" + f"{i:02x}" * 32 for i in (0x41, 0x42, 0x43, 0x44)]


class RefusingSigner:
    """A signer that is down: the collector must move on to the next one."""

    address = "0x000000000000000000000000000000000000dEaD"

    def sign(self, report: Report, *, chain_id: int, router: str) -> SignedReport:
        raise SignerUnavailable("signer at http://127.0.0.1:9 unreachable", reason="unreachable")


def test_local_signer_signs_recoverably_and_applies_the_policy() -> None:
    signer = LocalSigner(KEYS[0], domains=[(CHAIN_ID, ROUTER)])
    assert isinstance(signer, Signer)
    report = make_report(fresh_subject(), 1)
    signed = signer.sign(report, chain_id=CHAIN_ID, router=ROUTER)
    digest = report_digest(report, chain_id=CHAIN_ID, router=ROUTER)
    assert signed.digest == digest
    assert Account._recover_hash(digest, signature=signed.signature) == signer.address
    assert signer.address == Account.from_key(KEYS[0]).address
    with pytest.raises(SigningRefused) as info:
        signer.sign(make_report(report.subject, 1, value=7), chain_id=CHAIN_ID, router=ROUTER)
    assert info.value.reason == "epoch_conflict"
    with pytest.raises(SigningRefused) as info:
        signer.sign(make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=OTHER_ROUTER)
    assert info.value.reason == "wrong_router"
    assert KEYS[0][2:] not in repr(signer)


def test_local_signer_rate_limit_when_asked() -> None:
    signer = LocalSigner(KEYS[0], limits=RateLimits(subject_rate=0.001, subject_burst=1))
    subject = fresh_subject()
    signer.sign(make_report(subject, 1), chain_id=CHAIN_ID, router=ROUTER)
    with pytest.raises(SigningRefused, match="rate limit"):
        signer.sign(make_report(subject, 2), chain_id=CHAIN_ID, router=ROUTER)


def test_collect_two_of_three_in_ascending_signer_order() -> None:
    signers = [LocalSigner(k) for k in KEYS[:3]]
    report = make_report(fresh_subject(), 4)
    got = collect_signatures(signers, report, chain_id=CHAIN_ID, router=ROUTER, threshold=2)
    assert len(got) == 2
    addrs = [s.signer for s in got]
    assert [int(a, 16) for a in addrs] == sorted(int(a, 16) for a in addrs)
    assert set(addrs) <= {s.address for s in signers}
    assert len(set(addrs)) == 2
    # Only the first two were asked: the third signer's epoch memory is still empty.
    assert set(addrs) == {signers[0].address, signers[1].address}
    signers[2].sign(report, chain_id=CHAIN_ID, router=ROUTER)
    for s in got:
        assert Account._recover_hash(s.digest, signature=s.signature) == s.signer


def test_collect_skips_failing_and_duplicate_signers() -> None:
    a = LocalSigner(KEYS[3])
    same_key = LocalSigner(KEYS[3])
    b = LocalSigner(KEYS[1])
    report = make_report(fresh_subject(), 2)
    got = collect_signatures(
        [RefusingSigner(), a, same_key, b], report, chain_id=CHAIN_ID, router=ROUTER, threshold=2
    )
    assert sorted(s.signer for s in got) == sorted([a.address, b.address])
    assert int(got[0].signer, 16) < int(got[1].signer, 16)


def test_collect_fails_when_threshold_cannot_be_met() -> None:
    report = make_report(fresh_subject(), 1)
    with pytest.raises(SignerError) as info:
        collect_signatures(
            [RefusingSigner(), LocalSigner(KEYS[0])], report, chain_id=CHAIN_ID, router=ROUTER, threshold=2
        )
    assert isinstance(info.value, SignerUnavailable)
    assert info.value.reason == "threshold_not_met"
    assert "only 1 of 2" in str(info.value)
    assert "unreachable" in str(info.value)
    with pytest.raises(ValueError, match="threshold"):
        collect_signatures([LocalSigner(KEYS[0])], report, chain_id=CHAIN_ID, router=ROUTER, threshold=0)


def test_http_signer_refuses_an_empty_token() -> None:
    with pytest.raises(ConfigError):
        HttpSigner("http://127.0.0.1:1", "")
