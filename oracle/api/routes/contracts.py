"""What the chain listener recorded from our contracts: policies, payouts, shipments, subscriptions.

All read-only (viewer). Amounts and thresholds are decimal strings of on-chain integers (they do not fit
a JSON number); addresses are checksummed as the listener stored them, and filters match any case.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from oracle.api.deps import PageDep, SessionDep, ViewerKey
from oracle.api.pagination import (
    ADDRESS_RE,
    MAX_INT,
    SUBJECT_HEX,
    AddressQuery,
    Page,
    StatusQuery,
    paginate,
)
from oracle.api.problems import problem_responses
from oracle.errors import NotFound
from oracle.storage.tables import Payout, Policy, Shipment, Subscription

router = APIRouter(tags=["contracts"], responses=problem_responses(401, 403, 422, 429))

SubjectHex = Annotated[str | None, Query(pattern=SUBJECT_HEX, description="0x + 64 hex")]
IdQuery = Annotated[int | None, Query(ge=0, le=MAX_INT)]


def _same(column: Any, value: str) -> Any:
    return func.lower(column) == value.lower()


class PolicyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    pool: str
    policy_id: int
    insured: str
    region_subject: str
    coverage_start: int
    coverage_end: int
    trigger: str
    exit: str
    limit: str
    status: str


class PayoutPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    pool: str
    policy_id: int
    insured: str
    amount: str
    #: The report epoch it was paid on (month * 1000 + revision); 0 for a payout of what was owed.
    epoch: int
    tx_hash: str
    block_number: int


class ShipmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    subject: str
    escrow: str
    buyer: str
    seller: str
    amount: str
    profile: str
    deadline: int
    status: str
    settled_tx: str | None


class SubscriptionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    subject: str
    consumer: str
    active: bool
    since_block: int


@router.get("/v1/policies", response_model=Page[PolicyPublic])
def list_policies(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    status: StatusQuery = None,
    subject: SubjectHex = None,
    pool: AddressQuery = None,
    insured: AddressQuery = None,
) -> Page[PolicyPublic]:
    """Insurance policies; ``subject`` is the insured region's subject id."""
    q = select(Policy)
    if status is not None:
        q = q.where(Policy.status == status)
    if subject is not None:
        q = q.where(_same(Policy.region_subject, subject))
    if pool is not None:
        q = q.where(_same(Policy.pool, pool))
    if insured is not None:
        q = q.where(_same(Policy.insured, insured))
    return paginate(
        session, q, page, order_by=[Policy.pool, Policy.policy_id], to_public=PolicyPublic.model_validate
    )


@router.get("/v1/policies/{pool}/{policy_id}", response_model=PolicyPublic, responses=problem_responses(404))
def get_policy(
    pool: Annotated[str, Path(pattern=ADDRESS_RE)],
    policy_id: Annotated[int, Path(ge=0, le=MAX_INT)],
    session: SessionDep,
    _: ViewerKey,
) -> PolicyPublic:
    row = session.scalar(select(Policy).where(_same(Policy.pool, pool), Policy.policy_id == policy_id))
    if row is None:
        raise NotFound(f"no policy {policy_id} in pool {pool}")
    return PolicyPublic.model_validate(row)


@router.get("/v1/payouts", response_model=Page[PayoutPublic])
def list_payouts(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    pool: AddressQuery = None,
    policy_id: IdQuery = None,
    insured: AddressQuery = None,
) -> Page[PayoutPublic]:
    """Payouts the pools sent, one per PayoutSent event (a policy may have several), newest block first."""
    q = select(Payout)
    if pool is not None:
        q = q.where(_same(Payout.pool, pool))
    if policy_id is not None:
        q = q.where(Payout.policy_id == policy_id)
    if insured is not None:
        q = q.where(_same(Payout.insured, insured))
    return paginate(
        session,
        q,
        page,
        order_by=[Payout.block_number.desc(), Payout.id.desc()],
        to_public=PayoutPublic.model_validate,
    )


@router.get("/v1/shipments", response_model=Page[ShipmentPublic])
def list_shipments(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    status: StatusQuery = None,
    subject: SubjectHex = None,
    escrow: AddressQuery = None,
    buyer: AddressQuery = None,
    seller: AddressQuery = None,
) -> Page[ShipmentPublic]:
    """Cold-chain escrow shipments (open, voided, released, expired …)."""
    q = select(Shipment)
    if status is not None:
        q = q.where(Shipment.status == status)
    if subject is not None:
        q = q.where(_same(Shipment.subject, subject))
    for column, value in ((Shipment.escrow, escrow), (Shipment.buyer, buyer), (Shipment.seller, seller)):
        if value is not None:
            q = q.where(_same(column, value))
    return paginate(session, q, page, order_by=[Shipment.subject], to_public=ShipmentPublic.model_validate)


@router.get("/v1/shipments/{subject}", response_model=ShipmentPublic, responses=problem_responses(404))
def get_shipment(
    subject: Annotated[str, Path(pattern=SUBJECT_HEX)], session: SessionDep, _: ViewerKey
) -> ShipmentPublic:
    row = session.scalar(select(Shipment).where(_same(Shipment.subject, subject)))
    if row is None:
        raise NotFound(f"no shipment with subject {subject}")
    return ShipmentPublic.model_validate(row)


@router.get("/v1/subscriptions", response_model=Page[SubscriptionPublic])
def list_subscriptions(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    subject: SubjectHex = None,
    consumer: AddressQuery = None,
    active: Annotated[bool | None, Query()] = None,
) -> Page[SubscriptionPublic]:
    """Consumer contracts subscribed to subjects on the router."""
    q = select(Subscription)
    if subject is not None:
        q = q.where(_same(Subscription.subject, subject))
    if consumer is not None:
        q = q.where(_same(Subscription.consumer, consumer))
    if active is not None:
        q = q.where(Subscription.active.is_(active))
    return paginate(
        session,
        q,
        page,
        order_by=[Subscription.subject, Subscription.consumer],
        to_public=SubscriptionPublic.model_validate,
    )
