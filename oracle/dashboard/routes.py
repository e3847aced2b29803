"""HTTP routes of the dashboard.

``GET /`` and ``GET /dashboard/static/...`` serve the page and its vendored assets without a key: they hold
no data. The page asks for a viewer key (kept in the tab's ``sessionStorage``; a ``#key=...`` fragment is
accepted once and removed from the address bar) and calls the JSON views below with ``X-API-Key``:

=====================================  ==================================================================
``GET /v1/dashboard/cursor``           ``{"cursor": str}``, changes whenever any shown data changes
``GET /v1/dashboard/overview``         regions (GeoJSON + current severity), policies, payouts,
                                       shipments, attestations (tx hash, top-3 factors), rejects
``GET /v1/dashboard/regions/{id}``     one region's decisions by period: severity, factors, SPI-1/3/6
``GET /v1/dashboard/shipments/{id}``   one shipment's temperatures, profile band, breach/warning markers,
                                       its devices and how each signs
``GET /v1/dashboard/devices``          every device: status, how it signs (ES256/EdDSA key, or HS256
                                       marked weaker), current key fingerprint; never a secret
``GET .../attestations/{id}/custody``  one attestation's chain of custody: the decision's steps, raw
                                       inputs named by what they are, a stage graph
``GET /v1/dashboard/governance``       from the chain: signers, threshold, timelock, and the signer,
                                       threshold and consumer changes pending with their activation time
=====================================  ==================================================================
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from oracle.api.deps import CtxDep, ViewerKey
from oracle.api.problems import problem_responses
from oracle.dashboard.custody import attestation_custody
from oracle.dashboard.history import region_history
from oracle.dashboard.shipments import shipment_detail
from oracle.dashboard.views import change_cursor, overview
from oracle.errors import ChainError, NotFound

STATIC_DIR = Path(__file__).parent / "static"

#: The page never loads anything from another origin; the policy makes that a browser-enforced fact.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter()
api = APIRouter(prefix="/v1/dashboard", tags=["dashboard"], responses=problem_responses(401, 403, 404, 429))


@router.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    """The dashboard page (static; data comes from the JSON views)."""
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"), headers=_SECURITY_HEADERS)


@router.get("/dashboard/static/{path:path}", include_in_schema=False)
def static_file(path: str) -> FileResponse:
    """A file under ``static/``; anything resolving outside it (``..``, symlinks) is a 404."""
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.name == "index.html":
        raise NotFound(f"no dashboard asset {path!r}")
    return FileResponse(target, headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


@api.get("/cursor")
async def cursor(ctx: CtxDep, _: ViewerKey) -> dict[str, str]:
    """A token that changes when anything on the dashboard changes; poll it every few seconds."""

    def run() -> str:
        with ctx.sessions() as s:
            return change_cursor(s)

    return {"cursor": await run_in_threadpool(run)}


@api.get("/overview")
async def get_overview(ctx: CtxDep, _: ViewerKey) -> dict[str, Any]:
    """Regions, policies, payouts, shipments, attestations and rejects (newest first, bounded)."""

    def run() -> dict[str, Any]:
        with ctx.sessions() as s:
            out = overview(s)
            runtime = ctx.extras.get("network_node")
            network = getattr(runtime, "network", None)
            if network is not None:
                from oracle.network.heartbeat import heartbeats

                out["heartbeats"] = heartbeats(s, int(network.heartbeat_s), time.time())
            else:
                out["heartbeats"] = None
            return out

    return await run_in_threadpool(run)


@api.get("/regions/{region_id}")
async def get_region(region_id: str, ctx: CtxDep, _: ViewerKey) -> dict[str, Any]:
    """One region's decisions, oldest period first, with severity, factors and SPI-1/3/6. 404 if unknown."""

    def run() -> dict[str, Any]:
        with ctx.sessions() as s:
            return region_history(s, ctx.blobs, region_id)

    return await run_in_threadpool(run)


@api.get("/shipments/{shipment}")
async def get_shipment(shipment: str, ctx: CtxDep, _: ViewerKey) -> dict[str, Any]:
    """One shipment by 0x subject or telemetry name: series (UNIX s, °C), band, markers. 404 if unknown."""

    def run() -> dict[str, Any]:
        with ctx.sessions() as s:
            return shipment_detail(s, shipment)

    return await run_in_threadpool(run)


@api.get("/devices")
async def get_devices(ctx: CtxDep, _: ViewerKey) -> dict[str, Any]:
    """Every telemetry device and how it signs; HS256 devices carry ``strength: weaker`` and a note."""

    def run() -> dict[str, Any]:
        from oracle.devices import device_views

        with ctx.sessions() as s:
            return {"items": list(device_views(s).values())}

    return await run_in_threadpool(run)


@api.get("/attestations/{report_id}/custody")
async def get_custody(report_id: str, ctx: CtxDep, _: ViewerKey) -> dict[str, Any]:
    """One attestation's decision steps in order with their inputs named, and a stage graph. 404 if the
    attestation is unknown; a report without a decision manifest has no steps and says so in ``note``."""

    def run() -> dict[str, Any]:
        with ctx.sessions() as s:
            return attestation_custody(s, ctx.blobs, report_id)

    return await run_in_threadpool(run)


@api.get("/governance")
async def get_governance(ctx: CtxDep, _: ViewerKey) -> dict[str, Any]:
    """The router's signers, threshold and timelock and its pending governance changes, read from the
    chain. Without a chain, or when it cannot be read, ``{"available": false, "reason": ...}``."""

    def run() -> dict[str, Any]:
        from oracle.chain.client import connect
        from oracle.chain.deploy import Deployment
        from oracle.dashboard.governance import governance_view

        deployment = ctx.extras.get("deployment")
        if not ctx.chain_rpc_url or not isinstance(deployment, Deployment):
            return {"available": False, "reason": "no chain configured"}
        try:
            w3 = connect(ctx.chain_rpc_url, timeout=5.0)
            return governance_view(w3, deployment.contract(w3, "OracleRouter"))
        except (ChainError, NotFound) as e:
            # The class only: an RPC URL in the message may carry a provider key.
            return {"available": False, "reason": f"the router could not be read ({type(e).__name__})"}

    return await run_in_threadpool(run)


router.include_router(api)
