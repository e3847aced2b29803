"""``/v1/attestations``: reports the oracle attested, joined with the transaction that carries them.

``GET`` lists and shows them (viewer); ``POST`` attests a manual report (operator): the report is recorded,
signed by the configured signer(s) and queued in the outbox, exactly as the scheduler does it.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from oracle.api.deps import AuditDep, CtxDep, OperatorKey, PageDep, SessionDep, ViewerKey
from oracle.api.pagination import (
    MAX_ID,
    MAX_INT,
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
from oracle.api.problems import problem_responses
from oracle.api.signing import signing_setup
from oracle.errors import NotFound, ValidationError
from oracle.reports import ReportKind, Verdict, from_fixed, subject_id, to_fixed
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


class AttestationCreate(BaseModel):
    """A manual report. ``value``: drought severity 0..5 (up to 6 decimals); cold chain: the verdict
    code 0 (no decision), 1 (breach) or 2 (delivered). ``epoch`` defaults to one above the latest known
    for the subject; ``observed_at`` (UNIX seconds) to now; ``inputs_root`` and ``model_id`` to zero
    (a manual report has no model)."""

    model_config = ConfigDict(extra="forbid")
    subject: SubjectIn
    kind: KindName
    value: Decimal = Field(ge=-1_000_000, le=1_000_000, allow_inf_nan=False)
    epoch: int | None = Field(None, ge=1, le=MAX_INT)
    observed_at: int | None = Field(None, ge=0, le=MAX_INT)
    inputs_root: str = Field(ZERO32, pattern=HEX32)
    model_id: str = Field(ZERO32, pattern=HEX32)
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


def _report_value(kind: ReportKind, value: Decimal) -> int:
    if kind is ReportKind.DROUGHT_SEVERITY:
        return int(to_fixed(value))
    if value != value.to_integral_value():
        raise ValidationError(
            f"a cold-chain verdict is the integer 0, 1 or 2, not {value}", reason="value_out_of_range"
        )
    return int(value)


@router.post(
    "",
    response_model=AttestationPublic,
    status_code=201,
    responses={
        200: {"model": AttestationPublic, "description": "the identical report already existed"},
        **problem_responses(503),
    },
)
def create_attestation(
    body: AttestationCreate,
    response: Response,
    ctx: CtxDep,
    session: SessionDep,
    key: OperatorKey,
    audit: AuditDep,
) -> AttestationPublic:
    """Attest a manual report: record, sign (k-of-n), queue the router transaction. 201 when new, 200
    when this identical report was already attested; 422 ``epoch_conflict`` for a different report at
    an epoch already used; 503 ``signer_not_configured`` / signer failures (nothing is queued)."""
    from oracle.attest import attest, next_epoch
    from oracle.reports import Report

    kind = ReportKind[body.kind.upper()]
    subject = subject_id(body.subject.namespace, body.subject.name)
    value = _report_value(kind, body.value)
    setup = signing_setup(ctx)
    epoch = body.epoch if body.epoch is not None else next_epoch(session, subject)
    session.rollback()  # end the read transaction: attest() uses its own sessions
    report = Report(
        subject=subject,
        kind=kind,
        value=value,
        epoch=epoch,
        observed_at=body.observed_at if body.observed_at is not None else int(time.time()),
        inputs_root=bytes.fromhex(body.inputs_root[2:]),
        model_id=bytes.fromhex(body.model_id[2:]),
    )
    report.check_value_range()
    done = attest(
        ctx.sessions,
        report,
        signers=setup.signers,
        threshold=setup.threshold,
        chain_id=setup.chain_id,
        router=setup.router,
        subject_name=f"{body.subject.namespace}:{body.subject.name}",
        detail={"manual": True, "by": key.name, "note": body.note},
    )
    audit.record(
        session,
        resource="attestations",
        resource_id=done.report_id,
        summary=(
            f"{'attested' if done.created else 're-submitted'} manual {kind.name.lower()} report "
            f"subject {body.subject.namespace}:{body.subject.name} epoch {epoch} value {body.value}"
        ),
        status=201 if done.created else 200,
    )
    session.commit()
    if not done.created:
        response.status_code = 200
    found = session.execute(_base_query().where(ReportRow.id == done.report_id)).one()
    return to_public(found)
