"""Alarm rows and their lifecycle: raised → acknowledged → cleared, with who and when, each change in the
append-only ``alarm_events`` trail and queued for the webhooks in the same transaction.

Which alarms clear by themselves: ``single`` (one-event) rules, when the excursion ends (the first reading
back in band, or out of the rule's legs); ``cumulative`` rules never do, since the allowance stays spent:
an operator clears them. An operator may clear any alarm by hand; a later automatic clear of an alarm
already cleared changes nothing. Every function here runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.coldchain.excursions import AlarmRules, Transition
from oracle.alarms.webhooks import enqueue
from oracle.errors import NotFound, ValidationError
from oracle.storage.alarm_tables import AlarmEventRow, AlarmRow

SYSTEM = "system"
STATES = ("raised", "acknowledged", "cleared")


def _utc(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).isoformat().replace("+00:00", "Z")


def alarm_view(row: AlarmRow) -> dict[str, Any]:
    """The public shape of an alarm (API, dashboard, webhook bodies)."""
    from oracle.reports import subject_id

    return {
        "id": row.id,
        "shipment_id": row.shipment_id,
        "subject": "0x" + subject_id("shipment", row.shipment_id).hex(),
        "profile": row.profile,
        "rule": row.rule,
        "description": row.description,
        "severity": row.severity,
        "mode": row.mode,
        "auto_clear": row.auto_clear,
        "state": row.state,
        "raised_at_s": row.raised_at_s,
        "raised_value_c": row.raised_value_c,
        "raised_at": _utc(row.raised_at),
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": _utc(row.acknowledged_at),
        "cleared_by": row.cleared_by,
        "cleared_at": _utc(row.cleared_at),
        "cleared_at_s": row.cleared_at_s,
    }


def _event(s: Session, row: AlarmRow, action: str, actor: str, now: dt.datetime, at_s: int | None) -> None:
    s.add(AlarmEventRow(alarm_id=row.id, action=action, actor=actor, at=now, at_s=at_s, note=""))
    key = f"{row.shipment_id}/{row.rule}/{row.raised_at_s}/{action}"
    enqueue(s, key, {"type": f"alarm.{action}", "actor": actor, "alarm": alarm_view(row)}, now)


def _insert_alarm(s: Session, values: dict[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING on the alarm's identity; the new row's id, None if it existed."""
    table = cast(Table, AlarmRow.__table__)
    if s.get_bind().dialect.name == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(constraint="uq_alarm_identity")
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing(
            index_elements=["shipment_id", "rule", "raised_at_s"]
        )
    found = s.execute(stmt.values(**values).returning(table.c.id)).scalar()
    return None if found is None else int(found)


def record_transitions(
    s: Session, shipment_id: str, rules: AlarmRules, transitions: list[Transition], now: dt.datetime
) -> int:
    """Store what the evaluator yielded; a transition seen before (a replay) changes nothing. Returns
    the number of changes made."""
    changed = 0
    for t in transitions:
        rule = rules.rule(t.rule)
        identity = (
            AlarmRow.shipment_id == shipment_id,
            AlarmRow.rule == t.rule,
            AlarmRow.raised_at_s == t.raised_at_s,
        )
        if t.action == "raise":
            values = {
                "shipment_id": shipment_id,
                "profile": rules.profile,
                "rule": t.rule,
                "description": rule.describe()[:200],
                "severity": rule.severity,
                "mode": rule.mode,
                "auto_clear": rule.clears_automatically,
                "state": "raised",
                "raised_at_s": t.raised_at_s,
                "raised_value_c": t.value_c,
                "raised_at": now,
            }
            fresh = _insert_alarm(s, values)
            if fresh is not None:
                # A detached copy of what was just inserted: no read back.
                _event(s, AlarmRow(id=fresh, **values), "raised", SYSTEM, now, t.at_s)
                changed += 1
            continue
        row = s.scalars(
            update(AlarmRow)
            .where(*identity, AlarmRow.state != "cleared")
            .values(state="cleared", cleared_by=SYSTEM, cleared_at=now, cleared_at_s=t.at_s)
            .returning(AlarmRow),
            execution_options={"populate_existing": True},
        ).first()
        if row is not None:
            _event(s, row, "cleared", SYSTEM, now, t.at_s)
            changed += 1
    return changed


def acknowledge(s: Session, alarm_id: int, *, by: str, now: dt.datetime) -> AlarmRow:
    """Acknowledge an alarm (``by``: the API key's name). Acknowledging twice keeps the first who and when;
    a cleared alarm may still be acknowledged (its state stays ``cleared``). NotFound if unknown."""
    row = s.get(AlarmRow, alarm_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no alarm {alarm_id}")
    if row.acknowledged_by is None:
        row.acknowledged_by, row.acknowledged_at = by, now
        if row.state == "raised":
            row.state = "acknowledged"
        s.flush()
        _event(s, row, "acknowledged", by, now, None)
    return row


def clear(s: Session, alarm_id: int, *, by: str, now: dt.datetime) -> AlarmRow:
    """Clear an alarm by hand. Clearing a cleared alarm changes nothing. NotFound if unknown."""
    row = s.get(AlarmRow, alarm_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no alarm {alarm_id}")
    if row.state != "cleared":
        row.state, row.cleared_by, row.cleared_at = "cleared", by, now
        s.flush()
        _event(s, row, "cleared", by, now, None)
    return row


def list_alarms(
    s: Session, *, shipment_id: str | None = None, state: str | None = None, limit: int = 200
) -> list[AlarmRow]:
    """Newest first. ``state``: one of raised, acknowledged, cleared, or ``open`` (not cleared)."""
    q = select(AlarmRow).order_by(AlarmRow.id.desc()).limit(limit)
    if shipment_id is not None:
        q = q.where(AlarmRow.shipment_id == shipment_id)
    if state == "open":
        q = q.where(AlarmRow.state != "cleared")
    elif state is not None:
        if state not in STATES:
            raise ValidationError(f"state must be one of {(*STATES, 'open')}", reason="bad_state")
        q = q.where(AlarmRow.state == state)
    return list(s.scalars(q).all())


def history(s: Session, alarm_id: int) -> list[dict[str, Any]]:
    rows = s.scalars(
        select(AlarmEventRow).where(AlarmEventRow.alarm_id == alarm_id).order_by(AlarmEventRow.id)
    )
    return [{"action": e.action, "actor": e.actor, "at": _utc(e.at), "at_s": e.at_s} for e in rows]
