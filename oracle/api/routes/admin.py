"""Admin resources: ``/v1/apikeys`` (create, list, revoke), ``/v1/audit`` (the change log) and
``/v1/signer`` (which signers this node uses). Admin role only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from oracle.api.deps import AdminKey, AuditDep, CtxDep, PageDep, SessionDep
from oracle.api.keys import NAME_PATTERN, ApiKey, Role, create_key, get_key, revoke_key
from oracle.api.pagination import (
    MAX_ID,
    Page,
    SinceQuery,
    UntilQuery,
    UtcDateTime,
    paginate,
    time_range,
)
from oracle.api.problems import ApiError, problem_responses
from oracle.api.signing import signing_setup
from oracle.storage.api_tables import ApiKeyRow, AuditEntry

router = APIRouter(tags=["admin"], responses=problem_responses(401, 403, 422, 429))


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="the public part of the key: ok_<prefix>_…")
    role: Role
    active: bool
    created_at: UtcDateTime
    revoked_at: UtcDateTime | None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str = Field(pattern=NAME_PATTERN.pattern, examples=["dashboard"])


class ApiKeyCreated(BaseModel):
    key: ApiKeyPublic
    secret_key: str = Field(description="the full key; shown only in this response, store it now")


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: UtcDateTime
    key_id: int | None
    key_name: str
    method: str
    path: str
    resource: str
    resource_id: str
    summary: str
    status: int


class SignerPublic(BaseModel):
    configured: bool
    detail: str
    signer_urls: list[str]
    threshold: int | None
    chain_id: int | None
    router: str | None


def _public(k: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        role=k.role,
        active=k.active,
        created_at=k.created_at,
        revoked_at=k.revoked_at,
    )


def _row_public(row: ApiKeyRow) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=Role(row.role),
        active=row.revoked_at is None,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/v1/apikeys", response_model=Page[ApiKeyPublic])
def list_api_keys(
    session: SessionDep,
    _: AdminKey,
    page: PageDep,
    role: Annotated[Role | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
) -> Page[ApiKeyPublic]:
    q = select(ApiKeyRow)
    if role is not None:
        q = q.where(ApiKeyRow.role == role.value)
    if active is True:
        q = q.where(ApiKeyRow.revoked_at.is_(None))
    if active is False:
        q = q.where(ApiKeyRow.revoked_at.is_not(None))
    return paginate(session, q, page, order_by=[ApiKeyRow.id], to_public=_row_public)


@router.post("/v1/apikeys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(body: ApiKeyCreate, session: SessionDep, _: AdminKey, audit: AuditDep) -> ApiKeyCreated:
    """Create a key; the response holds the full key, the only time it is ever shown."""
    made = create_key(session, role=body.role, name=body.name)
    audit.record(
        session,
        resource="apikeys",
        resource_id=made.key.id,
        summary=f"created {body.role.value} key {body.name!r} prefix {made.key.prefix}",
        status=201,
    )
    session.commit()
    return ApiKeyCreated(key=_public(made.key), secret_key=made.secret_key)


@router.get("/v1/apikeys/{key_id}", response_model=ApiKeyPublic, responses=problem_responses(404))
def get_api_key(key_id: KeyId, session: SessionDep, _: AdminKey) -> ApiKeyPublic:
    return _public(get_key(session, key_id))


@router.delete("/v1/apikeys/{key_id}", response_model=ApiKeyPublic, responses=problem_responses(404, 409))
def revoke_api_key(key_id: KeyId, session: SessionDep, caller: AdminKey, audit: AuditDep) -> ApiKeyPublic:
    """Revoke a key; it stops working at once. An admin cannot revoke the key it is calling with."""
    if key_id == caller.id:
        raise ApiError(
            409,
            "refusing to revoke the key making this request; revoke it with another admin key or the CLI",
            reason="own_key",
        )
    done = revoke_key(session, key_id)
    audit.record(
        session,
        resource="apikeys",
        resource_id=done.id,
        summary=f"revoked key {done.name!r} prefix {done.prefix}",
    )
    session.commit()
    return _public(done)


@router.get("/v1/audit", response_model=Page[AuditPublic])
def list_audit(
    session: SessionDep,
    _: AdminKey,
    page: PageDep,
    resource: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    resource_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:-]{1,200}$")] = None,
    key_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[AuditPublic]:
    """Every change made through the API or the key CLI, newest first."""
    q = select(AuditEntry)
    if resource is not None:
        q = q.where(AuditEntry.resource == resource)
    if resource_id is not None:
        q = q.where(AuditEntry.resource_id == resource_id)
    if key_id is not None:
        q = q.where(AuditEntry.key_id == key_id)
    q = q.where(*time_range(AuditEntry.at, since, until))
    return paginate(session, q, page, order_by=[AuditEntry.id.desc()], to_public=AuditPublic.model_validate)


@router.get("/v1/signer", response_model=SignerPublic)
def signer_status(ctx: CtxDep, _: AdminKey) -> SignerPublic:
    """Which signer(s) manual attestations use (URLs only; tokens are never shown)."""
    try:
        setup = signing_setup(ctx)
    except ApiError as e:
        return SignerPublic(
            configured=False, detail=str(e.detail), signer_urls=[], threshold=None, chain_id=None, router=None
        )
    return SignerPublic(
        configured=True,
        detail="ready",
        signer_urls=list(setup.signer_urls),
        threshold=setup.threshold,
        chain_id=setup.chain_id,
        router=setup.router,
    )
