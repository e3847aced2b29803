"""The signer as a real separate process, reached through HttpSigner and raw HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from eth_account import Account

from oracle.errors import SignerError
from oracle.reports import ReportKind, Verdict, report_digest
from oracle.signer import HttpSigner, SignedReport, SignerUnavailable, SigningRefused, recover_signer
from tests.signer.conftest import (
    CHAIN_ID,
    OTHER_ROUTER,
    ROUTER,
    SignerKeys,
    SignerProcess,
    copy_keys,
    fresh_subject,
    make_report,
)


@pytest.fixture
def client(signer_process: SignerProcess, signer_keys: SignerKeys) -> HttpSigner:
    return HttpSigner(signer_process.url, signer_keys.token)


def raw_sign(url: str, body: Any, token: str | None, *, scheme: str = "Bearer") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return httpx.post(f"{url}/v1/sign", json=body, headers=headers, timeout=5, trust_env=False)


def refusal(fn: Any) -> SigningRefused:
    with pytest.raises(SigningRefused) as info:
        fn()
    return info.value


def test_health_reports_address_and_domain_only(
    signer_process: SignerProcess, signer_keys: SignerKeys
) -> None:
    body = httpx.get(f"{signer_process.url}/v1/health", timeout=5, trust_env=False).json()
    assert body == {
        "status": "ok",
        "address": signer_keys.address,
        "domains": [{"chainId": CHAIN_ID, "router": ROUTER}],
    }
    assert signer_process.url.startswith("http://127.0.0.1:")


def test_signs_through_http_and_signature_recovers(client: HttpSigner, signer_keys: SignerKeys) -> None:
    report = make_report(fresh_subject(), 1)
    signed = client.sign(report, chain_id=CHAIN_ID, router=ROUTER)
    digest = report_digest(report, chain_id=CHAIN_ID, router=ROUTER)
    assert signed.digest == digest
    assert len(signed.signature) == 65
    assert signed.signature[64] in (27, 28)
    assert Account._recover_hash(digest, signature=signed.signature) == signer_keys.address
    assert recover_signer(report, signed.signature, chain_id=CHAIN_ID, router=ROUTER) == signer_keys.address
    assert signed.signer == client.address == signer_keys.address
    # The router is matched case-insensitively: a lowercase address is the same contract.
    later = make_report(report.subject, 2)
    assert client.sign(later, chain_id=CHAIN_ID, router=ROUTER.lower()).signer == signer_keys.address


def test_coldchain_verdict_is_signed(client: HttpSigner) -> None:
    report = make_report(
        fresh_subject("shipment"), 7, kind=ReportKind.COLDCHAIN_VERDICT, value=int(Verdict.BREACH)
    )
    assert client.sign(report, chain_id=CHAIN_ID, router=ROUTER).report == report


@pytest.mark.parametrize(
    ("scheme", "token"),
    [
        ("Bearer", None),
        ("Bearer", "wrong-token-wrong-token"),
        ("Basic", "RIGHT"),
        ("Bearer", "RIGHT-but-longer"),
    ],
)
def test_missing_or_wrong_token_is_401(
    signer_process: SignerProcess, signer_keys: SignerKeys, scheme: str, token: str | None
) -> None:
    if token is not None:
        token = token.replace("RIGHT", signer_keys.token)
    body = {"report": make_report(fresh_subject(), 1).to_json(), "chainId": CHAIN_ID, "router": ROUTER}
    resp = raw_sign(signer_process.url, body, token, scheme=scheme)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"]["reason"] == "unauthorized"


def test_http_signer_with_wrong_token_raises_unauthorized(signer_process: SignerProcess) -> None:
    signer = HttpSigner(signer_process.url, "not-the-token-at-all")
    err = refusal(lambda: signer.sign(make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=ROUTER))
    assert (err.reason, err.status) == ("unauthorized", 401)


def test_unknown_kind_is_422(signer_process: SignerProcess, signer_keys: SignerKeys) -> None:
    report = make_report(fresh_subject(), 1).to_json()
    report["kind"] = 9
    resp = raw_sign(
        signer_process.url, {"report": report, "chainId": CHAIN_ID, "router": ROUTER}, signer_keys.token
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["reason"] == "unknown_kind"
    assert "9" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ReportKind.DROUGHT_SEVERITY, 5_000_001),
        (ReportKind.DROUGHT_SEVERITY, -1),
        (ReportKind.COLDCHAIN_VERDICT, 3),
    ],
)
def test_value_out_of_range_is_422(client: HttpSigner, kind: ReportKind, value: int) -> None:
    err = refusal(
        lambda: client.sign(
            make_report(fresh_subject(), 1, kind=kind, value=value), chain_id=CHAIN_ID, router=ROUTER
        )
    )
    assert err.reason == "value_out_of_range"
    assert err.status == 422


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"chainId": CHAIN_ID, "router": ROUTER},
        {"report": {"kind": 1}, "chainId": CHAIN_ID, "router": ROUTER},
        {"report": "x", "chainId": CHAIN_ID, "router": ROUTER},
        {"report": None, "chainId": "31337", "router": ROUTER},
        {"report": None, "chainId": CHAIN_ID, "router": "0x1234"},
    ],
)
def test_malformed_requests_are_400(
    signer_process: SignerProcess, signer_keys: SignerKeys, body: Any
) -> None:
    resp = raw_sign(signer_process.url, body, signer_keys.token)
    assert resp.status_code == 400
    assert resp.json()["error"]["reason"] in {"bad_request", "bad_report"}


def test_non_json_body_is_400(signer_process: SignerProcess, signer_keys: SignerKeys) -> None:
    resp = httpx.post(
        f"{signer_process.url}/v1/sign",
        content=b"{not json",
        headers={"Authorization": f"Bearer {signer_keys.token}"},
        timeout=5,
        trust_env=False,
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == {"reason": "bad_request", "message": "request body is not JSON"}


def test_stale_epoch_is_409(client: HttpSigner) -> None:
    subject = fresh_subject()
    client.sign(make_report(subject, 10), chain_id=CHAIN_ID, router=ROUTER)
    for epoch in (9, 1):
        err = refusal(lambda e=epoch: client.sign(make_report(subject, e), chain_id=CHAIN_ID, router=ROUTER))
        assert err.reason == "stale_epoch"
        assert err.status == 409
    assert client.sign(make_report(subject, 11), chain_id=CHAIN_ID, router=ROUTER).report.epoch == 11


def test_same_epoch_different_report_is_409(client: HttpSigner) -> None:
    subject = fresh_subject()
    client.sign(make_report(subject, 3, value=1_000_000), chain_id=CHAIN_ID, router=ROUTER)
    err = refusal(
        lambda: client.sign(make_report(subject, 3, value=4_000_000), chain_id=CHAIN_ID, router=ROUTER)
    )
    assert err.reason == "epoch_conflict"


def test_identical_report_is_resigned_idempotently(client: HttpSigner) -> None:
    subject = fresh_subject()
    report = make_report(subject, 5)
    first = client.sign(report, chain_id=CHAIN_ID, router=ROUTER)
    again = client.sign(report, chain_id=CHAIN_ID, router=ROUTER)
    assert again == first
    # Even after a later epoch, the retry of epoch 5 gets the stored signature, not a refusal.
    client.sign(make_report(subject, 6), chain_id=CHAIN_ID, router=ROUTER)
    assert client.sign(report, chain_id=CHAIN_ID, router=ROUTER).signature == first.signature


def test_wrong_chain_or_router_is_403(client: HttpSigner) -> None:
    report = make_report(fresh_subject(), 1)
    err = refusal(lambda: client.sign(report, chain_id=1, router=ROUTER))
    assert (err.reason, err.status) == ("wrong_chain_id", 403)
    err = refusal(lambda: client.sign(report, chain_id=CHAIN_ID, router=OTHER_ROUTER))
    assert (err.reason, err.status) == ("wrong_router", 403)
    # Refusals for the wrong domain did not burn the epoch: the right domain still signs epoch 1.
    assert client.sign(report, chain_id=CHAIN_ID, router=ROUTER).report.epoch == 1


def test_subject_rate_limit_is_429(client: HttpSigner) -> None:
    subject = fresh_subject()
    for epoch in range(1, 6):  # the fixture's per-subject burst is 5, refilling at 0.001/s
        client.sign(make_report(subject, epoch), chain_id=CHAIN_ID, router=ROUTER)
    err = refusal(lambda: client.sign(make_report(subject, 6), chain_id=CHAIN_ID, router=ROUTER))
    assert (err.reason, err.status) == ("rate_limited", 429)
    # Other subjects are not affected by one subject's bucket.
    client.sign(make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=ROUTER)


def test_unreachable_signer_is_signer_error() -> None:
    with pytest.raises(SignerUnavailable) as info:
        HttpSigner("http://127.0.0.1:9", "t" * 32, timeout=1.0).sign(
            make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=ROUTER
        )
    assert isinstance(info.value, SignerError)
    assert info.value.reason == "unreachable"


def test_restart_remembers_epochs_and_global_limit_applies(
    signer_keys: SignerKeys, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A restarted signer refuses stale epochs it signed before the restart and re-signs identical ones.

    This process runs on the dev-only plain key (ORACLE_SIGNER_PRIVATE_KEY), which also shows that path
    serving for real; the keystore path is what the module's main process uses.
    """
    workdir = tmp_path_factory.mktemp("signer-restart")
    proc = SignerProcess(
        keys=copy_keys(signer_keys, workdir / "signer"),
        workdir=workdir,
        extra_args=["--global-burst", "4", "--global-rate", "0.001"],
        env_extra={"ORACLE_SIGNER_PRIVATE_KEY": signer_keys.private_key_hex},
    ).start()
    assert "using a plain private key from the environment (dev only)" in proc.logs()
    subject = fresh_subject()
    try:
        first = HttpSigner(proc.url, signer_keys.token).sign(
            make_report(subject, 42), chain_id=CHAIN_ID, router=ROUTER
        )
        assert proc.stop() in (0, -15)
        proc.start()
        client = HttpSigner(proc.url, signer_keys.token)
        for epoch in (42, 41):
            different = make_report(subject, epoch, value=123)
            err = refusal(lambda r=different: client.sign(r, chain_id=CHAIN_ID, router=ROUTER))
            assert err.reason == ("epoch_conflict" if epoch == 42 else "stale_epoch")
        assert client.sign(make_report(subject, 42), chain_id=CHAIN_ID, router=ROUTER) == first
        # Refusals past the policy check spend tokens too (a flood of stale reports is still a flood):
        # 3 requests so far since the restart, so the global bucket of 4 allows one more, for anyone.
        client.sign(make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=ROUTER)
        err = refusal(lambda: client.sign(make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=ROUTER))
        assert err.reason == "rate_limited"
        assert "global" in str(err)
    finally:
        proc.stop()


def test_concurrent_requests_for_one_epoch_yield_one_signed_report(
    client: HttpSigner, signer_keys: SignerKeys
) -> None:
    """Racing requests for the same subject and epoch: exactly one report wins, the rest are conflicts."""
    subject = fresh_subject()
    reports = [make_report(subject, 1)] * 3 + [make_report(subject, 1, value=v) for v in (1, 2)]
    signers = [HttpSigner(client.url, token) for token in [signer_keys.token] * len(reports)]

    def attempt(i: int) -> SignedReport | str:
        try:
            return signers[i].sign(reports[i], chain_id=CHAIN_ID, router=ROUTER)
        except SigningRefused as e:
            return e.reason

    with ThreadPoolExecutor(max_workers=len(reports)) as pool:
        results = list(pool.map(attempt, range(len(reports))))
    signed = [r for r in results if isinstance(r, SignedReport)]
    assert len({s.digest for s in signed}) == 1
    assert len({s.signature for s in signed}) == 1
    assert all(r == "epoch_conflict" for r in results if isinstance(r, str))
    assert len(signed) in (1, 3)  # the three identical requests win or lose together
