"""Tables of the operational excursion alarms (``oracle/alarms``): alarms, their audit trail, the live
evaluator's checkpoints, shipment legs, and the webhooks with their durable delivery queue.

None of this feeds a signed decision: the signed cold-chain verdict stays the rule engine's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from oracle.storage.tables import Base, utcnow


class AlarmRow(Base):
    """One alarm: ``(shipment_id, rule, raised_at_s)`` is its identity, so a replayed evaluation never
    raises it twice. ``state``: ``raised`` → ``acknowledged`` → ``cleared`` (an alarm may also be cleared
    before anyone acknowledged it; ``acknowledged_by`` then stays empty). ``*_at_s`` are reading times
    (UNIX s); ``*_at`` are wall-clock times of the change."""

    __tablename__ = "alarms"
    __table_args__ = (
        UniqueConstraint("shipment_id", "rule", "raised_at_s", name="uq_alarm_identity"),
        Index("ix_alarms_state", "state", "id"),
        Index("ix_alarms_shipment", "shipment_id", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(120))
    profile: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    auto_clear: Mapped[bool] = mapped_column()
    state: Mapped[str] = mapped_column(String(16))
    raised_at_s: Mapped[int] = mapped_column(BigInteger)
    raised_value_c: Mapped[float] = mapped_column(Float)
    raised_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cleared_by: Mapped[str | None] = mapped_column(String(80))
    cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cleared_at_s: Mapped[int | None] = mapped_column(BigInteger)


class AlarmEventRow(Base):
    """Append-only trail: every transition of every alarm with who and when (``system`` for the evaluator)."""

    __tablename__ = "alarm_events"
    __table_args__ = (UniqueConstraint("alarm_id", "action", name="uq_alarm_event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    at_s: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")


class AlarmCheckpoint(Base):
    """The live evaluator's state for one shipment as of reading time ``last_ts_ms`` (JSON from
    :meth:`models.coldchain.excursions.AlarmEvaluator.to_state`)."""

    __tablename__ = "alarm_checkpoints"
    shipment_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    profile: Mapped[str] = mapped_column(String(32))
    last_ts_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ShipmentLeg(Base):
    """A leg change (``origin``, ``in_transit``, ``destination``) of a shipment from ``at_s`` on."""

    __tablename__ = "shipment_legs"
    __table_args__ = (Index("ix_shipment_legs", "shipment_id", "at_s"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(120))
    leg: Mapped[str] = mapped_column(String(16))
    at_s: Mapped[int] = mapped_column(BigInteger)
    recorded_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlarmWebhook(Base):
    """A receiver of alarm transitions. Its HMAC secret lives in the data dir, never in the database."""

    __tablename__ = "alarm_webhooks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One POST owed to one webhook: the exact body bytes (re-sent unchanged on every retry) and its
    idempotency key. ``state``: ``pending`` until a 2xx answer, then ``delivered``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_key", name="uq_webhook_event"),
        Index("ix_webhook_due", "state", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(Integer)
    event_key: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
