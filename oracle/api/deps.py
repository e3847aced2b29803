"""The dependencies every router uses. Add a router by writing thin routes with these and listing it in
``oracle/api/app.py`` (``ROUTERS``); nothing else needs to change.

Names (use them as parameter annotations)::

    CtxDep       the process Context (settings, engine, sessions, blobs, extras)
    SessionDep   a SQLAlchemy Session for this request, closed afterwards; NOT committed for you:
                 a change calls ``session.commit()`` after ``audit.record(...)`` so both land together
    ViewerKey    the caller's ApiKey, role viewer or higher    (reads)           401 / 403 / 429
    OperatorKey  the caller's ApiKey, role operator or higher  (changes)
    AdminKey     the caller's ApiKey, role admin               (keys, signers)
    AuditDep     an Auditor bound to this request and key: ``audit.record(session, resource=...,
                 resource_id=..., summary=...)`` adds an audit entry to the session
    PageDep      limit/offset query parameters (see :mod:`oracle.api.pagination`)

Example::

    router = APIRouter(
        prefix="/v1/regions", tags=["regions"], responses=problem_responses(401, 403, 422, 429)
    )

    @router.post("", response_model=RegionPublic, status_code=201)
    def create_region(
        body: RegionCreate, session: SessionDep, _: OperatorKey, audit: AuditDep
    ) -> RegionPublic:
        row = ...; session.add(row); session.flush()
        audit.record(session, resource="regions", resource_id=row.region_id, summary="created region")
        session.commit()
        return RegionPublic.model_validate(row, from_attributes=True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from oracle.api.auth import authenticated_key, require
from oracle.api.keys import ApiKey, Role
from oracle.api.pagination import PageParams, page_params
from oracle.context import Context
from oracle.storage.api_tables import AuditEntry


def get_ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


CtxDep = Annotated[Context, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

ViewerKey = Annotated[ApiKey, Depends(require(Role.VIEWER))]
OperatorKey = Annotated[ApiKey, Depends(require(Role.OPERATOR))]
AdminKey = Annotated[ApiKey, Depends(require(Role.ADMIN))]


@dataclass(frozen=True)
class Auditor:
    """Writes audit entries for one request made with ``key``."""

    key: ApiKey
    method: str
    path: str

    def record(
        self, session: Session, *, resource: str, resource_id: str | int, summary: str, status: int = 200
    ) -> None:
        """Add the entry to ``session``; it is committed with the change it describes."""
        session.add(
            AuditEntry(
                key_id=self.key.id,
                key_name=self.key.name,
                method=self.method,
                path=self.path[:300],
                resource=resource[:40],
                resource_id=str(resource_id)[:200],
                summary=summary,
                status=status,
            )
        )


def get_auditor(request: Request, key: Annotated[ApiKey, Depends(authenticated_key)]) -> Auditor:
    return Auditor(key=key, method=request.method, path=request.url.path)


AuditDep = Annotated[Auditor, Depends(get_auditor)]
PageDep = Annotated[PageParams, Depends(page_params)]

__all__ = [
    "AdminKey",
    "AuditDep",
    "Auditor",
    "CtxDep",
    "OperatorKey",
    "PageDep",
    "SessionDep",
    "ViewerKey",
    "get_ctx",
    "get_session",
]
