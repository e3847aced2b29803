"""HTTP ingest for gateways that cannot speak MQTT: ``POST /v1/telemetry/{device_id}``.

The body is the same signed envelope a device publishes over MQTT (``{"body": ..., "sig": ...}``, see
``ingest/telemetry/README.md``); the device id is in the path, as it is in the MQTT topic. An authenticated
post goes through the very same :class:`~ingest.telemetry.pipeline.TelemetryIngest` as the MQTT worker.

Checks, in order; a post that fails one stores nothing (no blob, no observation, no reading):

1. **per source address** (``ORACLE_TELEMETRY_HTTP_SOURCE_RATE_PER_S`` / ``_BURST``), before the body is
   read: ``429`` with ``Retry-After``. Counted in the metrics only, so a flood writes nothing at all;
2. **the request**: a body over the envelope limit is ``413``, a bad device id or an unusable envelope
   ``400``;
3. **the device's signature** (its registered public key, ES256 or EdDSA, or a legacy HMAC secret):
   unknown device ``404``, a reading past a revoked device's last seq ``403`` (``revoked_key``), a
   signature that does not verify ``401`` (``bad_signature``), or one by a rotated-out key past its last
   seq ``401`` (``stale_key``). Steps 2 and 3 leave one bounded reject row (source ``http``, reason, a
   short message, the device id and source address; no payload, no CID) and count in the metrics;
4. **per device** (``ORACLE_TELEMETRY_HTTP_DEVICE_RATE_PER_S`` / ``_BURST``), counted only for posts the
   device really signed, so forged posts naming a device cannot use up its allowance: ``429`` with
   ``Retry-After``.

Then ``202`` ``{"accepted": n, "duplicates": n, "rejected": n, "rejects": [{"reason", "message", "seq"}],
"cid": ...}``: committed, with the batch's bytes in the content store and any per-reading refusals; a
gateway must not resend on 202 (resending is harmless, only duplicates). ``503`` problem JSON when the
database (or a device's sealed secret) is unusable: nothing was stored, retry later. Every error is
``application/problem+json`` (RFC 9457) with a ``reason``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ingest.telemetry import metrics
from ingest.telemetry.authn import check_envelope
from ingest.telemetry.envelope import (
    MAX_ENVELOPE_BYTES,
    EnvelopeError,
    RejectReason,
    canonical_items,
    parse_envelope,
)
from ingest.telemetry.pipeline import BatchOutcome, IncomingMessage, RejectRecord, TelemetryIngest
from oracle.api.limits import retry_after_header
from oracle.api.problems import problem_responses
from oracle.context import Context
from oracle.devices import DEVICE_ID_RE
from oracle.errors import OracleError, StorageError
from oracle.storage.db import transaction
from oracle.storage.tables import Reject

log = logging.getLogger(__name__)

router = APIRouter(tags=["telemetry"])

_INGEST_KEY = "telemetry_ingest"
_LIMITS_KEY = "telemetry_http_limits"
_lock = threading.Lock()
_STATUS = {
    RejectReason.MALFORMED: 400,
    RejectReason.TOO_LARGE: 413,
    RejectReason.BAD_SIGNATURE: 401,
    RejectReason.REVOKED_DEVICE: 403,
    RejectReason.REVOKED_KEY: 403,
    RejectReason.STALE_KEY: 401,
    RejectReason.UNKNOWN_DEVICE: 404,
}
#: Longest message kept in a reject row for an unauthenticated post (the row is all such a post leaves).
REJECT_MESSAGE_CHARS = 300


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
        from oracle.alarms.live import attach

        attach(made, ctx.sessions)  # live excursion alarms on readings posted over HTTP too
        ctx.extras[_INGEST_KEY] = made
        return made


class RateLimit:
    """Token buckets by key (a device id, a source address), in memory, thread-safe.

    :meth:`take` returns 0.0 when a request may go ahead, else the seconds until it may. At most
    ``max_keys`` keys are remembered; the least recently seen is forgotten first, so a stream of new keys
    cannot grow memory (a forgotten key starts again with a full bucket).
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate_per_s, burst, max_keys, clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill), oldest first

    def take(self, key: str) -> float:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            if len(self._buckets) > self.max_keys:
                del self._buckets[next(iter(self._buckets))]
        return wait


@dataclass(frozen=True)
class HttpLimits:
    per_source: RateLimit
    per_device: RateLimit


def http_limits(ctx: Context) -> HttpLimits:
    """The context's limits for this route, from the ``ORACLE_TELEMETRY_HTTP_*`` settings."""
    with _lock:
        found = ctx.extras.get(_LIMITS_KEY)
        if isinstance(found, HttpLimits):
            return found
        s = ctx.settings
        made = HttpLimits(
            per_source=RateLimit(
                rate_per_s=s.telemetry_http_source_rate_per_s, burst=s.telemetry_http_source_burst
            ),
            per_device=RateLimit(
                rate_per_s=s.telemetry_http_device_rate_per_s, burst=s.telemetry_http_device_burst
            ),
        )
        ctx.extras[_LIMITS_KEY] = made
        return made


