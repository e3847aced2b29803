"""``/v1/outbox``: the transactions the oracle owes the chain and where each one is.

Raw transaction bytes and calldata are internal and never shown; error texts have URLs masked, since an
RPC URL can carry a provider's API key.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from sqlalchemy import select

from oracle.api.deps import PageDep, SessionDep, ViewerKey
from oracle.api.pagination import (
    MAX_ID,
    Page,
    SinceQuery,
    StatusQuery,
    UntilQuery,
    UtcDateTime,
    paginate,
    time_range,
)
from oracle.api.problems import problem_responses
from oracle.errors import NotFound
from oracle.storage.tables import OutboxRow

router = APIRouter(prefix="/v1/outbox", tags=["outbox"], responses=problem_responses(401, 403, 422, 429))

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def mask_urls(text: str | None) -> str | None:
    return None if text is None else _URL.sub("<url>", text)


class OutboxPublic(BaseModel):
    id: int
    key: str
    purpose: str
    report_id: int | None
    to_address: str
    state: str
    sender: str | None
    nonce: int | None
    tx_hash: str | None
    previous_hashes: list[str]
    attempts: int
    replacements: int
    block_number: int | None
    gas_used: int | None
    last_error: str | None
    revert_reason: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime | None
    sent_at: UtcDateTime | None


def to_public(row: OutboxRow) -> OutboxPublic:
    return OutboxPublic(
        id=row.id,
        key=row.key,
        purpose=row.purpose,
        report_id=row.report_id,
        to_address=row.to_address,
        state=row.status,
        sender=row.sender,
        nonce=row.nonce,
        tx_hash=row.tx_hash,
        previous_hashes=[str(h) for h in row.previous_hashes or []],
        attempts=row.attempts,
        replacements=row.replacements,
        block_number=row.block_number,
        gas_used=row.gas_used,
        last_error=mask_urls(row.last_error),
        revert_reason=mask_urls(row.revert_reason),
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
    )


@router.get("", response_model=Page[OutboxPublic])
def list_outbox(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    state: StatusQuery = None,
    purpose: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[OutboxPublic]:
    """Outbox rows, newest first; ``since``/``until`` filter on creation time."""
    q = select(OutboxRow)
    if state is not None:
        q = q.where(OutboxRow.status == state)
    if purpose is not None:
        q = q.where(OutboxRow.purpose == purpose)
    q = q.where(*time_range(OutboxRow.created_at, since, until))
    return paginate(session, q, page, order_by=[OutboxRow.id.desc()], to_public=to_public)


@router.get("/{outbox_id}", response_model=OutboxPublic, responses=problem_responses(404))
def get_outbox(
    outbox_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, _: ViewerKey
) -> OutboxPublic:
    row = session.get(OutboxRow, outbox_id)
    if row is None:
        raise NotFound(f"no outbox row with id {outbox_id}")
    return to_public(row)
