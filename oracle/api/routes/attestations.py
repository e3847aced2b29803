"""``/v1/attestations``: reports the oracle attested, joined with the transaction that carries them.

``GET`` lists and shows them (viewer). ``POST`` asks for an evaluation (operator): the oracle evaluates the
subject from the inputs it holds, exactly as its scheduler would, and signs and queues the report only
when its own decision engine completed one. No caller chooses a value, an epoch or a model: every kind
the oracle reports moves money (a payout, a void), so a report that the node did not compute is never
signed. A request carrying any of those fields is refused (422).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from oracle.api.deps import AuditDep, CtxDep, OperatorKey, PageDep, SessionDep, ViewerKey
from oracle.api.pagination import (
    MAX_ID,
    NAME_RE,
    Page,
    SinceQuery,
    StatusQuery,
    SubjectQuery,
    UntilQuery,
    UtcDateTime,
    is_subject_hex,
    paginate,
    time_range,
)
from oracle.api.problems import ApiError, problem_responses
from oracle.api.signing import signing_setup
from oracle.errors import NotFound, ValidationError
from oracle.reports import ReportKind, Verdict, from_fixed, subject_id
from oracle.storage.tables import OutboxRow, ReportRow

router = APIRouter(
    prefix="/v1/attestations", tags=["attestations"], responses=problem_responses(401, 403, 422, 429)
)

KindName = Literal["drought_severity", "coldchain_verdict"]
HEX32 = r"^0x[0-9a-fA-F]{64}$"
ZERO32 = "0x" + "00" * 32


class TransactionPublic(BaseModel):
    outbox_id: int
    state: str = Field(description="pending, signed, sent, confirmed, reverted or failed")
    tx_hash: str | None
    block_number: int | None
    gas_used: int | None
    revert_reason: str | None
    attempts: int


class AttestationPublic(BaseModel):
    id: int
    subject: str = Field(description="bytes32 subject id, 0x-hex")
    subject_name: str
    kind: str
    value: str = Field(description="the on-chain int256 value (fixed point with 6 decimals for drought)")
    value_display: str = Field(description="drought: severity as a decimal; cold chain: the verdict name")
    epoch: int
    observed_at: int = Field(description="UNIX seconds")
    inputs_root: str
    model_id: str
    status: str
    created_at: UtcDateTime
    signers: list[str]
    factors: list[Any] = Field(description="the top-3 factors the decision recorded, most important first")
    manual: bool
    transaction: TransactionPublic | None


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", examples=["region"])
    name: str = Field(pattern=NAME_RE, examples=["kenya-marsabit"])


class EvaluationRequest(BaseModel):
    """Ask the oracle to evaluate a subject now. ``region`` subjects need the ``period`` (YYYY-MM) to
    evaluate; ``shipment`` subjects are evaluated on every reading received so far."""

    model_config = ConfigDict(extra="forbid")
    subject: SubjectIn
    period: str | None = Field(None, pattern=r"^[0-9]{4}-[0-9]{2}$", examples=["2026-06"])
    note: str = Field("", max_length=500)


def _kind_name(code: int) -> str:
    try:
        return ReportKind(code).name.lower()
    except ValueError:
        return f"unknown_{code}"


def _display(kind: int, value: str) -> str:
    try:
        v = int(value)
    except ValueError:
        return value
    if kind == ReportKind.DROUGHT_SEVERITY:
        return str(from_fixed(v))
    if kind == ReportKind.COLDCHAIN_VERDICT:
        try:
            return Verdict(v).name.lower()
        except ValueError:
            return value
    return value


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def to_public(pair: Any) -> AttestationPublic:
    report: ReportRow = pair[0]
    out: OutboxRow | None = pair[1]
    detail = report.detail if isinstance(report.detail, dict) else {}
    factors = detail.get("factors")
    return AttestationPublic(
        id=report.id,
        subject=report.subject,
        subject_name=report.subject_name,
        kind=_kind_name(report.kind),
        value=report.value,
        value_display=_display(report.kind, report.value),
        epoch=report.epoch,
        observed_at=report.observed_at,
        inputs_root=report.inputs_root,
        model_id=report.model_id,
        status=report.status,
        created_at=report.created_at,
        signers=_strings(detail.get("signers")),
        factors=list(factors[:3]) if isinstance(factors, list) else [],
        manual=bool(detail.get("manual", False)),
        transaction=None
        if out is None
        else TransactionPublic(
            outbox_id=out.id,
            state=out.status,
            tx_hash=out.tx_hash,
            block_number=out.block_number,
            gas_used=out.gas_used,
            revert_reason=out.revert_reason,
            attempts=out.attempts,
        ),
    )


def _base_query() -> Any:
    return select(ReportRow, OutboxRow).outerjoin(OutboxRow, OutboxRow.report_id == ReportRow.id)


@router.get("", response_model=Page[AttestationPublic])
def list_attestations(
    session: SessionDep,
    _: ViewerKey,
    page: PageDep,
    subject: SubjectQuery = None,
    kind: Annotated[KindName | None, Query()] = None,
    status: StatusQuery = None,
    tx_state: StatusQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Page[AttestationPublic]:
    """Attestations, newest first. ``since``/``until`` filter on when the report was recorded."""
    q = _base_query()
    if subject is not None:
        q = q.where(
            ReportRow.subject == subject.lower()
            if is_subject_hex(subject)
            else ReportRow.subject_name == subject
        )
    if kind is not None:
        q = q.where(ReportRow.kind == int(ReportKind[kind.upper()]))
    if status is not None:
        q = q.where(ReportRow.status == status)
    if tx_state is not None:
        q = q.where(OutboxRow.status == tx_state)
    q = q.where(*time_range(ReportRow.created_at, since, until))
    return paginate(session, q, page, order_by=[ReportRow.id.desc()], to_public=to_public)


@router.get("/{attestation_id}", response_model=AttestationPublic, responses=problem_responses(404))
def get_attestation(
    attestation_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, _: ViewerKey
) -> AttestationPublic:
    found = session.execute(_base_query().where(ReportRow.id == attestation_id)).first()
    if found is None:
        raise NotFound(f"no attestation with id {attestation_id}")
    return to_public(found)


@router.post(
    "",
    response_model=AttestationPublic,
    status_code=201,
    responses={
        200: {"model": AttestationPublic, "description": "the same report was already attested"},
        **problem_responses(404, 409, 503),
    },
)
def create_attestation(
    body: EvaluationRequest,
    response: Response,
    ctx: CtxDep,
    session: SessionDep,
    key: OperatorKey,
    audit: AuditDep,
) -> AttestationPublic:
    """Evaluate the subject now and attest the report the oracle computed: 201 when new, 200 when the
    same report was already attested. 409 ``decision_incomplete`` when the inputs do not yet make a
    decision (the reason names what is missing; nothing is signed); 404 for an unknown region or
    shipment; 422 for a request that names a value, epoch or model, or a region without a period;
    503 ``signer_not_configured`` / signer failures (nothing is queued)."""
    from oracle.scheduler.evaluations import attest_outcome, run_drought, run_shipment

    namespace, name = body.subject.namespace, body.subject.name
    if namespace not in ("region", "shipment"):
        raise ValidationError(
            f"the oracle evaluates 'region' and 'shipment' subjects, not {namespace!r}",
            reason="unknown_subject",
        )
    if namespace == "region" and body.period is None:
        raise ValidationError(
            "a region is evaluated for a period: give period YYYY-MM", reason="period_required"
        )
    signing_setup(ctx)  # refuse before evaluating when nothing could sign
    session.rollback()  # end the read transaction: the evaluation uses its own sessions
    if namespace == "region":
        assert body.period is not None
        outcome = run_drought(ctx, region_id=name, period=body.period, post=False)
    else:
        shipment = run_shipment(ctx, subject="0x" + subject_id("shipment", name).hex(), post=False)
        if shipment is None:
            raise NotFound(f"no device is bound to shipment {name!r}: nothing to evaluate")
        outcome = shipment
    if outcome.report is None:
        audit.record(
            session,
            resource="attestations",
            resource_id=f"decision:{outcome.decision_id}",
            summary=f"evaluation of {namespace}:{name} requested: {outcome.status}, nothing signed",
            status=409,
        )
        session.commit()
        raise ApiError(
            409,
            f"decision {outcome.decision_id} is {outcome.status}: {outcome.reason}",
            reason="decision_incomplete",
        )
    done = attest_outcome(ctx, outcome, subject_name=name)
    audit.record(
        session,
        resource="attestations",
        resource_id=done.report_id,
        summary=(
            f"evaluation of {namespace}:{name} requested{' (' + body.note + ')' if body.note else ''}: "
            f"{'attested' if done.created else 'already attested'} epoch {outcome.report.epoch} "
            f"value {outcome.report.value}"
        ),
        status=201 if done.created else 200,
    )
    session.commit()
    if not done.created:
        response.status_code = 200
    found = session.execute(_base_query().where(ReportRow.id == done.report_id)).one()
    return to_public(found)
