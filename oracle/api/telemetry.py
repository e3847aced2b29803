"""HTTP ingest for gateways that cannot speak MQTT: ``POST /v1/telemetry/{device_id}``.

The body is the same signed envelope a device publishes over MQTT (``{"body": ..., "sig": ...}``, see
``ingest/telemetry/README.md``); the device id is in the path, as it is in the MQTT topic. The request
goes through the very same :class:`~ingest.telemetry.pipeline.TelemetryIngest` as the MQTT worker.

Responses:

- ``202`` ``{"accepted": n, "duplicates": n, "rejected": n, "rejects": [{"reason", "message", "seq"}],
  "cid": ...}``: committed; a gateway must not resend on 202 (resending is harmless, only duplicates).
- ``400`` / ``413`` ``application/problem+json`` (RFC 9457) when the request itself is unusable (not
  JSON, not an envelope, too large). The refusal is still recorded in ``rejects`` with source ``http``.
- ``503`` problem JSON when the database is unavailable: nothing was stored, retry later.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ingest.telemetry.envelope import MAX_ENVELOPE_BYTES, RejectReason
from ingest.telemetry.pipeline import BatchOutcome, IncomingMessage, TelemetryIngest
from oracle.context import Context
from oracle.errors import StorageError

router = APIRouter(tags=["telemetry"])

_INGEST_KEY = "telemetry_ingest"
_lock = threading.Lock()
_REQUEST_LEVEL = {RejectReason.MALFORMED, RejectReason.TOO_LARGE}


def telemetry_ingest(ctx: Context) -> TelemetryIngest:
    """The context's shared ingest pipeline (one per process, so its device cache is shared)."""
    with _lock:
        found = ctx.extras.get(_INGEST_KEY)
        if isinstance(found, TelemetryIngest):
            return found
        from oracle.devices import load_kek

        made = TelemetryIngest(
            sessions=ctx.sessions,
            blobs=ctx.blobs,
            kek=load_kek(ctx.settings),
            max_future_skew_s=ctx.settings.telemetry_max_future_skew_s,
            reorder_window_s=ctx.settings.telemetry_reorder_window_s,
        )
        ctx.extras[_INGEST_KEY] = made
        return made


def _problem(status: int, title: str, detail: str, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"urn:oracle:telemetry:{reason}",
            "title": title,
            "status": status,
            "detail": detail,
            "reason": reason,
            **extra,
        },
        status_code=status,
        media_type="application/problem+json",
    )


@router.post("/v1/telemetry/{device_id}", status_code=202)
async def post_telemetry(device_id: str, request: Request) -> JSONResponse:
    """Ingest one signed envelope for ``device_id``. See the module docstring for the responses."""
    ctx: Context = request.app.state.ctx
    payload = bytearray()
    async for chunk in request.stream():
        payload += chunk
        if len(payload) > MAX_ENVELOPE_BYTES:
            # Stop reading: an oversized body is refused without buffering all of it.
            payload = payload[: MAX_ENVELOPE_BYTES + 1]
            break
    message = IncomingMessage(device_id, bytes(payload), "http")
    try:
        ingest = await run_in_threadpool(telemetry_ingest, ctx)
        outcome: BatchOutcome = await run_in_threadpool(ingest.process, [message])
    except StorageError as e:
        return _problem(503, "Storage unavailable", f"nothing was stored: {e}", "storage_unavailable")
    result = outcome.messages[0]
    whole = result.rejects[0] if len(result.rejects) == 1 and result.rejects[0].seq is None else None
    if whole is not None and whole.reason in _REQUEST_LEVEL and result.accepted == 0:
        status = 413 if whole.reason is RejectReason.TOO_LARGE else 400
        return _problem(
            status, "Unusable telemetry envelope", whole.message, whole.reason.value, cid=outcome.cid
        )
    return JSONResponse(
        {
            "device_id": device_id,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": len(result.rejects),
            "rejects": [
                {"reason": r.reason.value, "message": r.message, "seq": r.seq} for r in result.rejects
            ],
            "cid": outcome.cid,
        },
        status_code=202,
    )
