"""Tables of the operators' HTTP API: API keys (stored hashed) and the audit log of every change.

An API key is shown once, when it is created, as ``ok_<prefix>_<secret>``. The database keeps the public
``prefix`` (to find the row) and the SHA-256 of the secret, never the secret itself: a copy of the
database does not let anyone call the API. Revoked keys stay (``revoked_at`` set) so the audit log keeps
naming who did what.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from oracle.storage.tables import Base, utcnow


class ApiKeyRow(Base):
    """One operator credential. ``role`` is ``viewer``, ``operator`` or ``admin``."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    #: Hex SHA-256 of the secret part; compared in constant time.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """One change made through the API: who (key id and name), what (method, path, resource, summary),
    when, and the HTTP status it ended with. Written in the same transaction as the change."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_resource", "resource", "resource_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    key_id: Mapped[int | None] = mapped_column(Integer)
    key_name: Mapped[str] = mapped_column(String(80), default="")
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(300))
    resource: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int] = mapped_column(Integer, default=200)
