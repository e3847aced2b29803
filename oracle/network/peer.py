"""The peer endpoints (``/v1/peer/...``) and the client other nodes call them with.

``POST /v1/peer/signatures``: a member hands over its signature on the report it computed for a
(subject, epoch). ``GET /v1/peer/rounds/{subject}/{epoch}``: what this node holds for a round (its own
report digest and every signature it has), for operators and for a node that catches up.
``GET /v1/peer/telemetry/{subject}``: the CIDs of the signed telemetry messages this node holds for a
shipment, for a peer whose own record of it has a gap. ``GET /v1/peer/blobs/{cid}``: a content-store
blob, for a peer that lacks an input (the caller checks the bytes against the CID).
``GET /v1/peer/signatures?after=ID&since_s=S&limit=N``: the signatures this node holds (its own and every
member's it received) received in the last ``S`` seconds, by id, for a node that lost its database or was
restored from an older backup: its peers had already delivered their signatures to it and will not send
them again, so it pulls them (and checks each one's signer).
Every request must be signed by a member's peer key
(:mod:`oracle.network.auth`); anything else gets 401 and a recorded reject.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from oracle.errors import IntegrityError, NotFound, ValidationError
from oracle.network.auth import PeerAuthError, sign_request
from oracle.network.membership import Member

if TYPE_CHECKING:
    from oracle.context import Context
    from oracle.network.rounds import NodeRuntime

log = logging.getLogger(__name__)

#: Largest peer request body accepted (a signature message is well under 2 KiB).
MAX_BODY = 64 * 1024
#: Largest answer read from a peer: a blob (an input a node may itself ingest: the default
#: ``ORACLE_STAC_MAX_ASSET_BYTES``), and a JSON answer (a page of signatures, a shipment's message list).
#: A peer that sends more is cut off at the limit, so a hostile member cannot exhaust a node's memory.
MAX_PEER_BLOB_BYTES = 2 * 1024**3
MAX_PEER_JSON_BYTES = 16 * 1024**2
_SUBJECT = re.compile(r"0x[0-9a-f]{64}")


class PeerClient:
    """Signed requests to the other members. Short timeouts: a slow peer must not hold up a round."""

    def __init__(self, runtime: NodeRuntime, *, timeout: float = 2.0) -> None:
        self.runtime = runtime
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=1.0), trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        member: Member,
        method: str,
        path: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        max_bytes: int = MAX_PEER_JSON_BYTES,
    ) -> httpx.Response:
        """One signed request; the answer is read whole but never past ``max_bytes``.

        :raises ValidationError: (reason ``too_large``) the peer's answer is longer than ``max_bytes``.
        """
        body = b"" if payload is None else json.dumps(payload, sort_keys=True).encode()
        headers = sign_request(self.runtime.identity, self.runtime.network, method, path, body)
        headers["Content-Type"] = "application/json"
        url = self.runtime.url_of(member) + path
        request = self._http.build_request(method, url, content=body, headers=headers)
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout, connect=1.0).as_dict()
        response = self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(member, path, max_bytes)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(member, path, max_bytes)
                chunks.append(chunk)
        finally:
            response.close()
        # The body as read (already decoded), in a response of its own for .json() and raise_for_status().
        drop = ("content-encoding", "content-length")
        kept = [(k, v) for k, v in response.headers.items() if k not in drop]
        content = b"".join(chunks)
        return httpx.Response(response.status_code, headers=kept, content=content, request=request)

    def push_signature(self, member: Member, message: dict[str, Any]) -> httpx.Response:
        return self._call(member, "POST", "/v1/peer/signatures", message)

    def fetch_signatures(self, member: Member, *, after: int, since_s: int, limit: int) -> dict[str, Any]:
        """One page of the signatures ``member`` holds (``GET /v1/peer/signatures``)."""
        r = self._call(
            member, "GET", f"/v1/peer/signatures?after={int(after)}&since_s={int(since_s)}&limit={int(limit)}"
        )
        r.raise_for_status()
        page = r.json()
        if not isinstance(page, dict) or not isinstance(page.get("signatures"), list):
            raise ValidationError(f"{member.id} sent a malformed signature page", reason="malformed")
        return page

    def fetch_shipment_messages(self, member: Member, subject: str) -> list[str]:
        """The CIDs of the signed telemetry messages ``member`` holds for shipment ``subject``."""
        if not _SUBJECT.fullmatch(subject):
            raise ValidationError(f"not a subject: {subject[:80]!r}", reason="bad_subject")
        r = self._call(member, "GET", f"/v1/peer/telemetry/{subject}")
        r.raise_for_status()
        body = r.json()
        cids = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(cids, list) or not all(isinstance(c, str) for c in cids):
            raise ValidationError(f"{member.id} sent a malformed message list", reason="malformed")
        return [str(c) for c in cids]

    def fetch_blob(self, member: Member, cid: str, *, timeout: float | None = None) -> bytes:
        """The bytes of ``cid`` from ``member``, checked against the CID.

        :raises NotFound: the peer has no such blob. :raises IntegrityError: the bytes do not hash to it.
        """
        from oracle.storage.blobs import parse_cid, verify

        parse_cid(cid)  # never put a caller's arbitrary text into a URL path
        r = self._call(member, "GET", f"/v1/peer/blobs/{cid}", timeout=timeout, max_bytes=MAX_PEER_BLOB_BYTES)
        if r.status_code == 404:
            raise NotFound(f"{member.id} has no blob {cid}")
        r.raise_for_status()
        verify(cid, r.content)
        return r.content


def peer_router(ctx: Context, runtime: NodeRuntime) -> APIRouter:
    """The peer endpoints, bound to this node's runtime."""
    from oracle.network.rounds import accept_peer_signature, round_view, signature_page, store_peer_reject

    router = APIRouter(prefix="/v1/peer", include_in_schema=False)

    async def authenticate(request: Request) -> tuple[Member, bytes] | JSONResponse:
        body = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if len(body) > MAX_BODY:
            return _problem(413, "peer message too large", "too_large")
        try:
            # Signature recovery and the replay check are CPU work: off the event loop.
            member = await run_in_threadpool(
                runtime.verifier.verify, request.method, path, request.headers, body
            )
        except PeerAuthError as e:
            claimed = (
                "claimed:" + request.headers.get("X-Oracle-Node", "")[:32]
            )  # unauthenticated: not a sender
            await run_in_threadpool(store_peer_reject, ctx, reason=e.reason, message=str(e), sender=claimed)
            return _problem(401, str(e), e.reason)
        return member, body

    @router.post("/signatures")
    async def receive_signature(request: Request) -> Response:
        got = await authenticate(request)
        if isinstance(got, JSONResponse):
            return got
        member, body = got
        try:
            message = json.loads(body)
            result = await run_in_threadpool(accept_peer_signature, ctx, runtime, member, message)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            text = f"{type(e).__name__}: {e}"
            await run_in_threadpool(
                store_peer_reject, ctx, reason="malformed", message=text, sender=member.id
            )
            return _problem(422, f"malformed signature message: {type(e).__name__}", "malformed")
        except ValidationError as e:
            return _problem(409 if e.reason == "equivocation" else 422, str(e), e.reason or "invalid")
        return JSONResponse(result)

    @router.get("/signatures")
    async def list_signatures(
        request: Request, after: int = 0, since_s: int = 86_400, limit: int = 200
    ) -> Response:
        got = await authenticate(request)
        if isinstance(got, JSONResponse):
            return got
        page = await run_in_threadpool(signature_page, ctx, after=after, since_s=since_s, limit=limit)
        return JSONResponse(page)

    @router.get("/telemetry/{subject}")
    async def shipment_messages(request: Request, subject: str) -> Response:
        got = await authenticate(request)
        if isinstance(got, JSONResponse):
            return got
        from oracle.network.inputs import held_messages

        if not _SUBJECT.fullmatch(subject):
            return _problem(404, "not a shipment subject", "not_found")
        return JSONResponse({"messages": await run_in_threadpool(held_messages, ctx, subject)})

    @router.get("/rounds/{subject}/{epoch}")
    async def get_round(request: Request, subject: str, epoch: int) -> Response:
        got = await authenticate(request)
        if isinstance(got, JSONResponse):
            return got
        return JSONResponse(await run_in_threadpool(round_view, ctx, subject, epoch))

    @router.get("/blobs/{cid}")
    async def get_blob(request: Request, cid: str) -> Response:
        got = await authenticate(request)
        if isinstance(got, JSONResponse):
            return got
        try:
            # This node's own store only: a peer-backed store would ask the peers in turn, and two nodes
            # lacking the same blob would ask each other in a circle.
            local = getattr(ctx.blobs, "local", ctx.blobs)
            data = await run_in_threadpool(local.get, cid)
        except (NotFound, ValidationError):
            return _problem(404, f"no blob {cid[:80]}", "not_found")
        except IntegrityError:
            return _problem(500, f"blob {cid} is corrupt in this node's store", "corrupt")
        return Response(data, media_type="application/octet-stream")

    return router


def _too_large(member: Member, path: str, max_bytes: int) -> ValidationError:
    return ValidationError(
        f"{member.id} answered {path[:80]} with more than {max_bytes} bytes; cut off", reason="too_large"
    )


def _problem(status: int, detail: str, reason: str) -> JSONResponse:
    return JSONResponse(
        {"title": "peer request refused", "status": status, "detail": detail, "reason": reason},
        status_code=status,
        media_type="application/problem+json",
    )
