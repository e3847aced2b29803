"""Paginated, filterable lists: ``?limit=&offset=`` on every list, plus shared filter parameters.

A list answers :class:`Page`: ``items``, ``total`` (matching rows), ``limit``, ``offset`` and
``next_offset`` (``null`` on the last page). ``limit`` is 1..:data:`MAX_LIMIT` (default 50).

Filters that many resources share are defined once here, with patterns tight enough that nothing a
database could choke on (NUL bytes, 300-digit numbers) ever reaches a query.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from oracle.errors import ValidationError

MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
#: Largest integer any query parameter may carry: PostgreSQL BIGINT.
MAX_INT = 2**63 - 1
#: Largest row id: the ``id`` columns are 32-bit INTEGER on PostgreSQL.
MAX_ID = 2**31 - 1

T = TypeVar("T")


def _as_utc(t: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes (stored as UTC); answers always carry the zone.
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


#: A datetime in answers: always timezone-aware UTC, whatever the database returned.
UtcDateTime = Annotated[dt.datetime, AfterValidator(_as_utc)]
Row = TypeVar("Row")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1..{MAX_LIMIT}")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


def paginate(
    session: Session,
    query: Select[Any],
    page: PageParams,
    *,
    order_by: Sequence[Any],
    to_public: Callable[[Any], T],
) -> Page[T]:
    """Run ``query`` (a select of rows or tuples) for one page; ``total`` counts all matches."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.execute(query.order_by(*order_by).limit(page.limit).offset(page.offset)).all()
    items = [to_public(r[0] if len(r) == 1 else r) for r in rows]
    nxt = page.offset + len(items)
    return Page[T](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt if nxt < total else None,
    )


# --- shared filters -------------------------------------------------------------------------------------

SUBJECT_HEX = r"^0x[0-9a-fA-F]{64}$"
NAME_RE = r"^[A-Za-z0-9._:/@ -]{1,120}$"
STATUS_RE = r"^[a-z_]{1,20}$"
ADDRESS_RE = r"^0x[0-9a-fA-F]{40}$"

SubjectQuery = Annotated[
    str | None,
    Query(
        pattern=r"^(0x[0-9a-fA-F]{64}|[A-Za-z0-9._:/@ -]{1,120})$",
        description="subject id (0x + 64 hex) or subject name",
    ),
]
StatusQuery = Annotated[str | None, Query(pattern=STATUS_RE, description="exact status, e.g. confirmed")]
AddressQuery = Annotated[str | None, Query(pattern=ADDRESS_RE, description="0x + 40 hex, any case")]
SinceQuery = Annotated[
    dt.datetime | None, Query(description="ISO-8601 time, inclusive; without a zone it is UTC")
]
UntilQuery = Annotated[
    dt.datetime | None, Query(description="ISO-8601 time, exclusive; without a zone it is UTC")
]


def is_subject_hex(value: str) -> bool:
    """Whether ``value`` is a subject id (0x + 64 hex digits) rather than a name. A shipment name begins
    with its buyer's address (``0x<40 hex>:<reference>``) and may also be 66 characters long."""
    return re.fullmatch(SUBJECT_HEX, value) is not None


def utc(t: dt.datetime) -> dt.datetime:
    """``t`` in UTC (a naive time is taken as UTC). :raises ValidationError: outside years 1..9999 in UTC."""
    try:
        return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(f"time {t.isoformat()} is out of range in UTC", reason="bad_time") from None


def time_range(
    column: Any, since: dt.datetime | None, until: dt.datetime | None
) -> list[ColumnElement[bool]]:
    """Conditions ``since <= column < until``. :raises ValidationError: since after until."""
    conds: list[ColumnElement[bool]] = []
    s = utc(since) if since is not None else None
    u = utc(until) if until is not None else None
    if s is not None and u is not None and s > u:
        raise ValidationError(
            f"since ({s.isoformat()}) is after until ({u.isoformat()}); swap them", reason="bad_time_range"
        )
    if s is not None:
        conds.append(column >= s)
    if u is not None:
        conds.append(column < u)
    return conds
