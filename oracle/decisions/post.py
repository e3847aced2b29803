"""Posting a complete decision: its report goes through the signer(s) and the outbox like any other."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from oracle.attest import Attestation, attest
from oracle.decisions.record import DecisionOutcome
from oracle.errors import ValidationError
from oracle.signer.client import Signer
from oracle.storage.decision_tables import Decision


def post_decision(
    sessions: sessionmaker[Session],
    outcome: DecisionOutcome,
    *,
    subject_name: str,
    signers: Sequence[Signer],
    threshold: int,
    chain_id: int,
    router: str,
) -> Attestation:
    """Attest the decision's report; refuses an incomplete decision (nothing is made up)."""
    if outcome.report is None:
        raise ValidationError(
            f"decision {outcome.decision_id} is {outcome.status}: {outcome.reason}",
            reason="decision_incomplete",
        )
    att = attest(
        sessions,
        outcome.report,
        signers=signers,
        threshold=threshold,
        chain_id=chain_id,
        router=router,
        subject_name=subject_name,
        detail={
            "decision_id": outcome.decision_id,
            "manifest_cid": outcome.manifest_cid,
            "score": outcome.score,
            "factors": outcome.factors,
        },
    )
    with sessions() as s:
        decision = s.get(Decision, outcome.decision_id)
        if decision is not None and decision.report_id is None:
            decision.report_id = att.report_id
            s.commit()
    return att
