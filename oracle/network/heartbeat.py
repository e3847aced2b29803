"""Heartbeats: a subscribed subject whose newest accepted report is older than the network's heartbeat.

The report policy (:func:`oracle.network.rounds.within_deviation`) skips a report whose value moved less
than the deviation, as long as the heartbeat has not passed. A subject that then goes quiet for longer
than the heartbeat means reports stopped (inputs missing, nodes down, no quorum): ``/metrics`` exports it
as ``oracle_heartbeat_missed`` and the dashboard flags it, both from :func:`heartbeats`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

#: Most subjects looked at in one pass (metrics and dashboard stay bounded).
MAX_SUBJECTS = 1000


def heartbeats(s: Session, heartbeat_s: int, now: float) -> list[dict[str, Any]]:
    """Each subscribed subject that has an accepted report: its newest report's time, how old it is and
    whether the heartbeat was missed. Subjects never reported yet are left out (nothing to compare)."""
    from oracle.storage.tables import ReportRow, Subscription

    subjects = s.scalars(
        select(Subscription.subject)
        .where(Subscription.active.is_(True))
        .distinct()
        .order_by(Subscription.subject)
        .limit(MAX_SUBJECTS)
    ).all()
    out = []
    for subject in subjects:
        newest, name = s.execute(
            select(func.max(ReportRow.observed_at), func.max(ReportRow.subject_name)).where(
                ReportRow.subject == subject.lower(), ReportRow.status.in_(("confirmed", "accepted"))
            )
        ).one()
        if newest is None:
            continue
        age = now - int(newest)
        out.append(
            {
                "subject": subject.lower(),
                "name": str(name or subject),
                "last_observed_at": int(newest),
                "age_s": int(age),
                "heartbeat_s": heartbeat_s,
                "missed": age > heartbeat_s,
            }
        )
    return out
