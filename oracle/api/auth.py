"""Who is calling: API key authentication, role checks and the per-key rate limit.

A key is presented as ``Authorization: Bearer ok_...`` or ``X-API-Key: ok_...``. Outcomes, in order:

- no key, a malformed, unknown or revoked key → 401 with ``WWW-Authenticate: Bearer``;
- a valid key over its rate limit → 429 with ``Retry-After`` (seconds);
- a valid key whose role is below what the route needs → 403.

The key itself never appears in a response or a log line; logs name the key by id and prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from oracle.api.keys import ApiKey, Role, verify_key
from oracle.api.limits import TokenBuckets, retry_after_header
from oracle.api.problems import ApiError
from oracle.context import Context

log = logging.getLogger(__name__)

# auto_error=False: the dependencies below answer 401 themselves, as problem+json. These two objects
# exist so that /docs shows both ways to authenticate and offers an "Authorize" button.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer ok_<prefix>_<secret>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: ok_<prefix>_<secret>")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oracle"'}


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, reason="unauthorized", headers=_CHALLENGE)


async def authenticated_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header)],
) -> ApiKey:
    """The caller's active key, rate-limited. Raises 401 or 429 (see the module docstring)."""
    presented = bearer.credentials if bearer is not None else header_key
    if not presented:
        raise _unauthorized(
            "this endpoint needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; "
            "an admin creates keys with 'oracle apikeys create --role viewer'"
        )
    ctx: Context = request.app.state.ctx

    def lookup() -> ApiKey | None:
        with ctx.sessions() as s:
            return verify_key(s, presented.strip())

    key = await run_in_threadpool(lookup)
    if key is None:
        raise _unauthorized("the API key is not valid: it is malformed, unknown or revoked")
    buckets: TokenBuckets = request.app.state.rate_buckets
    wait = buckets.take(key.id)
    if wait > 0:
        log.info("rate limited key_id=%s prefix=%s path=%s", key.id, key.prefix, request.url.path)
        raise ApiError(
            429,
            f"too many requests for this API key; retry in {retry_after_header(wait)} s",
            reason="rate_limited",
            headers={"Retry-After": retry_after_header(wait)},
        )
    request.state.api_key = key
    return key


def require(role: Role) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency that yields the caller's key if its role is at least ``role``, else 403."""

    async def check(key: Annotated[ApiKey, Depends(authenticated_key)]) -> ApiKey:
        if not key.role.allows(role):
            raise ApiError(
                403,
                f"this API key has role {key.role.value}; this request needs {role.value} or higher",
                reason="forbidden",
            )
        return key

    check.__name__ = f"require_{role.value}"
    return check
