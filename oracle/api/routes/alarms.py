"""``/v1/alarms``: operational excursion alarms, their lifecycle, shipment legs and alarm webhooks.

=================================================  =============  =========================================
``GET /v1/alarms?shipment=&state=``                viewer         newest first; state raised, acknowledged,
                                                                  cleared or open (not cleared)
``GET /v1/alarms/{id}``                            viewer         one alarm and its trail (who, when)
``POST /v1/alarms/{id}/acknowledge``               operator       who = the key's name
``POST /v1/alarms/{id}/clear``                     operator       manual clear; single-event alarms also
                                                                  clear by themselves back in band,
                                                                  cumulative ones only here
``POST /v1/shipments/{shipment}/legs``             operator       ``{"leg": origin|in_transit|destination,
                                                                  "at_s": UNIX s (default now)}``
``GET /v1/shipments/{shipment}/alarm-setup``       viewer         profile, ignore period, rules, legs and
                                                                  the current leg
``GET /v1/alarms/webhooks`` / ``POST``             admin          list / add ``{"name", "url"}``: the
                                                                  secret is written to the data dir, never
                                                                  returned
=================================================  =============  =========================================

Every change is in the audit log and in the alarm's own trail, and is queued for the webhooks.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from oracle.api.deps import AdminKey, AuditDep, CtxDep, OperatorKey, SessionDep, ViewerKey
from oracle.api.problems import problem_responses
from oracle.errors import NotFound

router = APIRouter(tags=["alarms"], responses=problem_responses(401, 403, 422, 429))

AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1)]
StateFilter = Literal["raised", "acknowledged", "cleared", "open"]


class LegChange(BaseModel):
    leg: Literal["origin", "in_transit", "destination"]
    at_s: int | None = Field(default=None, ge=0, le=2**40, description="UNIX seconds; default now")


class WebhookCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    url: str = Field(min_length=8, max_length=500, pattern=r"^https?://\S+$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.get("/v1/alarms")
def list_alarms(
    session: SessionDep,
    _: ViewerKey,
    shipment: Annotated[str | None, Query(max_length=120)] = None,
    state: StateFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> dict[str, Any]:
    """Alarms, newest first, optionally of one shipment (its telemetry id) and in one state."""
    from oracle.alarms.store import alarm_view
    from oracle.alarms.store import list_alarms as query

    return {"items": [alarm_view(r) for r in query(session, shipment_id=shipment, state=state, limit=limit)]}


@router.get("/v1/alarms/webhooks")
def list_webhooks(session: SessionDep, _: AdminKey) -> dict[str, Any]:
    """Registered webhooks with their delivery counts (secrets are never shown)."""
    from sqlalchemy import func

    from oracle.storage.alarm_tables import AlarmWebhook, WebhookDelivery

    pending = session.execute(
        select(WebhookDelivery.webhook_id, func.count())
        .where(WebhookDelivery.state == "pending")
        .group_by(WebhookDelivery.webhook_id)
    ).all()
    counts = {int(hook): int(n) for hook, n in pending}
    return {
        "items": [
            {"id": w.id, "name": w.name, "url": w.url, "enabled": w.enabled, "pending": counts.get(w.id, 0)}
            for w in session.scalars(select(AlarmWebhook).order_by(AlarmWebhook.id))
        ]
    }


@router.post("/v1/alarms/webhooks", status_code=201)
def create_webhook(
    body: WebhookCreate, ctx: CtxDep, session: SessionDep, _: AdminKey, audit: AuditDep
) -> dict[str, Any]:
    """Add a webhook; its HMAC secret is generated into ``<data dir>/alarm-webhooks/<name>.secret``."""
    from oracle.alarms.webhooks import add_webhook, secret_path

    made = add_webhook(ctx.sessions, ctx.settings.data_dir, name=body.name, url=body.url)
    audit.record(
        session,
        resource="alarm_webhooks",
        resource_id=made.id,
        summary=f"added webhook {body.name!r}",
        status=201,
    )
    session.commit()
    return {
        "id": made.id,
        "name": made.name,
        "url": made.url,
        "secret_file": str(secret_path(ctx.settings.data_dir, made.name)),
    }


@router.get("/v1/alarms/{alarm_id}", responses=problem_responses(404))
def get_alarm(alarm_id: AlarmId, session: SessionDep, _: ViewerKey) -> dict[str, Any]:
    from oracle.alarms.store import alarm_view, history
    from oracle.storage.alarm_tables import AlarmRow

    row = session.get(AlarmRow, alarm_id)
    if row is None:
        raise NotFound(f"no alarm {alarm_id}")
    return alarm_view(row) | {"trail": history(session, alarm_id)}


@router.post("/v1/alarms/{alarm_id}/acknowledge", responses=problem_responses(404))
def acknowledge_alarm(
    alarm_id: AlarmId, session: SessionDep, key: OperatorKey, audit: AuditDep
) -> dict[str, Any]:
    """Acknowledge: ``acknowledged_by`` is the calling key's name; acknowledging again changes nothing."""
    from oracle.alarms.store import acknowledge, alarm_view

    row = acknowledge(session, alarm_id, by=key.name, now=_now())
    audit.record(session, resource="alarms", resource_id=alarm_id, summary="acknowledged")
    session.commit()
    return alarm_view(row)


