"""Data availability: what anyone needs to recompute a posted report, without an API key.

Every report names its inputs by CID (its ``inputsRoot`` is their Merkle root) and its model by hash;
the decision's manifest lists every step. A watcher (``oracle watch``) or an auditor fetches:

``GET /v1/reports/{subject}/{epoch}/manifest``
    The manifest CID this node recorded for the report it attested for (subject, epoch), with the
    report's fields. The caller need not trust it: a replay that does not reproduce the on-chain
    report from it is a mismatch, whoever served it.
``GET /v1/blobs/{cid}``
    The bytes of a content-store blob: an input, a manifest, a step output, a model artifact. The
    caller checks them against the CID on arrival.

Both are limited per source address (token bucket; 429 with ``Retry-After``), and a blob larger than
:data:`MAX_BLOB_BYTES` is refused (413): a node's content store is for decisions, not bulk downloads.
Device readings are in the store too: they are public by design (the device makers' guide says so).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from oracle.api.deps import CtxDep
from oracle.api.limits import retry_after_header
from oracle.api.problems import problem_responses
from oracle.api.telemetry import RateLimit
from oracle.context import Context
from oracle.errors import IntegrityError, NotFound
from oracle.storage.blobs import parse_cid
from oracle.storage.tables import ReportRow

router = APIRouter(tags=["data availability"])

#: Largest blob served (bytes): a real raster tile fits, a whole archive does not.
MAX_BLOB_BYTES = 64 * 1024 * 1024
#: Requests per second (and burst) per source address: a replay fetches one blob per input and step.
RATE_PER_S = 200.0
BURST = 2000.0
_LIMIT_KEY = "public_data_limit"

Subject = Annotated[str, Path(pattern=r"^0x[0-9a-fA-F]{64}$", description="the report's subject (bytes32)")]
Epoch = Annotated[int, Path(ge=0, le=2**63 - 1)]


def _limit(ctx: Context) -> RateLimit:
    found = ctx.extras.get(_LIMIT_KEY)
    if isinstance(found, RateLimit):
        return found
    made = RateLimit(rate_per_s=RATE_PER_S, burst=BURST)
    ctx.extras[_LIMIT_KEY] = made
    return made


def _too_many(request: Request, ctx: Context) -> JSONResponse | None:
    source = request.client.host if request.client else "unknown"
    wait = _limit(ctx).take(source)
    if wait <= 0:
        return None
    after = retry_after_header(wait)
    return _problem(
        429,
        "Too many requests",
        f"too many requests from this address; retry in {after} s",
        "rate_limited",
        headers={"Retry-After": after},
    )


def _problem(
    status: int, title: str, detail: str, reason: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, "reason": reason},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


@router.get(
    "/v1/blobs/{cid}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the blob's bytes"},
        **problem_responses(404, 413, 422, 429),
    },
)
def get_blob(cid: str, request: Request, ctx: CtxDep) -> Response:
    """A content-store blob by CID, no API key needed (check the bytes against the CID)."""
    limited = _too_many(request, ctx)
    if limited is not None:
        return limited
    parse_cid(cid)  # 422 for anything that is not one of our CIDs
    store = getattr(ctx.blobs, "local", ctx.blobs)  # this node's own store, never its peers'
    path = getattr(store, "path", None)
    if path is not None:
        try:
            size = path(cid).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no blob {cid} in this node's content store") from None
        if size > MAX_BLOB_BYTES:
            return _too_large(cid, size)
    try:
        data = store.get(cid)
    except IntegrityError:
        raise NotFound(f"blob {cid} is corrupt in this node's store; ask another node") from None
    if len(data) > MAX_BLOB_BYTES:
        return _too_large(cid, len(data))
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{cid}"'},
    )


def _too_large(cid: str, size: int) -> JSONResponse:
    return _problem(
        413,
        "Blob too large",
        f"blob {cid} is {size} bytes, over the {MAX_BLOB_BYTES}-byte limit of this endpoint",
        "too_large",
    )


@router.get("/v1/reports/{subject}/{epoch}/manifest", responses=problem_responses(404, 422, 429))
def get_manifest(subject: Subject, epoch: Epoch, request: Request, ctx: CtxDep) -> Any:
    """The decision manifest behind this node's report for (subject, epoch), no API key needed."""
    from oracle.attest import row_to_report
    from oracle.verify.replay import report_to_json

    limited = _too_many(request, ctx)
    if limited is not None:
        return limited
    with ctx.sessions() as s:
        row = s.scalar(
            select(ReportRow).where(ReportRow.subject == subject.lower(), ReportRow.epoch == epoch)
        )
        if row is None:
            raise NotFound(f"this node recorded no report for {subject} epoch {epoch}")
        manifest = str((row.detail or {}).get("manifest_cid") or "")
        if not manifest:
            raise NotFound(f"the report for {subject} epoch {epoch} was not made from a recorded decision")
        return {
            "subject": row.subject,
            "epoch": row.epoch,
            "subject_name": row.subject_name,
            "manifest_cid": manifest,
            "report": report_to_json(row_to_report(row)),
            "device_keys": _device_keys(s, row),
        }


def _device_keys(s: Any, row: ReportRow) -> dict[str, Any]:
    """For a cold-chain verdict, the public keys of the devices bound to the shipment (public by nature),
    so a watcher can check every telemetry message the decision used."""
    from oracle.reports import ReportKind, subject_id
    from oracle.storage.tables import DeviceBinding
    from oracle.verify.device_signatures import device_auth

    if row.kind != int(ReportKind.COLDCHAIN_VERDICT) or not row.subject_name:
        return {}
    if "0x" + subject_id("shipment", row.subject_name).hex() != row.subject.lower():
        return {}
    devices = s.scalars(
        select(DeviceBinding.device_id).where(DeviceBinding.shipment_id == row.subject_name).distinct()
    ).all()
    return {d: auth.to_json() for d, auth in device_auth(s, devices).items()}
