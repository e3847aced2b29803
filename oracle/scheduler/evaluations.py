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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from oracle.context import Context
from oracle.errors import ConfigError, NotFound
from oracle.reports import subject_id
from oracle.storage.tables import DeviceBinding

if TYPE_CHECKING:
    from oracle.decisions.record import DecisionOutcome
    from oracle.signer.client import Signer

log = logging.getLogger(__name__)

_signer_lock = threading.Lock()
_HTTP_SIGNER = "scheduler_http_signer"


@dataclass(frozen=True)
class PostingSetup:
    signers: Sequence[Signer]
    threshold: int
    chain_id: int
    router: str


def posting_setup(ctx: Context) -> PostingSetup:
    """The signers and router reports are posted with; :raises ConfigError: naming what is missing."""
    from oracle.chain.deploy import Deployment
    from oracle.signer.client import HttpSigner, Signer

    deployment = ctx.extras.get("deployment")
    if not isinstance(deployment, Deployment):
        raise ConfigError("no contract deployment in the context (ctx.extras['deployment'])")
    router = deployment.address("OracleRouter")
    threshold = ctx.extras.get("signer_threshold", 1)
    if not isinstance(threshold, int) or threshold < 1:
        raise ConfigError("ctx.extras['signer_threshold'] must be a positive integer")
    given = ctx.extras.get("signers")
    if isinstance(given, list | tuple) and given and all(isinstance(s, Signer) for s in given):
        return PostingSetup(list(given), threshold, deployment.chain_id, router)
    configured = ctx.extras.get("signer")
    if not (
        isinstance(configured, tuple) and len(configured) == 2 and all(isinstance(v, str) for v in configured)
    ):
        raise ConfigError("no signer in the context (ctx.extras['signer'] = (url, token))")
    url, token = configured
    with _signer_lock:
        client = ctx.extras.get(_HTTP_SIGNER)
        if not isinstance(client, HttpSigner) or client.url != url.rstrip("/"):
            client = HttpSigner(url, token)
            ctx.extras[_HTTP_SIGNER] = client
    return PostingSetup([client], threshold, deployment.chain_id, router)


def post_outcome(ctx: Context, outcome: DecisionOutcome, *, subject_name: str) -> int | None:
    """Post a complete outcome's report; returns the outbox row id, or ``None`` when not posted
    (incomplete decision, or no signer/deployment configured — logged)."""
    from oracle.decisions.post import post_decision

    if outcome.report is None:
        return None
    try:
        setup = posting_setup(ctx)
    except (ConfigError, NotFound) as e:
        log.warning("decision %s for %s not posted: %s", outcome.decision_id, subject_name, e)
        return None
    att = post_decision(
        ctx.sessions,
        outcome,
        subject_name=subject_name,
        signers=setup.signers,
        threshold=setup.threshold,
        chain_id=setup.chain_id,
        router=setup.router,
    )
    return att.outbox_id


def run_drought(
    ctx: Context, *, region_id: str, period: str, post: bool = True, model_dir: Path | None = None
) -> DecisionOutcome:
    """Evaluate one region-month and, when complete and ``post``, post its report."""
    from oracle.decisions.drought import evaluate_drought

    if model_dir is None:
        configured = ctx.extras.get("drought_model_dir")
        model_dir = configured if isinstance(configured, Path) else None
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
    outcome = evaluate_shipment(ctx.sessions, ctx.blobs, shipment_id=name, now=now)
    if post:
        post_outcome(ctx, outcome, subject_name=name)
    return outcome