@router.post("/v1/alarms/{alarm_id}/clear", responses=problem_responses(404))
def clear_alarm(alarm_id: AlarmId, session: SessionDep, key: OperatorKey, audit: AuditDep) -> dict[str, Any]:
    """Clear by hand (``cleared_by`` is the key's name). Clearing a cleared alarm changes nothing."""
    from oracle.alarms.store import alarm_view, clear

    row = clear(session, alarm_id, by=key.name, now=_now())
    audit.record(session, resource="alarms", resource_id=alarm_id, summary="cleared")
    session.commit()
    return alarm_view(row)


@router.post("/v1/shipments/{shipment}/legs", status_code=201)
def post_leg(
    shipment: Annotated[str, Path(min_length=1, max_length=120)],
    body: LegChange,
    ctx: CtxDep,
    session: SessionDep,
    key: OperatorKey,
    audit: AuditDep,
) -> dict[str, Any]:
    """Record a leg change; alarm rules gated by legs follow it from ``at_s`` on (not retroactively)."""
    from oracle.alarms.live import record_leg

    at_s = body.at_s if body.at_s is not None else int(time.time())
    row = record_leg(ctx.sessions, shipment_id=shipment, leg=body.leg, at_s=at_s, by=key.name)
    audit.record(
        session, resource="shipment_legs", resource_id=shipment, summary=f"{body.leg} from {at_s}", status=201
    )
    session.commit()
    return {
        "id": row.id,
        "shipment_id": shipment,
        "leg": row.leg,
        "at_s": row.at_s,
        "recorded_by": row.recorded_by,
    }


@router.get("/v1/shipments/{shipment}/alarm-setup")
def alarm_setup(
    shipment: Annotated[str, Path(min_length=1, max_length=120)], session: SessionDep, _: ViewerKey
) -> dict[str, Any]:
    """What governs the shipment's alarms: its profile (from the escrow), the ignore period, every rule
    (boundary, allowed duration, single or cumulative, legs, whether it clears by itself) and its legs,
    with the current one (``origin`` before any leg event)."""
    from dataclasses import asdict

    from models.coldchain.excursions import load_alarm_rules
    from oracle.alarms.live import shipment_profile
    from oracle.storage.alarm_tables import ShipmentLeg

    legs = session.scalars(
        select(ShipmentLeg)
        .where(ShipmentLeg.shipment_id == shipment)
        .order_by(ShipmentLeg.at_s, ShipmentLeg.id)
    ).all()
    now = int(time.time())
    current = next((leg.leg for leg in reversed(legs) if leg.at_s <= now), "origin")
    profile = shipment_profile(session, shipment)
    rules = load_alarm_rules(profile) if profile else None
    return {
        "shipment_id": shipment,
        "profile": profile,
        "ignore_s": rules.ignore_s if rules else None,
        "rules": [
            asdict(r)
            | {"legs": list(r.legs), "clears_automatically": r.clears_automatically, "describe": r.describe()}
            for r in (rules.rules if rules else ())
        ],
        "leg": current,
        "legs": [{"leg": leg.leg, "at_s": leg.at_s, "recorded_by": leg.recorded_by} for leg in legs],
    }
