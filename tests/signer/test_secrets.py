"""Key material never appears in logs, errors, responses or reprs: checked on everything a real run emits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from oracle.errors import OracleError
from oracle.signer import HttpSigner, SigningRefused
from tests.signer.conftest import (
    CHAIN_ID,
    OTHER_ROUTER,
    ROUTER,
    SignerKeys,
    SignerProcess,
    fresh_subject,
    make_report,
    run_cli,
    signer_env,
)


def secret_forms(keys: SignerKeys) -> list[str]:
    k = keys.private_key_hex
    return [k, k.upper(), "0x" + k, k[:32], k[32:], keys.passphrase, keys.token]


def test_no_secret_in_anything_emitted(
    signer_keys: SignerKeys, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    emitted: list[str] = [signer_keys.keygen_output]
    proc = SignerProcess(
        keys=signer_keys,
        workdir=tmp_path_factory.mktemp("signer-secrets"),
        env_extra={"ORACLE_LOG_LEVEL": "DEBUG"},
        extra_args=["--subject-burst", "2", "--subject-rate", "0.001"],
    ).start()
    try:
        client = HttpSigner(proc.url, signer_keys.token)
        emitted.append(repr(client))
        subject = fresh_subject()
        signed = client.sign(make_report(subject, 2), chain_id=CHAIN_ID, router=ROUTER)
        emitted += [repr(signed), str(signed)]
        attempts: list[Callable[[], object]] = [
            lambda: client.sign(make_report(subject, 1), chain_id=CHAIN_ID, router=ROUTER),  # stale
            lambda: client.sign(make_report(subject, 3), chain_id=CHAIN_ID, router=ROUTER),  # rate limited
            lambda: client.sign(make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=OTHER_ROUTER),
            lambda: client.sign(
                make_report(fresh_subject(), 1, value=10**9), chain_id=CHAIN_ID, router=ROUTER
            ),
            lambda: HttpSigner(proc.url, "wrong-token-123456").sign(
                make_report(fresh_subject(), 1), chain_id=CHAIN_ID, router=ROUTER
            ),
        ]
        reasons = []
        for attempt in attempts:
            with pytest.raises(SigningRefused) as info:
                attempt()
            reasons.append(info.value.reason)
            emitted += [str(info.value), repr(info.value)]
        assert reasons == [
            "stale_epoch",
            "rate_limited",
            "wrong_router",
            "value_out_of_range",
            "unauthorized",
        ]
        for path, body in [
            ("/v1/health", None),
            ("/v1/sign", {"report": {"kind": 7}, "chainId": CHAIN_ID, "router": ROUTER}),
            ("/v1/sign", "not an object"),
        ]:
            resp = httpx.request(
                "GET" if body is None else "POST",
                proc.url + path,
                json=body,
                headers={"Authorization": f"Bearer {signer_keys.token}"},
                timeout=5,
                trust_env=False,
            )
            emitted.append(resp.text + str(resp.headers))
    finally:
        proc.stop()
    emitted.append(proc.logs())
    assert "refused to sign reason=stale_epoch" in proc.logs()  # refusals are logged with their reason
    assert "refused request reason=unauthorized" in proc.logs()

    # A start-up with the wrong passphrase fails with a clear line that quotes no secret.
    bad = run_cli(
        ["serve", "--dir", str(signer_keys.dir), "--port", "0", "--chain-id", "1", "--router", ROUTER],
        cwd=tmp_path,
        env=signer_env(tmp_path, ORACLE_SIGNER_PASSPHRASE="wrong-" + signer_keys.passphrase[:8]),
    )
    assert bad.returncode == 2
    assert "wrong passphrase" in bad.stderr
    assert "Traceback" not in bad.stderr
    emitted.append(bad.stdout + bad.stderr)

    text = "\n".join(emitted)
    assert signer_keys.address in text  # the check below is looking at real output
    for secret in secret_forms(signer_keys):
        assert secret not in text


def test_refusal_errors_are_oracle_errors(signer_keys: SignerKeys) -> None:
    err = SigningRefused("x", reason="stale_epoch")
    assert isinstance(err, OracleError)
    assert err.status == 409
