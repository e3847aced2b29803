"""What came in: ``/v1/observations`` (validated inputs, by CID) and ``/v1/rejects`` (refused inputs
with the reason each was refused). Read-only (viewer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from oracle.api.deps import PageDep, SessionDep, ViewerKey
from oracle.api.pagination import (
    MAX_ID,
    Page,
    SinceQuery,
    SubjectQuery,
    UntilQuery,
    UtcDateTime,
    paginate,
    time_range,
)
from oracle.api.problems import problem_responses
from oracle.errors import NotFound
from oracle.storage.tables import Observation, Reject

router = APIRouter(tags=["inputs"], responses=problem_responses(401, 403, 422, 429))

Word = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:-]{1,60}$")]


class ObservationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    variable: str
    subject: str
    cid: str
    source: str
    collector: str
    signature_status: str
    observed_at: UtcDateTime | None
    received_at: UtcDateTime
    meta: dict[str, Any]


class RejectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    source: str
    reason: str
    message: str
    subject: str
    cid: str | None
    received_at: UtcDateTime
    meta: dict[str, Any]


@router.get("/v1/observations", response_model=Page[ObservationPublic])
def list_observations(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    kind: Word = None,
    variable: Word = None,
    subject: SubjectQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[ObservationPublic]:
    """Observations, newest first; ``since``/``until`` filter on the observation time."""
    q = select(Observation)
    if kind is not None:
        q = q.where(Observation.kind == kind)
    if variable is not None:
        q = q.where(Observation.variable == variable)
    if subject is not None:
        q = q.where(Observation.subject == subject)
    q = q.where(*time_range(Observation.observed_at, since, until))
    return paginate(
        session, q, page, order_by=[Observation.id.desc()], to_public=ObservationPublic.model_validate
    )


@router.get(
    "/v1/observations/{observation_id}", response_model=ObservationPublic, responses=problem_responses(404)
)
def get_observation(
    observation_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, _: ViewerKey
) -> ObservationPublic:
    row = session.get(Observation, observation_id)
    if row is None:
        raise NotFound(f"no observation with id {observation_id}")
    return ObservationPublic.model_validate(row)


@router.get("/v1/rejects", response_model=Page[RejectPublic])
def list_rejects(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    source: Word = None,
    reason: Word = None,
    subject: SubjectQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[RejectPublic]:
    """Refused inputs with their reasons, newest first; ``since``/``until`` filter on arrival time."""
    q = select(Reject)
    if source is not None:
        q = q.where(Reject.source == source)
    if reason is not None:
        q = q.where(Reject.reason == reason)
    if subject is not None:
        q = q.where(Reject.subject == subject)
    q = q.where(*time_range(Reject.received_at, since, until))
    return paginate(session, q, page, order_by=[Reject.id.desc()], to_public=RejectPublic.model_validate)
