"""The relational schema. Alembic migrations in ``oracle/storage/migrations`` create it; never ``create_all``.

Idempotency lives here as unique constraints, so a retry or a replayed message can never create a second
row: blobs by CID, observations by (kind, cid), reports by (subject, epoch), outbox rows by their key,
chain events by (tx_hash, log_index), payouts by (pool, policy).

Big on-chain integers (int256 values, wei amounts) are stored as decimal strings: neither SQLite nor a
BIGINT holds 256 bits, and strings round-trip exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Blob(Base):
    """Index of the content store: every input the service used, by CIDv1."""

    __tablename__ = "blobs"
    cid: Mapped[str] = mapped_column(String(100), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Observation(Base):
    """A validated input: a raster, a weather series or a telemetry batch, referencing its blob."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("kind", "cid", name="uq_observation_kind_cid"),
        Index("ix_observation_subject_time", "subject", "observed_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    variable: Mapped[str] = mapped_column(String(60), default="")
    subject: Mapped[str] = mapped_column(String(120), default="")
    cid: Mapped[str] = mapped_column(ForeignKey("blobs.cid"))
    source: Mapped[str] = mapped_column(String(300), default="")
    collector: Mapped[str] = mapped_column(String(120), default="")
    signature_status: Mapped[str] = mapped_column(String(20), default="none")
    observed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Reject(Base):
    """An input refused with its reason: nothing bad is silently dropped."""

    __tablename__ = "rejects"
    __table_args__ = (Index("ix_reject_source_reason", "source", "reason"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(60))
    message: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(120), default="")
    cid: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReportRow(Base):
    """A report the oracle decided to attest, with everything needed to recompute it."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("subject", "epoch", name="uq_report_subject_epoch"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(66))
    subject_name: Mapped[str] = mapped_column(String(120), default="")
    kind: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(String(80))
    epoch: Mapped[int] = mapped_column(BigInteger)
    observed_at: Mapped[int] = mapped_column(BigInteger)
    inputs_root: Mapped[str] = mapped_column(String(66))
    model_id: Mapped[str] = mapped_column(String(66))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxRow(Base):
    """A transaction the oracle owes the chain. Stored before anything is signed or sent.

    Lifecycle: ``pending`` → ``signed`` (raw bytes stored, nonce fixed) → ``sent`` → ``confirmed``;
    or ``reverted`` (decoded reason recorded, not retried blindly) or ``failed`` (could not be built).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Optimistic lock: two posters racing on one row cannot both sign it (the loser's UPDATE matches
    #: no row and rolls back), so a report never gets two different transactions.
    version: Mapped[int] = mapped_column(Integer, default=1)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    purpose: Mapped[str] = mapped_column(String(40))
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    to_address: Mapped[str] = mapped_column(String(42))
    calldata: Mapped[bytes] = mapped_column(LargeBinary)
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    sender: Mapped[str | None] = mapped_column(String(42))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    max_fee: Mapped[str | None] = mapped_column(String(80))
    priority_fee: Mapped[str | None] = mapped_column(String(80))
    raw_tx: Mapped[bytes | None] = mapped_column(LargeBinary)
    tx_hash: Mapped[str | None] = mapped_column(String(66), index=True)
    previous_hashes: Mapped[list[Any]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    replacements: Mapped[int] = mapped_column(Integer, default=0)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    revert_reason: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads it at class creation


class NonceRow(Base):
    """The next nonce per sender, advanced in the same transaction that assigns it to an outbox row."""

    __tablename__ = "nonces"
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger)


class ChainCursor(Base):
    """How far the listener has processed a chain, per named stream."""

    __tablename__ = "chain_cursors"
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66), default="")


