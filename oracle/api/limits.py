"""Request limits: per-key token-bucket rate limits and a request-body size cap.

:class:`ApiLimits` holds the numbers; :func:`create_app` takes it (or finds it in
``ctx.extras["api_limits"]``). Defaults suit one operator dashboard plus scripts.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class ApiLimits:
    """``rate_per_s``: sustained requests per second per key; ``burst``: bucket size (requests);
    ``max_body_bytes``: largest request body accepted (bytes), larger answers 413."""

    rate_per_s: float = 20.0
    burst: float = 60.0
    max_body_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and self.burst >= 1 and self.max_body_bytes >= 0):
            raise ValueError("ApiLimits: rate_per_s > 0, burst >= 1 and max_body_bytes >= 0 are required")


class TokenBuckets:
    """One token bucket per key, in memory (per process). Thread-safe.

    :meth:`take` returns 0.0 when a request may go ahead, otherwise the seconds until one token is back.
    """

    def __init__(
        self, *, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, last refill time)

    def take(self, key_id: int) -> float:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, at least 1 (Retry-After takes an integer)."""
    return str(max(1, math.ceil(wait_s)))


class BodySizeLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` with 413 problem+json.

    A declared ``Content-Length`` over the limit is refused before the app runs. A body without one
    (chunked) is counted while the app reads it; once over, the app is cut off with a 413 (unless it
    already started answering, in which case the connection is simply ended).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _send_problem(scope, send, 400, "the Content-Length header is not a valid number")
            return
        if declared is not None and declared > self.max_bytes:
            await _send_problem(scope, send, 413, self._detail())
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self._detail())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_problem(scope, send, 413, self._detail())

    def _detail(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes} bytes; send less"


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so FastAPI's body parsing lets it through to the
    problem handlers unchanged (it turns other exceptions into a 400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


def _content_length(scope: Scope) -> int | None:
    """The declared length; ``None`` when absent, ``-1`` when malformed."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


async def _send_problem(scope: Scope, send: Send, status: int, detail: str) -> None:
    reason = "body_too_large" if status == 413 else "bad_content_length"
    title = "Request body too large" if status == 413 else "Bad Content-Length"
    body = json.dumps(
        {
            "type": f"urn:oracle:problem:{reason}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path", ""),
            "reason": reason,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
