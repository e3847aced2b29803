"""The FastAPI application: built by :func:`create_app` from a :class:`~oracle.context.Context`.

Unauthenticated: ``/healthz``, ``/readyz``, ``/metrics``, ``/docs``, ``/openapi.json``, and the data a
watcher needs to recompute a posted report (``/v1/blobs/{cid}``, ``/v1/reports/{subject}/{epoch}/manifest``,
rate-limited per address; :mod:`oracle.api.routes.public`). Everything else under ``/v1`` needs an API
key (see :mod:`oracle.api.auth`); errors are problem+json (:mod:`oracle.api.problems`).
To add a resource, write a router with the dependencies in :mod:`oracle.api.deps` and list it in
:data:`ROUTERS`.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from oracle import __version__
from oracle import provenance_api as provenance_routes
from oracle.api import telemetry as telemetry_routes
from oracle.api.limits import ApiLimits, BodySizeLimit, TokenBuckets
from oracle.api.metrics import DatabaseCollector, HttpMetrics
from oracle.api.openapi import problem_openapi
from oracle.api.problems import install_problem_handlers
from oracle.api.routes import admin, alarms, attestations, contracts, inputs, models, outbox, products, public
from oracle.api.routes import dispositions as disposition_routes
from oracle.chainlink import adapter as adapter_routes
from oracle.context import Context
from oracle.dashboard import routes as dashboard_routes
from oracle.errors import OracleError
from oracle.storage.db import ping

#: Every resource router, in the order they appear in /docs. Adding a resource = one line here.
ROUTERS: list[APIRouter] = [
    attestations.router,
    outbox.router,
    contracts.router,
    disposition_routes.router,
    inputs.router,
    models.router,
    products.router,
    public.router,
    admin.router,
    telemetry_routes.router,
    alarms.router,
    provenance_routes.router,
    adapter_routes.router,
    dashboard_routes.router,
]


def _mount_network(app: FastAPI, ctx: Context, registry: CollectorRegistry) -> None:
    """A network node also answers its peers (``/v1/peer/...``, each request signed by a member)."""
    from oracle.network.rounds import NodeRuntime

    runtime = ctx.extras.get("network_node")
    if not isinstance(runtime, NodeRuntime):
        return
    from oracle.network.metrics import NetworkCollector
    from oracle.network.peer import peer_router

    app.include_router(peer_router(ctx, runtime))
    registry.register(NetworkCollector(ctx, runtime))


def create_app(ctx: Context, *, limits: ApiLimits | None = None) -> FastAPI:
    """The API over ``ctx``. ``limits`` (else ``ctx.extras["api_limits"]``, else defaults) sets the
    per-key rate limit and the request-body cap."""
    if limits is None:
        found = ctx.extras.get("api_limits")
        limits = found if isinstance(found, ApiLimits) else ApiLimits()
    app = FastAPI(
        title="Parametric oracle",
        version=__version__,
        description=(
            "Signed drought and cold-chain reports for smart contracts. Authenticate with "
            "`Authorization: Bearer <key>` or `X-API-Key: <key>` (keys: `oracle apikeys create --role ...`). "
            "Errors are `application/problem+json` (RFC 9457)."
        ),
    )
    app.state.ctx = ctx
    app.state.limits = limits
    app.state.rate_buckets = TokenBuckets(rate_per_s=limits.rate_per_s, burst=limits.burst)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(ctx.sessions))
    app.state.metrics_registry = registry
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    _mount_network(app, ctx, registry)
    # Outermost first at runtime: metrics see every answer, including 413s from the size limit.
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(HttpMetrics, registry=registry)
    app.openapi = problem_openapi(app)  # type: ignore[method-assign]
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
        text = generate_latest().decode() + generate_latest(registry).decode()
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

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
