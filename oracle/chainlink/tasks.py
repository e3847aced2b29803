"""The questions a Chainlink job may ask the oracle, and how they are answered.

Both the external adapter (HTTP, from a Chainlink node) and the direct-request follower (``OracleRequest``
logs of an Operator) accept the same parameters and give the same answer:

* ``drought-severity``: ``region`` (a registered region id) and ``period`` (``YYYY-MM``);
* ``coldchain-breach``: ``shipment`` (a shipment id);
* ``times`` (optional, default 10,000): the integer multiplier, so ``result = round(score × times)``
  (half away from zero) fits a Solidity ``int256``.

A decision that is not complete (inputs missing) is refused with reason ``incomplete``: nothing is ever
answered with a made-up value.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from oracle.decisions.drought import evaluate_drought, parse_period
from oracle.decisions.record import DecisionOutcome
from oracle.errors import ConfigError, NotFound, OracleError, ValidationError
from oracle.storage.blobs import BlobStore
from oracle.storage.decision_tables import Decision

DROUGHT = "drought-severity"
COLDCHAIN = "coldchain-breach"
TASKS = (DROUGHT, COLDCHAIN)
DEFAULT_TIMES = 10_000
#: Largest multiplier accepted: severity ≤ 5, so results stay far inside int256 and JSON-safe floats
#: are not involved (the result is computed with Decimal).
MAX_TIMES = 10**18


class Unsupported(OracleError):
    """The task is known but this deployment cannot answer it (its evaluation is not installed)."""


@dataclass(frozen=True)
class TaskRequest:
    """A validated question. ``region``/``period`` are set for drought, ``shipment`` for cold chain."""

    task: str
    times: int = DEFAULT_TIMES
    region: str = ""
    period: str = ""
    shipment: str = ""

    @property
    def subject(self) -> str:
        return f"region:{self.region}:{self.period}" if self.task == DROUGHT else f"shipment:{self.shipment}"


@dataclass(frozen=True)
class TaskAnswer:
    """``result`` = round(score × times); ``attestation_id`` is the report id once the decision was
    posted, else the decision id (``decision_id``/``report_id`` say which)."""

    request: TaskRequest
    result: int
    score: float
    factors: list[dict[str, Any]]
    decision_id: int
    report_id: int | None

    @property
    def attestation_id(self) -> int:
        return self.report_id if self.report_id is not None else self.decision_id


def _text(params: Mapping[str, Any], key: str, *, max_len: int = 120) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"parameter {key!r} is required (a non-empty string)", reason=f"missing_{key}")
    if len(value) > max_len:
        raise ValidationError(f"parameter {key!r} is longer than {max_len} characters", reason=f"bad_{key}")
    return value.strip()


def parse_task(params: Mapping[str, Any]) -> TaskRequest:
    """Validate a job's parameters; ``ValidationError`` with reason ``unknown_task``, ``missing_<key>``,
    ``bad_period`` or ``bad_times``."""
    task = params.get("task")
    if task not in TASKS:
        raise ValidationError(
            f"unknown task {task!r}; expected one of {', '.join(TASKS)}", reason="unknown_task"
        )
    raw_times = params.get("times", DEFAULT_TIMES)
    if isinstance(raw_times, str) and raw_times.strip().isascii() and raw_times.strip().isdecimal():
        raw_times = int(raw_times)  # jobs often pass numbers as strings (ASCII digits only: "²" is a digit)
    if isinstance(raw_times, bool) or not isinstance(raw_times, int) or not 1 <= raw_times <= MAX_TIMES:
        raise ValidationError(
            f"times must be an integer in 1..{MAX_TIMES}, got {raw_times!r}", reason="bad_times"
        )
    if task == DROUGHT:
        period = _text(params, "period", max_len=7)
        parse_period(period)
        return TaskRequest(task=DROUGHT, times=raw_times, region=_text(params, "region"), period=period)
    return TaskRequest(task=COLDCHAIN, times=raw_times, shipment=_text(params, "shipment"))


def scaled(score: float, times: int) -> int:
    """round(score × times), half away from zero, computed exactly from the score's decimal form."""
    return int((Decimal(repr(score)) * times).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _coldchain_evaluator() -> Callable[..., DecisionOutcome]:
    # Imported lazily: the cold-chain evaluation is a separate module that a deployment may lack.
    try:
        module = importlib.import_module("oracle.decisions.coldchain")
    except ImportError as e:
        raise Unsupported(f"task {COLDCHAIN!r} is not available here: {e}") from None
    evaluator = getattr(module, "evaluate_shipment", None)
    if evaluator is None:
        raise Unsupported(f"task {COLDCHAIN!r} is not available here: no evaluate_shipment")
    return evaluator  # type: ignore[no-any-return]


def answer_task(sessions: sessionmaker[Session], blobs: BlobStore, request: TaskRequest) -> TaskAnswer:
    """Evaluate ``request`` (records a decision; posts nothing) and scale its score.

    Raises ``NotFound`` (unknown region or shipment), ``ValidationError`` reason ``incomplete`` (the
    decision lacks inputs), ``Unsupported`` (cold chain not installed), other ``OracleError`` on failure.
    """
    try:
        if request.task == DROUGHT:
            outcome = evaluate_drought(sessions, blobs, region_id=request.region, period=request.period)
        else:
            outcome = _coldchain_evaluator()(sessions, blobs, shipment_id=request.shipment)
    except NotFound as e:
        if str(e).startswith("no ") and "model" in str(e):
            # A missing model is the operator's problem, not an unknown subject.
            raise ConfigError(str(e)) from None
        raise
    # An in-transit shipment ("no_decision") still has a breach probability; only missing inputs refuse.
    if outcome.status == "incomplete" or outcome.score is None:
        raise ValidationError(
            f"no answer yet for {request.subject}: decision {outcome.decision_id} is {outcome.status}"
            + (f" ({outcome.reason})" if outcome.reason else ""),
            reason="incomplete",
        )
    with sessions() as s:
        decision = s.get(Decision, outcome.decision_id)
        report_id = decision.report_id if decision is not None else None
    return TaskAnswer(
        request=request,
        result=scaled(outcome.score, request.times),
        score=float(outcome.score),
        factors=list(outcome.factors),
        decision_id=outcome.decision_id,
        report_id=report_id,
    )


def not_found_reason(task: str) -> str:
    """The refusal reason when ``task``'s subject does not exist."""
    return "unknown_region" if task == DROUGHT else "unknown_shipment"


__all__ = [
    "COLDCHAIN",
    "DEFAULT_TIMES",
    "DROUGHT",
    "TASKS",
    "NotFound",
    "TaskAnswer",
    "TaskRequest",
    "Unsupported",
    "answer_task",
    "not_found_reason",
    "parse_task",
    "scaled",
]
