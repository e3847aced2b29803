"""What a network node remembers of its rounds: one row per (subject, epoch) it signed, and every
signature it received from a peer, agreeing or not. Both are unique on their natural keys, so a
re-delivered message or a restarted node never creates a second row."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from oracle.storage.tables import Base, utcnow


class NetworkRound(Base):
    """This node's part in attesting one report.

    Lifecycle: ``collecting`` (own signature made, waiting for k matching ones) → ``ready`` (k agree;
    waiting for this node's turn in the transmission schedule) → ``queued`` (this node put it in its
    outbox) → ``landed`` (the router accepted this report, whoever sent it); or ``superseded`` (the
    router accepted another report at this epoch or a later one).
    """

    __tablename__ = "network_rounds"
    __table_args__ = (
        UniqueConstraint("subject", "epoch", name="uq_network_round"),
        Index("ix_network_round_status", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(66))
    epoch: Mapped[int] = mapped_column(BigInteger)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    digest: Mapped[str] = mapped_column(String(66))
    manifest_cid: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="collecting")
    #: Peers that acknowledged this node's signature.
    delivered_to: Mapped[list[Any]] = mapped_column(default=list)
    #: Node ids whose signatures went into the transaction this node queued.
    combined: Mapped[list[Any]] = mapped_column(default=list)
    landed_tx: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ready_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    landed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PeerSignature(Base):
    """A member's signature over its own report for (subject, epoch), as received (or made, for this
    node). One per member and round: a second, different signature from the same member is refused and
    recorded as a reject (equivocation)."""

    __tablename__ = "network_signatures"
    __table_args__ = (UniqueConstraint("subject", "epoch", "node_id", name="uq_network_signature"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(66))
    epoch: Mapped[int] = mapped_column(BigInteger)
    node_id: Mapped[str] = mapped_column(String(32))
    signer: Mapped[str] = mapped_column(String(42))
    digest: Mapped[str] = mapped_column(String(66))
    signature: Mapped[str] = mapped_column(String(132))
    #: The report fields the member signed (so a disagreement can be shown field by field).
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    manifest_cid: Mapped[str] = mapped_column(String(100), default="")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
