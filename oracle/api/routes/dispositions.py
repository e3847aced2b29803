"""``/v1/shipments/{shipment}/disposition``: a shipment's disposition report and its electronic sign-offs.

``GET .../disposition`` (viewer) answers JSON (``?format=json``, the default: the content, its SHA-256 and
the sign-offs), ``?format=html`` or ``?format=pdf``; ``.../disposition.html`` and ``.../disposition.pdf``
are the same documents by name. ``{shipment}`` is the telemetry name or the 0x subject.

``POST .../disposition/signoffs`` (operator) signs it, in the manner of 21 CFR Part 11: the API key is the
first identification component, ``signing_password`` (the signer's enrolled signing credential,
re-entered at each signature) the second; ``printed_name`` must be the enrolled one, ``meaning`` one of
review, approval, responsibility, authorship; the time is the server's. ``content_sha256`` names what the
signer reviewed: when the record changed since, the sign-off is refused with 409 ``stale_content``. Every
attempt, accepted or refused, is in the audit log. ``GET /v1/disposition-signoffs/verify`` walks the
hash-chained sign-off log and names its first broken link.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.orm import Session

from oracle.api.deps import AuditDep, CtxDep, OperatorKey, SessionDep, ViewerKey
from oracle.api.problems import ApiError, problem_responses
from oracle.disposition.sign import Document, disposition_document, domain_of, sign_disposition
from oracle.disposition.signoffs import SignoffRefused, verify_chain
from oracle.storage.signoff_tables import DispositionSignoff

router = APIRouter(tags=["dispositions"], responses=problem_responses(401, 403, 404, 422, 429))

SHIPMENT_RE = r"^[A-Za-z0-9._:@-]{1,120}$"
ShipmentPath = Annotated[str, Path(pattern=SHIPMENT_RE, description="telemetry name or 0x subject")]
Meaning = Literal["review", "approval", "responsibility", "authorship"]


class SignoffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    printed_name: str = Field(min_length=2, max_length=120, description="the signer's enrolled printed name")
    meaning: Meaning = Field(description="what the signature means (21 CFR 11.50(a)(3))")
    content_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="SHA-256 of the content reviewed")
    signing_password: SecretStr = Field(
        min_length=1, description="second identification component: the signer's signing password"
    )


class SignoffPublic(BaseModel):
    seq: int
    shipment: str
    printed_name: str
    meaning: str
    signed_at: str = Field(description="UTC, set by the server")
    content_sha256: str
    entry_hash: str


class ChainPublic(BaseModel):
    ok: bool
    entries: int
    broken_seq: int | None
    problem: str


def _document(ctx: Any, session: Session, shipment: str) -> Document:
    return disposition_document(session, ctx.blobs, shipment, domain=domain_of(ctx.extras))


def _render(doc: Document, fmt: str) -> Response:
    if fmt == "html":
        from oracle.disposition.html import render_html

        return HTMLResponse(
            render_html(doc.content, doc.signoffs, doc.sha256),
            headers={
                "X-Content-SHA256": doc.sha256,
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            },
        )
    if fmt == "pdf":
        from oracle.disposition.pdf import render_pdf

        return Response(
            render_pdf(doc.content, doc.signoffs, doc.sha256),
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'inline; filename="disposition-{doc.shipment}.pdf"',
                "X-Content-SHA256": doc.sha256,
            },
        )
    return Response(
        content=json.dumps(doc.to_json()),
        media_type="application/json",
        headers={"X-Content-SHA256": doc.sha256},
    )


def _ok(*media: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "the disposition report", "content": {m: {} for m in media}}}


@router.get(
    "/v1/shipments/{shipment}/disposition",
    response_model=None,
    responses=_ok("application/json", "text/html", "application/pdf"),
)
def get_disposition(
    shipment: ShipmentPath,
    ctx: CtxDep,
    session: SessionDep,
    _: ViewerKey,
    format: Annotated[Literal["json", "html", "pdf"], Query()] = "json",
) -> Response:
    """The disposition report: JSON (content, ``content_sha256``, sign-offs), HTML or PDF."""
    return _render(_document(ctx, session, shipment), format)


@router.get(
    "/v1/shipments/{shipment}/disposition.pdf",
    response_model=None,
    responses=_ok("application/pdf"),
)
def get_disposition_pdf(shipment: ShipmentPath, ctx: CtxDep, session: SessionDep, _: ViewerKey) -> Response:
    """The disposition report as PDF, with its sign-offs."""
    return _render(_document(ctx, session, shipment), "pdf")


@router.get("/v1/shipments/{shipment}/disposition.html", response_model=None, responses=_ok("text/html"))
def get_disposition_html(shipment: ShipmentPath, ctx: CtxDep, session: SessionDep, _: ViewerKey) -> Response:
    """The disposition report as one HTML page, with its sign-offs."""
    return _render(_document(ctx, session, shipment), "html")


@router.post(
    "/v1/shipments/{shipment}/disposition/signoffs",
    response_model=SignoffPublic,
    status_code=201,
    responses=problem_responses(409),
)
def create_signoff(
    shipment: ShipmentPath,
    body: SignoffCreate,
    ctx: CtxDep,
    session: SessionDep,
    key: OperatorKey,
    audit: AuditDep,
) -> SignoffPublic:
    """Sign the disposition (see the module docstring for the two components and the 409)."""

    def write_audit(s: Session, row: DispositionSignoff | None, refused: SignoffRefused | None) -> None:
        if row is not None:
            summary = (
                f"signed ({row.meaning}) as {row.printed_name}: content {row.content_sha256}, "
                f"sign-off {row.seq} {row.entry_hash}"
            )
            audit.record(
                s, resource="disposition_signoffs", resource_id=row.shipment, summary=summary, status=201
            )
        elif refused is not None:
            audit.record(
                s,
                resource="disposition_signoffs",
                resource_id=shipment,
                summary=f"sign-off refused: {refused.reason}",
                status=refused.status,
            )

    try:
        signed = sign_disposition(
            session,
            ctx.blobs,
            shipment=shipment,
            key=key,
            printed_name=body.printed_name,
            meaning=body.meaning,
            signed_sha256=body.content_sha256,
            password=body.signing_password.get_secret_value(),
            domain=domain_of(ctx.extras),
            audit=write_audit,
        )
    except SignoffRefused as e:
        raise ApiError(e.status, str(e), reason=e.reason) from None
    return SignoffPublic(**signed.to_json())


@router.get("/v1/disposition-signoffs/verify", response_model=ChainPublic)
def verify_signoffs(session: SessionDep, _: ViewerKey) -> ChainPublic:
    """Walk the hash-chained sign-off log; ``ok`` false names the first broken link."""
    c = verify_chain(session)
    return ChainPublic(ok=c.ok, entries=c.entries, broken_seq=c.broken_seq, problem=c.problem)
