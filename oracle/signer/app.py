"""The signer's HTTP interface, meant for 127.0.0.1 only.

``GET /v1/health`` (no token) → ``{"status": "ok", "address": "0x...", "domains": [{"chainId", "router"}]}``.
``POST /v1/sign`` with ``Authorization: Bearer <token>`` and
``{"report": Report.to_json(), "chainId": int, "router": "0x..."}`` →
``{"signature": "0x<65 bytes>", "signer": "0x...", "digest": "0x<32 bytes>"}``.
Refusals answer ``{"error": {"reason": ..., "message": ...}}`` with the status from
:data:`oracle.signer.policy.STATUS_BY_REASON`; a storage failure answers 503 ``storage_failed``.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from oracle.errors import StorageError
from oracle.signer.policy import SigningRefused, parse_sign_request
from oracle.signer.service import SigningService

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16_384  # a sign request is well under 1 KiB; anything larger is not one


def _error(status: int, reason: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"reason": reason, "message": message}}, status_code=status, headers=headers
    )


def create_app(service: SigningService, *, token: str) -> FastAPI:
    """The FastAPI app around ``service``; ``token`` is the bearer token ``POST /v1/sign`` requires."""
    if len(token) < 16:
        raise ValueError("the bearer token must be at least 16 characters")
    expected = f"Bearer {token}".encode()
    app = FastAPI(title="oracle signer", docs_url=None, redoc_url=None, openapi_url=None)

    def require_token(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not secrets.compare_digest(given, expected):
            logger.warning("refused request reason=unauthorized path=%s", request.url.path)
            raise SigningRefused("missing or wrong bearer token", reason="unauthorized")

    @app.exception_handler(SigningRefused)
    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SigningRefused)
        return _error(exc.status, exc.reason, str(exc))

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: Exception) -> JSONResponse:
        logger.error("epoch store failed: %s", exc)
        return _error(503, "storage_failed", "the signer could not record the signature; nothing was signed")

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        domains = service.policy.domains or frozenset()
        return {
            "status": "ok",
            "address": service.address,
            "domains": [{"chainId": d.chain_id, "router": d.router} for d in sorted(domains, key=str)],
        }

    @app.post("/v1/sign", dependencies=[Depends(require_token)])
    async def sign(request: Request) -> dict[str, str]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise SigningRefused(f"request body over {MAX_BODY_BYTES} bytes", reason="bad_request")
        try:
            body = json.loads(raw)
        except ValueError:
            logger.warning("refused request reason=bad_request: body is not JSON")
            raise SigningRefused("request body is not JSON", reason="bad_request") from None
        try:
            req = parse_sign_request(body)
        except SigningRefused as e:
            logger.warning("refused request reason=%s: %s", e.reason, e)
            raise
        signed = await run_in_threadpool(service.sign, req.report, chain_id=req.chain_id, router=req.router)
        return {
            "signature": "0x" + signed.signature.hex(),
            "signer": signed.signer,
            "digest": "0x" + signed.digest.hex(),
        }

    return app
