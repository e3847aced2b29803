"""The HTTP layer in-process: failures of the epoch store and oversized bodies answer with a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from oracle.errors import StorageError
from oracle.signer.app import create_app
from oracle.signer.keys import SigningKey
from oracle.signer.policy import EpochRecord, RateLimiter, SigningPolicy, domains_of
from oracle.signer.service import SigningService
from tests.signer.conftest import CHAIN_ID, ROUTER, fresh_subject, make_report

TOKEN = "test-token-0123456789"


class BrokenStore:
    """An epoch store whose disk is gone: nothing may be signed."""

    def sign_once(self, subject: bytes, epoch: int, digest: bytes, sign: Callable[[], bytes]) -> EpochRecord:
        raise StorageError("signer epoch store /data/signer/epochs.sqlite3 failed: disk I/O error")

    def latest_epoch(self, subject: bytes) -> int | None:
        return None


def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to the app in-process through httpx's ASGI transport."""
    service = SigningService(
        SigningKey.from_hex("0x" + "5a" * 32),
        policy=SigningPolicy(domains=domains_of([(CHAIN_ID, ROUTER)])),
        store=BrokenStore(),
        limiter=RateLimiter(),
    )
    app = create_app(service, token=TOKEN)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://signer",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(go())


def test_storage_failure_is_503_and_nothing_signed() -> None:
    body = {"report": make_report(fresh_subject(), 1).to_json(), "chainId": CHAIN_ID, "router": ROUTER}
    resp = call("POST", "/v1/sign", json=body)
    assert resp.status_code == 503
    assert resp.json()["error"]["reason"] == "storage_failed"
    assert "signature" not in resp.json()


def test_oversized_body_is_refused() -> None:
    resp = call("POST", "/v1/sign", content=b"{" + b" " * 20_000 + b"}")
    assert resp.status_code == 400
    assert resp.json()["error"]["reason"] == "bad_request"


def test_no_docs_or_openapi_exposed() -> None:
    assert call("GET", "/docs").status_code == 404
    assert call("GET", "/openapi.json").status_code == 404