def authenticate(ingest: TelemetryIngest, device_id: str, payload: bytes) -> RejectRecord | None:
    """``None`` when ``payload`` is an envelope signed with a valid key of ``device_id``, else the refusal.

    The same checks the pipeline makes before a reading, made here before anything is stored. Raises
    StorageError when the database fails, OracleError when the device's sealed secret cannot be opened.
    """
    if not DEVICE_ID_RE.fullmatch(device_id):
        return RejectRecord(device_id[:120], RejectReason.MALFORMED, "device id is not a valid topic level")
    try:
        envelope = parse_envelope(payload)
    except EnvelopeError as e:
        return RejectRecord(device_id, e.code, str(e))
    # The pipeline's own cache of device keys (loaded once, shared with process()).
    entry = ingest._device(device_id)
    if entry.creds is None:
        return RejectRecord(device_id, RejectReason.UNKNOWN_DEVICE, "device is not registered")
    canonical = canonical_items(envelope)
    refusal = check_envelope(entry.creds, entry.mac, envelope, canonical[0] if canonical else None)
    if refusal is not None:
        return RejectRecord(device_id, refusal[0], refusal[1])
    return None


def _record_refusal(ctx: Context, refusal: RejectRecord, address: str) -> None:
    """The one bounded row an unauthenticated post leaves: why, for which device id, from where."""
    try:
        with transaction(ctx.sessions) as s:
            s.add(
                Reject(
                    source="http",
                    reason=refusal.reason.value,
                    message=refusal.message[:REJECT_MESSAGE_CHARS],
                    subject=refusal.device_id[:120],
                    cid=None,
                    meta={"address": address[:100]},
                )
            )
    except StorageError as e:  # the answer still says why; the log keeps the reason
        log.warning(
            "telemetry refusal not recorded device_id=%s reason=%s: %s", refusal.device_id, refusal.reason, e
        )


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


def _rate_limited(wait_s: float, what: str) -> JSONResponse:
    metrics.REJECTS.labels("http", "rate_limited").inc()
    after = retry_after_header(wait_s)
    response = _problem(
        429, "Too many requests", f"too many posts from this {what}; retry in {after} s", "rate_limited"
    )
    response.headers["Retry-After"] = after
    return response


async def _read_capped(request: Request) -> bytes:
    payload = bytearray()
    async for chunk in request.stream():
        payload += chunk
        if len(payload) > MAX_ENVELOPE_BYTES:
            # Stop reading: an oversized body is refused without buffering all of it.
            return bytes(payload[: MAX_ENVELOPE_BYTES + 1])
    return bytes(payload)


@router.post(
    "/v1/telemetry/{device_id}",
    status_code=202,
    responses=problem_responses(400, 401, 403, 404, 413, 429, 503),
)
async def post_telemetry(device_id: str, request: Request) -> JSONResponse:
    """Ingest one signed envelope for ``device_id``. See the module docstring for the checks and answers."""
    ctx: Context = request.app.state.ctx
    limits = http_limits(ctx)
    address = request.client.host if request.client is not None else "unknown"
    wait = limits.per_source.take(address)
    if wait > 0:
        return _rate_limited(wait, "address")
    payload = await _read_capped(request)
    try:
        ingest = await run_in_threadpool(telemetry_ingest, ctx)
        refusal = await run_in_threadpool(authenticate, ingest, device_id, payload)
    except StorageError as e:
        return _problem(503, "Storage unavailable", f"nothing was stored: {e}", "storage_unavailable")
    except OracleError as e:
        log.error("device %s credentials unusable: %s", device_id, e)
        return _problem(
            503,
            "Device credentials unusable",
            "nothing was stored; the operator must check the device's stored key or the KEK",
            "credentials_unusable",
        )
    if refusal is not None:
        metrics.REJECTS.labels("http", refusal.reason.value).inc()
        await run_in_threadpool(_record_refusal, ctx, refusal, address)
        return _problem(
            _STATUS.get(refusal.reason, 400), "Telemetry refused", refusal.message, refusal.reason.value
        )
    wait = limits.per_device.take(device_id)
    if wait > 0:
        return _rate_limited(wait, "device")
    try:
        outcome: BatchOutcome = await run_in_threadpool(
            ingest.process, [IncomingMessage(device_id, payload, "http")]
        )
    except StorageError as e:
        return _problem(503, "Storage unavailable", f"nothing was stored: {e}", "storage_unavailable")
    result = outcome.messages[0]
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
