"""The FastAPI application: built by :func:`create_app` from a :class:`~oracle.context.Context`."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oracle import __version__
from oracle.context import Context
from oracle.errors import OracleError
from oracle.storage.db import ping


def create_app(ctx: Context) -> FastAPI:
    app = FastAPI(
        title="Parametric oracle",
        version=__version__,
        description="Signed drought and cold-chain reports for smart contracts.",
    )
    app.state.ctx = ctx
    started = time.monotonic()

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness: the process serves requests. Does not touch dependencies."""
        return {"status": "ok", "version": __version__, "uptime_s": round(time.monotonic() - started, 1)}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Readiness: the database, the chain RPC and the MQTT broker each answer."""
        checks = {"database": _check_db(ctx), "chain": _check_chain(ctx), "broker": _check_broker(ctx)}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return app


def _check_db(ctx: Context) -> dict[str, Any]:
    try:
        ping(ctx.engine)
    except OracleError as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True}


def _check_chain(ctx: Context) -> dict[str, Any]:
    if not ctx.chain_rpc_url:
        return {"ok": False, "error": "no chain RPC configured"}
    import httpx

    try:
        r = httpx.post(
            ctx.chain_rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            timeout=3.0,
        )
        block = int(r.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        return {"ok": False, "error": f"chain RPC unreachable: {e.__class__.__name__}"}
    return {"ok": True, "block": block}


def _check_broker(ctx: Context) -> dict[str, Any]:
    if not ctx.mqtt_url:
        return {"ok": False, "error": "no MQTT broker configured"}
    u = urlparse(ctx.mqtt_url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 1883), timeout=2.0):
            pass
    except OSError as e:
        return {"ok": False, "error": f"broker unreachable: {e.strerror or e.__class__.__name__}"}
    return {"ok": True}
