"""The evaluations jobs run: evaluate a subject, record the decision, and post a complete one.

Posting goes through :func:`oracle.decisions.post.post_decision` with the signer(s) and deployment the
service put in the context: ``ctx.extras["signers"]`` (Signer objects) or ``ctx.extras["signer"]``
(``(url, token)`` of the signer service, wrapped in one :class:`~oracle.signer.client.HttpSigner`),
``ctx.extras["signer_threshold"]`` (default 1) and ``ctx.extras["deployment"]``. Without them the
decision is still recorded and a warning says why nothing was posted.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from oracle.context import Context
from oracle.errors import ConfigError, NotFound, ValidationError
from oracle.posting import posting_setup
from oracle.reports import subject_id
from oracle.storage.tables import DeviceBinding

if TYPE_CHECKING:
    from oracle.attest import Attestation
    from oracle.decisions.record import DecisionOutcome

log = logging.getLogger(__name__)

_subject_locks: dict[str, threading.Lock] = {}
_subject_locks_guard = threading.Lock()


def _subject_lock(key: str) -> threading.Lock:
    """One evaluation of a subject at a time in this process: the periodic job, an immediate breach
    evaluation and an operator's request can fire together, and two evaluations must not race to
    record (and number the revision of) the same subject's decision."""
    with _subject_locks_guard:
        return _subject_locks.setdefault(key, threading.Lock())


def attest_outcome(ctx: Context, outcome: DecisionOutcome, *, subject_name: str) -> Attestation:
    """Sign and queue a complete outcome's report with the context's signers and deployment.

    :raises ConfigError, NotFound: no signer or deployment configured.
    :raises ValidationError: the decision is incomplete (``decision_incomplete``): nothing is signed.
    """
    from oracle.decisions.post import post_decision
    from oracle.network.rounds import NodeRuntime, begin_round, within_deviation

    runtime = ctx.extras.get("network_node")
    if isinstance(runtime, NodeRuntime):
        if outcome.report is None:
            raise ValidationError(
                f"decision {outcome.decision_id} is {outcome.status}: {outcome.reason}",
                reason="decision_incomplete",
            )
        from oracle.chain.client import connect
        from oracle.errors import OracleError

        try:
            skip = within_deviation(runtime, connect(ctx.chain_rpc_url), outcome.report)
        except OracleError as e:  # the chain is out of reach: sign (the router refuses a stale epoch anyway)
            log.warning("report policy not checked for %s, the chain is unreachable: %s", subject_name, e)
            skip = None
        if skip is not None:
            raise ValidationError(
                f"decision {outcome.decision_id} revises a report the router holds and is not signed: {skip}",
                reason="within_deviation",
            )
        return begin_round(
            ctx,
            runtime,
            outcome.report,
            subject_name=subject_name,
            detail={
                "decision_id": outcome.decision_id,
                "manifest_cid": outcome.manifest_cid,
                "score": outcome.score,
                "factors": outcome.factors,
            },
        )
    setup = posting_setup(ctx)
    return post_decision(
        ctx.sessions,
        outcome,
        subject_name=subject_name,
        signers=setup.signers,
        threshold=setup.threshold,
        chain_id=setup.chain_id,
        router=setup.router,
    )


def post_outcome(ctx: Context, outcome: DecisionOutcome, *, subject_name: str) -> int | None:
    """Post a complete outcome's report; returns the outbox row id, or ``None`` when not posted
    (incomplete decision, or no signer/deployment configured — logged)."""
    if outcome.report is None:
        return None
    try:
        return attest_outcome(ctx, outcome, subject_name=subject_name).outbox_id
    except (ConfigError, NotFound) as e:
        log.warning("decision %s for %s not posted: %s", outcome.decision_id, subject_name, e)
        return None
    except ValidationError as e:
        if getattr(e, "reason", "") != "within_deviation":
            raise
        log.info("decision %s for %s not posted: %s", outcome.decision_id, subject_name, e)
        return None


def run_drought(
    ctx: Context, *, region_id: str, period: str, post: bool = True, model_dir: Path | None = None
) -> DecisionOutcome:
    """Evaluate one region-month and, when complete and ``post``, post its report."""
    from oracle.decisions.drought import evaluate_drought

    if model_dir is None:
        configured = ctx.extras.get("drought_model_dir")
        model_dir = configured if isinstance(configured, Path) else None
    with _subject_lock(f"region:{region_id}:{period}"):
        outcome = evaluate_drought(
            ctx.sessions, ctx.blobs, region_id=region_id, period=period, model_dir=model_dir
        )
    if post and outcome.report is not None:
        post_outcome(ctx, outcome, subject_name=region_id)
    return outcome


def shipment_name(ctx: Context, subject: str) -> str | None:
    """The telemetry shipment id whose on-chain subject (``keccak("shipment:<id>")``) is ``subject``."""
    want = subject.lower()
    with ctx.sessions() as s:
        names = s.scalars(select(DeviceBinding.shipment_id).distinct()).all()
    for name in names:
        if name and "0x" + subject_id("shipment", name).hex() == want:
            return name
    return None


def run_shipment(
    ctx: Context, *, subject: str, post: bool = True, now: int | None = None
) -> DecisionOutcome | None:
    """Evaluate one shipment (by on-chain subject) and post a decided verdict; ``None`` when no device is
    bound to it yet (nothing to evaluate, logged).

    ``now`` (UNIX seconds) extends the record to that time so a silent logger counts as a data gap. The
    periodic job leaves it unset: loggers upload in batches, hours late after being offline, and their
    silence is judged at delivery (the delivery time closes the record) rather than against the clock."""
    from oracle.decisions.coldchain import evaluate_shipment

    name = shipment_name(ctx, subject)
    if name is None:
        log.info("shipment %s not evaluated: no device is bound to it yet", subject)
        return None
    with _subject_lock(f"shipment:{name}"):
        outcome = evaluate_shipment(ctx.sessions, ctx.blobs, shipment_id=name, now=now)
    if post:
        post_outcome(ctx, outcome, subject_name=name)
    return outcome
