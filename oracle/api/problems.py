"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

Body: ``type`` (a URN naming the problem), ``title`` (short, same for every occurrence), ``status``,
``detail`` (what happened and what to do about it), ``instance`` (the request path), plus ``reason`` (our
machine-readable code) and, for validation errors, ``errors`` (one entry per bad field).

Mapping of our exception tree: ``ValidationError`` → 422, ``NotFound`` → 404, ``StorageError`` → 503
(retry later; nothing was changed), ``SignerError`` → 503, ``RevertError`` → 502 (the chain refused),
``ChainError`` → 503 (the chain is unreachable), ``ConfigError`` → 503 (this node is not configured for
the request; a person must fix the configuration, the client cannot), ``ToolError`` → 503. Anything else
is a bug: 500 with a ``correlation_id`` that is also in the log line with the traceback.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from oracle.errors import (
    ChainError,
    ConfigError,
    NotFound,
    OracleError,
    RevertError,
    SignerError,
    StorageError,
    ToolError,
    ValidationError,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One refused field: where it is (``query.limit``, ``body.value``), what is wrong, the error type."""

    loc: str
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URN naming the kind of problem")
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    reason: str | None = Field(None, description="short machine-readable code")
    errors: list[FieldError] | None = None
    correlation_id: str | None = None


def problem(
    status: int,
    detail: str,
    *,
    reason: str | None = None,
    title: str | None = None,
    instance: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response. ``type`` is ``urn:oracle:problem:<reason>`` (or the status phrase)."""
    phrase = _phrase(status)
    slug = reason or phrase.lower().replace(" ", "_")
    body: dict[str, Any] = {
        "type": f"urn:oracle:problem:{slug}",
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if reason is not None:
        body["reason"] = reason
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_HTTP_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    429: "rate_limited",
}


class ApiError(StarletteHTTPException):
    """An HTTP error raised on purpose by a route or dependency, with our ``reason`` code."""

    def __init__(
        self, status: int, detail: str, *, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.reason = reason


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _status_for(exc: OracleError) -> tuple[int, str]:
    """(HTTP status, default reason) for one of our exceptions; the order matters (subclasses first)."""
    if isinstance(exc, ValidationError):
        return 422, exc.reason
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, StorageError):
        return 503, "storage_unavailable"
    if isinstance(exc, SignerError):
        return 503, str(getattr(exc, "reason", "signer_unavailable"))
    if isinstance(exc, RevertError):
        return 502, exc.reason
    if isinstance(exc, ChainError):
        return 503, "chain_unavailable"
    if isinstance(exc, ConfigError):
        return 503, "not_configured"
    if isinstance(exc, ToolError):
        return 503, "tool_unavailable"
    return 500, "internal_error"


def _loc(parts: Any) -> str:
    return ".".join(str(p) for p in parts) if isinstance(parts, list | tuple) else str(parts)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
        reason = getattr(exc, "reason", None) or _HTTP_REASONS.get(exc.status_code)
        return problem(
            exc.status_code,
            detail,
            reason=reason,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": _loc(e.get("loc", ())), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        shown = "; ".join(f"{e['loc']}: {e['message']}" for e in errors[:5])
        return problem(
            422,
            f"the request was refused: {shown}" if shown else "the request was refused",
            reason="invalid_request",
            title="Invalid request",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(OracleError)
    async def _oracle(request: Request, exc: OracleError) -> JSONResponse:
        status, reason = _status_for(exc)
        if status >= 500:
            log.warning(
                "request failed path=%s status=%s reason=%s: %s", request.url.path, status, reason, exc
            )
        return problem(status, str(exc), reason=reason, instance=request.url.path)

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # Database errors are translated here, not shown: their text can carry SQL and parameters.
        correlation = uuid.uuid4().hex
        log.error("database error path=%s correlation_id=%s", request.url.path, correlation, exc_info=exc)
        return problem(
            503,
            "the database failed to answer; nothing was changed, retry later",
            reason="storage_unavailable",
            instance=request.url.path,
            correlation_id=correlation,
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        correlation = uuid.uuid4().hex
        log.error("unhandled error path=%s correlation_id=%s", request.url.path, correlation, exc_info=exc)
        return problem(
            500,
            f"an internal error occurred; report correlation id {correlation} to the operators",
            reason="internal_error",
            instance=request.url.path,
            correlation_id=correlation,
        )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these statuses, each a :class:`Problem` (see ``openapi.py``)."""
    return {s: {"model": Problem, "description": _phrase(s)} for s in statuses}