class ChainEvent(Base):
    """Every contract event the listener applied, so a replay is a no-op."""

    __tablename__ = "chain_events"
    __table_args__ = (UniqueConstraint("tx_hash", "log_index", name="uq_chain_event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    block_hash: Mapped[str] = mapped_column(String(66))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    contract: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(60), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Subscription(Base):
    __tablename__ = "subscriptions"
    subject: Mapped[str] = mapped_column(String(66), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(42), primary_key=True)
    active: Mapped[bool] = mapped_column(default=True)
    since_block: Mapped[int] = mapped_column(BigInteger, default=0)


class Policy(Base):
    __tablename__ = "policies"
    pool: Mapped[str] = mapped_column(String(42), primary_key=True)
    policy_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    insured: Mapped[str] = mapped_column(String(42))
    region_subject: Mapped[str] = mapped_column(String(66), index=True)
    coverage_start: Mapped[int] = mapped_column(BigInteger)
    coverage_end: Mapped[int] = mapped_column(BigInteger)
    trigger: Mapped[str] = mapped_column(String(80))
    exit: Mapped[str] = mapped_column(String(80))
    limit: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default="active")


class Payout(Base):
    """One ``PayoutSent`` event: a policy is paid once per month at most, but may be paid in several months,
    topped up by a higher revision, or paid what it was owed (``claimOwed``, epoch 0)."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("tx_hash", "log_index", name="uq_payout_event"),
        Index("ix_payouts_policy", "pool", "policy_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool: Mapped[str] = mapped_column(String(42))
    policy_id: Mapped[int] = mapped_column(BigInteger)
    insured: Mapped[str] = mapped_column(String(42))
    amount: Mapped[str] = mapped_column(String(80))
    epoch: Mapped[int] = mapped_column(BigInteger, server_default="0")
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    block_number: Mapped[int] = mapped_column(BigInteger)


class Shipment(Base):
    __tablename__ = "shipments"
    subject: Mapped[str] = mapped_column(String(66), primary_key=True)
    escrow: Mapped[str] = mapped_column(String(42))
    buyer: Mapped[str] = mapped_column(String(42))
    seller: Mapped[str] = mapped_column(String(42))
    amount: Mapped[str] = mapped_column(String(80))
    profile: Mapped[str] = mapped_column(String(66))
    deadline: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="open")
    settled_tx: Mapped[str | None] = mapped_column(String(66))


# ---------------------------------------------------------------------------------------------------------
# Telemetry ingest (devices, shipment bindings, readings). Owned by ingest/telemetry; created by 0002.
# ---------------------------------------------------------------------------------------------------------


class Device(Base):
    """An IoT logger allowed to publish telemetry.

    ``auth``: ``key`` for a device that signs with its own private key (ES256 or EdDSA; its public keys
    are in ``device_keys`` and the secret columns are empty), ``hmac`` for a legacy HS256 device whose
    ``secret_ct`` is AES-256-GCM ciphertext+tag of the 32-byte secret under the key-encryption key that
    lives outside the database (see :mod:`oracle.devices`); the device id is the associated data, so a
    ciphertext copied onto another device's row does not decrypt. ``kek_id`` names the key that sealed it.
    ``revoked_after_seq``: on revocation, the highest seq accepted so far (-1 if none); readings past it
    are refused.
    """

    __tablename__ = "devices"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    auth: Mapped[str] = mapped_column(String(10), default="hmac", server_default="hmac")
    revoked_after_seq: Mapped[int | None] = mapped_column(BigInteger)


class DeviceKey(Base):
    """A device's public key (SubjectPublicKeyInfo PEM). The private key never reaches the oracle.

    ``valid_through_seq``: NULL for the current key; after a rotation the old key verifies only readings
    with seq at most this. ``fingerprint``: first 32 hex chars of SHA-256 over the DER public key.
    """

    __tablename__ = "device_keys"
    __table_args__ = (UniqueConstraint("device_id", "fingerprint", name="uq_device_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    alg: Mapped[str] = mapped_column(String(10))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(32))
    valid_through_seq: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DeviceBinding(Base):
    """A device measures one shipment from ``valid_from`` until ``valid_to`` (open-ended when NULL)."""

    __tablename__ = "device_bindings"
    __table_args__ = (Index("ix_device_binding_device", "device_id", "valid_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    shipment_id: Mapped[str] = mapped_column(String(120), index=True)
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TelemetryReading(Base):
    """One accepted logger reading. (device_id, seq) is the idempotency key: redelivery adds no row.

    ``ts_ms``: the logger's timestamp, UNIX milliseconds. ``digest``: SHA-256 (hex, 32 chars kept) of the
    reading's canonical JSON, so a redelivered identical reading is told apart from a different reading
    re-using a sequence number. ``batch_cid``: content-store blob holding the signed envelope bytes.

    On PostgreSQL (migration 0007) the table is partitioned by month on ``ts_ms``, its primary key is
    (id, ts_ms), and the idempotency key lives in ``telemetry_reading_keys``: a writer claims the keys
    first (:data:`oracle.storage.partitions.CLAIM_KEYS`, migration 0012) and inserts only the readings
    whose key it got. The unique constraint below exists on SQLite only (see
    :func:`oracle.storage.partitions.schema_filter`).
    """

    __tablename__ = "telemetry_readings"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_telemetry_device_seq"),
        Index("ix_telemetry_shipment_ts", "shipment_id", "ts_ms"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    shipment_id: Mapped[str] = mapped_column(String(120))
    temp_c: Mapped[float] = mapped_column()
    humidity_pct: Mapped[float | None] = mapped_column()
    door_open: Mapped[bool | None] = mapped_column()
    battery_pct: Mapped[float | None] = mapped_column()
    lat: Mapped[float | None] = mapped_column()
    lon: Mapped[float | None] = mapped_column()
    digest: Mapped[str] = mapped_column(String(32))
    batch_cid: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(10))
    received_ms: Mapped[int] = mapped_column(BigInteger)
