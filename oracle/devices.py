"""Telemetry devices: registration, shipment bindings, public keys, rotation, revocation, sealed secrets.

A device registered with a public key (:func:`register_device_key`) signs with its own private key
(ES256 or EdDSA, see :mod:`oracle.device_keys`); the oracle stores only the public key, so neither a node
nor an operator can forge its readings, and an auditor verifies any stored reading with that key.

- **Rotation** (:func:`rotate_device_key`): the new key verifies from now on; the old key stays valid only
  for envelopes whose readings all have seq at most ``old_valid_through_seq``. An old-key envelope with a
  higher seq is refused as ``stale_key``.
- **Revocation** (:func:`revoke_device`) is defined by sequence number, not by receive time (a logger may
  flush a buffer hours later): the highest seq accepted at revocation time is kept as ``revoked_after_seq``
  and any envelope holding a reading past it is refused as ``revoked_key``. Readings at or below it are
  judged as before (a redelivery is a duplicate). A thief of the key can therefore at most fill gaps below
  that seq, never add readings after it.

Legacy devices sign with HMAC-SHA256 (HS256) under a 32-byte secret of their own; they are shown as
weaker everywhere, because the oracle needs the secret in clear to verify and so could forge their
readings. It cannot store a hash; instead each secret is sealed with AES-256-GCM under a key-encryption
key (KEK) that never enters the database:

- ``ORACLE_DEVICE_KEK`` (64 hex chars) or ``ORACLE_DEVICE_KEK_FILE`` (a file with 32 raw bytes or 64 hex
  chars, readable by the service only) in production;
- in ``dev`` only, ``<data_dir>/keys/device-kek`` is generated on first use with mode 0600.

The device id is the GCM associated data, so a ciphertext moved onto another device's row fails to open.
A database dump alone therefore reveals no secret; a dump plus the KEK does, so keep them apart (and
back the KEK up: without it every device must be re-provisioned). ``kek_id`` (a hash of the KEK, not the
KEK) on each row says which key sealed it, so a wrong KEK is reported as such instead of as tampering.

AES-GCM comes from ``pycryptodome`` (already pinned for eth-account's keystores).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES
from sqlalchemy import column, func, select, table
from sqlalchemy.orm import Session, sessionmaker

from oracle.config import Settings
from oracle.device_keys import Alg, DevicePublicKey, auth_kind, load_public_key
from oracle.errors import ConfigError, IntegrityError, NotFound, ValidationError
from oracle.storage import partitions
from oracle.storage.db import transaction
from oracle.storage.tables import Device, DeviceBinding, DeviceKey, TelemetryReading

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
"""Device ids are safe as an MQTT topic level: no ``/``, ``+``, ``#`` or whitespace."""

SECRET_BYTES = 32
KEK_BYTES = 32
_NONCE_BYTES = 12


@dataclass(frozen=True)
class Kek:
    """The key-encryption key. ``repr`` never shows the key."""

    key: bytes = field(repr=False)
    kek_id: str

    @classmethod
    def from_bytes(cls, key: bytes) -> Kek:
        if len(key) != KEK_BYTES:
            raise ConfigError(f"device KEK must be {KEK_BYTES} bytes, got {len(key)}")
        return cls(key=key, kek_id=hashlib.sha256(b"oracle-device-kek\x00" + key).hexdigest()[:16])


@dataclass(frozen=True)
class Binding:
    """A device measures ``shipment_id`` during [valid_from_ms, valid_to_ms) (UNIX ms; None = open)."""

    shipment_id: str
    valid_from_ms: int
    valid_to_ms: int | None

    def covers(self, ts_ms: int) -> bool:
        return self.valid_from_ms <= ts_ms and (self.valid_to_ms is None or ts_ms < self.valid_to_ms)


@dataclass(frozen=True)
class KeyWindow:
    """A registered public key and the last seq it may sign (None: the current key)."""

    key: DevicePublicKey
    valid_through_seq: int | None

    def covers(self, max_seq: int | None) -> bool:
        """May this key sign an envelope whose highest seq is ``max_seq`` (None: unknown, so no bound)?"""
        if self.valid_through_seq is None:
            return True
        return max_seq is not None and max_seq <= self.valid_through_seq


@dataclass(frozen=True)
class DeviceCredentials:
    """What the ingest path needs to judge a device's readings.

    ``secret`` is the clear HMAC key of a legacy HS256 device (None for a device with its own key pair);
    ``keys`` are a key device's public keys, current one first.
    """

    device_id: str
    secret: bytes | None = field(repr=False)
    active: bool
    bindings: tuple[Binding, ...]
    keys: tuple[KeyWindow, ...] = ()
    revoked_after_seq: int | None = None

    @property
    def alg(self) -> Alg:
        return Alg.HS256 if self.secret is not None else self.keys[0].key.alg

    def shipment_at(self, ts_ms: int) -> str | None:
        """The shipment the device was bound to at ``ts_ms`` (the latest binding wins), else None."""
        for b in reversed(self.bindings):
            if b.covers(ts_ms):
                return b.shipment_id
        return None


@dataclass(frozen=True)
class KeySummary:
    alg: str
    fingerprint: str
    valid_through_seq: int | None
    created_at: dt.datetime


@dataclass(frozen=True)
class DeviceSummary:
    device_id: str
    status: str
    kek_id: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    bindings: tuple[Binding, ...]
    auth: str = "hmac"
    keys: tuple[KeySummary, ...] = ()
    revoked_after_seq: int | None = None

    @property
    def auth_view(self) -> dict[str, str]:
        """``{"alg", "strength"[, "note"]}``: HS256 devices are marked weaker."""
        return auth_kind(Alg.HS256 if self.auth == "hmac" else self.keys[0].alg)


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` or raise ValidationError(reason="bad_device_id")."""
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise ValidationError(
            f"device id {device_id[:80]!r} must be 1-64 characters of A-Z a-z 0-9 . _ : -",
            reason="bad_device_id",
        )
    from oracle.broker_auth import RESERVED_USERS

    if device_id in RESERVED_USERS:
        # The device id is its broker user name: it must never be the ingest workers' or the admin's.
        raise ValidationError(
            f"device id {device_id!r} is reserved for the oracle's own broker user", reason="bad_device_id"
        )
    return device_id


# --- the key-encryption key ------------------------------------------------------------------------------


def dev_kek_path(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "device-kek"


def load_kek(settings: Settings) -> Kek:
    """The KEK from ``ORACLE_DEVICE_KEK``, ``ORACLE_DEVICE_KEK_FILE`` or (dev only) the data dir.

    Raises ConfigError when none is configured in prod, when the file is unreadable, malformed, or
    readable by group/others.
    """
    if settings.device_kek is not None:
        return Kek.from_bytes(
            _parse_key(settings.device_kek.get_secret_value().encode(), "ORACLE_DEVICE_KEK")
        )
    if settings.device_kek_file is not None:
        return _read_kek_file(settings.device_kek_file)
    if settings.env == "prod":
        raise ConfigError(
            "ORACLE_DEVICE_KEK_FILE: prod needs a device key-encryption key kept outside the database"
        )
    path = dev_kek_path(settings)
    if not path.exists():
        _create_key_file(path)
    return _read_kek_file(path)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first; use theirs
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_bytes(KEK_BYTES).hex() + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_kek_file(path: Path) -> Kek:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"ORACLE_DEVICE_KEK_FILE: cannot read {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"ORACLE_DEVICE_KEK_FILE: {path} is accessible by group/others; chmod 600 it")
    return Kek.from_bytes(_parse_key(raw, str(path)))


def _parse_key(raw: bytes, where: str) -> bytes:
    if len(raw) == KEK_BYTES:
        return raw
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"{where}: expected {KEK_BYTES} raw bytes or {2 * KEK_BYTES} hex chars") from None
    if len(key) != KEK_BYTES:
        raise ConfigError(f"{where}: expected {KEK_BYTES} raw bytes or {2 * KEK_BYTES} hex chars")
    return key


def seal_secret(kek: Kek, device_id: str, secret: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM: returns (nonce, ciphertext‖tag) with the device id as associated data."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    cipher = AES.new(kek.key, AES.MODE_GCM, nonce=nonce)
    cipher.update(device_id.encode())
    ct, tag = cipher.encrypt_and_digest(secret)
    return nonce, ct + tag


def open_secret(kek: Kek, *, device_id: str, nonce: bytes, sealed: bytes, kek_id: str) -> bytes:
    """Decrypt a sealed secret. Raises ConfigError for the wrong KEK, IntegrityError when tampered."""
    if kek_id != kek.kek_id:
        raise ConfigError(
            f"device {device_id} was sealed with key-encryption key {kek_id}, but {kek.kek_id} is loaded"
        )
    cipher = AES.new(kek.key, AES.MODE_GCM, nonce=nonce)
    cipher.update(device_id.encode())
    try:
        return cipher.decrypt_and_verify(sealed[:-16], sealed[-16:])
    except ValueError:
        raise IntegrityError(f"device {device_id}: sealed secret fails authentication (tampered)") from None


# --- registry --------------------------------------------------------------------------------------------


def _ms(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # SQLite hands back naive datetimes; we only ever store UTC
    return int(t.timestamp() * 1000)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def register_device(
    sessions: sessionmaker[Session],
    kek: Kek,
    *,
    device_id: str,
    shipment_id: str,
    valid_from: dt.datetime | None = None,
    valid_to: dt.datetime | None = None,
    secret: bytes | None = None,
) -> bytes:
    """Create a device bound to a shipment; returns its new 32-byte secret (shown once, never stored clear).

    ``valid_from`` defaults to now (UTC). ``secret`` provisions a device that already has one (the same
    logger enrolled on every node of a network); by default a new one is drawn. Raises ValidationError for
    a bad id/window/secret or an existing device.
    """
    check_device_id(device_id)
    start, end = _window(valid_from, valid_to)
    _check_shipment(shipment_id)
    if secret is not None and len(secret) != SECRET_BYTES:
        raise ValidationError(
            f"a device secret is {SECRET_BYTES} bytes, not {len(secret)}", reason="bad_secret"
        )
    secret = secrets.token_bytes(SECRET_BYTES) if secret is None else secret
    nonce, sealed = seal_secret(kek, device_id, secret)
    with transaction(sessions) as s:
        if s.get(Device, device_id) is not None:
            raise ValidationError(
                f"device {device_id} already exists; bind it with `devices bind`", reason="exists"
            )
        s.add(Device(device_id=device_id, secret_nonce=nonce, secret_ct=sealed, kek_id=kek.kek_id))
        s.flush()
        s.add(DeviceBinding(device_id=device_id, shipment_id=shipment_id, valid_from=start, valid_to=end))
    return secret


def register_device_key(
    sessions: sessionmaker[Session],
    *,
    device_id: str,
    public_key_pem: bytes | str,
    shipment_id: str | None = None,
    valid_from: dt.datetime | None = None,
    valid_to: dt.datetime | None = None,
) -> DevicePublicKey:
    """Register a device that signs with its own key; only the public key is stored.

    P-256 keys sign ES256, Ed25519 keys EdDSA; other curves, RSA or a private key raise
    ValidationError(reason="bad_public_key"). ``shipment_id`` binds it at once (else use
    :func:`bind_device`). Every node of a network registers the same public key.
    """
    check_device_id(device_id)
    key = load_public_key(public_key_pem)
    window = _window(valid_from, valid_to) if shipment_id is not None else None
    if shipment_id is not None:
        _check_shipment(shipment_id)
    with transaction(sessions) as s:
        if s.get(Device, device_id) is not None:
            raise ValidationError(
                f"device {device_id} already exists; `devices rotate` gives it a new key", reason="exists"
            )
        # No secret: the sealed-secret columns stay empty for a device with its own key.
        s.add(Device(device_id=device_id, secret_nonce=b"", secret_ct=b"", kek_id="", auth="key"))
        s.flush()
        s.add(
            DeviceKey(device_id=device_id, alg=key.alg.value, public_key=key.pem, fingerprint=key.fingerprint)
        )
        if shipment_id is not None and window is not None:
            s.add(
                DeviceBinding(
                    device_id=device_id, shipment_id=shipment_id, valid_from=window[0], valid_to=window[1]
                )
            )
    return key


def rotate_device_key(
    sessions: sessionmaker[Session],
    *,
    device_id: str,
    public_key_pem: bytes | str,
    old_valid_through_seq: int,
) -> DevicePublicKey:
    """Give a key device a new public key; its current key verifies only seq <= ``old_valid_through_seq``.

    Raises NotFound for an unknown device, ValidationError for an HMAC device (register it anew with a
    key), a revoked device, a negative seq, or a key it already had.
    """
    key = load_public_key(public_key_pem)
    if old_valid_through_seq < 0:
        raise ValidationError("--old-valid-through-seq must be 0 or more", reason="bad_seq")
    with transaction(sessions) as s:
        device = s.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} is not registered")
        if device.auth != "key":
            raise ValidationError(
                f"device {device_id} signs with an HMAC secret (HS256); register its key pair as a new "
                "device id with `devices add --public-key`",
                reason="hmac_device",
            )
        if device.status != "active":
            raise ValidationError(f"device {device_id} is {device.status}", reason="revoked_device")
        rows = s.scalars(select(DeviceKey).where(DeviceKey.device_id == device_id)).all()
        if any(r.fingerprint == key.fingerprint for r in rows):
            raise ValidationError(
                f"device {device_id} already had key {key.fingerprint}; rotate to a new key", reason="exists"
            )
        now = dt.datetime.now(dt.UTC)
        for r in rows:
            if r.valid_through_seq is None:
                r.valid_through_seq = old_valid_through_seq
                r.rotated_at = now
        s.add(
            DeviceKey(device_id=device_id, alg=key.alg.value, public_key=key.pem, fingerprint=key.fingerprint)
        )
    return key


def bind_device(
    sessions: sessionmaker[Session],
    *,
    device_id: str,
    shipment_id: str,
    valid_from: dt.datetime | None = None,
    valid_to: dt.datetime | None = None,
) -> None:
    """Bind an existing active device to (another) shipment for a time window."""
    start, end = _window(valid_from, valid_to)
    _check_shipment(shipment_id)
    with transaction(sessions) as s:
        device = s.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} is not registered")
        if device.status != "active":
            raise ValidationError(f"device {device_id} is {device.status}", reason="revoked_device")
        s.add(DeviceBinding(device_id=device_id, shipment_id=shipment_id, valid_from=start, valid_to=end))


def revoke_device(sessions: sessionmaker[Session], device_id: str) -> int:
    """Refuse every reading signed after now: returns the seq readings must not exceed (-1: none at all).

    "After" is by sequence number: the highest seq accepted so far is kept, and any envelope with a reading
    past it is refused (``revoked_key``), whenever it arrives. Revoking twice keeps the first bound.
    """
    with transaction(sessions) as s:
        device = s.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} is not registered")
        if device.status != "revoked":
            # On PostgreSQL the readings are partitioned by month with no device index; their key table
            # (one row per stored reading, primary key (device_id, seq)) answers from its index.
            readings: Any = TelemetryReading.__table__
            if s.get_bind().dialect.name == "postgresql":
                readings = table(partitions.KEYS, column("device_id"), column("seq"))
            last = s.scalar(select(func.max(readings.c.seq)).where(readings.c.device_id == device_id))
            device.status = "revoked"
            device.revoked_at = dt.datetime.now(dt.UTC)
            device.revoked_after_seq = -1 if last is None else int(last)
        return -1 if device.revoked_after_seq is None else int(device.revoked_after_seq)


def list_devices(sessions: sessionmaker[Session]) -> list[DeviceSummary]:
    with transaction(sessions) as s:
        devices = s.scalars(select(Device).order_by(Device.device_id)).all()
        bindings = _bindings_by_device(s, None)
        keys: dict[str, list[KeySummary]] = {}
        for k in _key_rows(s, None):
            keys.setdefault(k.device_id, []).append(
                KeySummary(k.alg, k.fingerprint, k.valid_through_seq, _utc(k.created_at))
            )
        return [
            DeviceSummary(
                device_id=d.device_id,
                status=d.status,
                kek_id=d.kek_id,
                created_at=_utc(d.created_at),
                revoked_at=_utc(d.revoked_at) if d.revoked_at else None,
                bindings=bindings.get(d.device_id, ()),
                auth=d.auth,
                keys=tuple(keys.get(d.device_id, ())),
                revoked_after_seq=d.revoked_after_seq,
            )
            for d in devices
        ]


def _key_rows(s: Session, device_id: str | None) -> list[DeviceKey]:
    """Public keys, current key (valid_through_seq NULL) first, then newest first."""
    q = select(DeviceKey)
    if device_id is not None:
        q = q.where(DeviceKey.device_id == device_id)
    rows = list(s.scalars(q))
    rows.sort(key=lambda r: (r.valid_through_seq is not None, -(r.valid_through_seq or 0), -r.id))
    return rows


def load_credentials(session: Session, kek: Kek, device_id: str) -> DeviceCredentials | None:
    """The device's public keys (or clear HMAC secret) and bindings, or None when it is not registered."""
    device = session.get(Device, device_id)
    if device is None:
        return None
    secret: bytes | None = None
    windows: tuple[KeyWindow, ...] = ()
    if device.auth == "key":
        windows = tuple(
            KeyWindow(load_public_key(r.public_key), r.valid_through_seq)
            for r in _key_rows(session, device_id)
        )
        if not windows:
            raise IntegrityError(f"device {device_id} signs with its own key but has no public key stored")
    else:
        secret = open_secret(
            kek, device_id=device_id, nonce=device.secret_nonce, sealed=device.secret_ct, kek_id=device.kek_id
        )
    return DeviceCredentials(
        device_id=device_id,
        secret=secret,
        active=device.status == "active",
        bindings=_bindings_by_device(session, device_id).get(device_id, ()),
        keys=windows,
        revoked_after_seq=device.revoked_after_seq,
    )


def _bindings_by_device(session: Session, device_id: str | None) -> dict[str, tuple[Binding, ...]]:
    q = select(DeviceBinding).order_by(DeviceBinding.valid_from, DeviceBinding.id)
    if device_id is not None:
        q = q.where(DeviceBinding.device_id == device_id)
    out: dict[str, list[Binding]] = {}
    for b in session.scalars(q):
        out.setdefault(b.device_id, []).append(
            Binding(b.shipment_id, _ms(b.valid_from), _ms(b.valid_to) if b.valid_to else None)
        )
    return {k: tuple(v) for k, v in out.items()}


def _window(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime | None]:
    s = _utc(start) if start is not None else dt.datetime.now(dt.UTC)
    e = _utc(end) if end is not None else None
    if e is not None and e <= s:
        raise ValidationError(
            f"binding ends ({e.isoformat()}) before it starts ({s.isoformat()})", reason="window"
        )
    return s, e


def _check_shipment(shipment_id: str) -> None:
    if not 1 <= len(shipment_id) <= 120 or not shipment_id.isprintable():
        raise ValidationError("shipment id must be 1-120 printable characters", reason="bad_shipment_id")


def device_views(session: Session, device_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Public view of devices (all, or ``device_ids``): how each signs, HS256 marked weaker. No secrets.

    ``{"device_id", "status", "alg", "strength", "note"?, "key_fingerprint"?, "revoked_after_seq"}``.
    """
    q = select(Device).order_by(Device.device_id)
    if device_ids is not None:
        wanted = sorted(set(device_ids))
        if not wanted:
            return {}
        q = q.where(Device.device_id.in_(wanted))
    devices = list(session.scalars(q))
    current: dict[str, DeviceKey] = {}
    if any(d.auth == "key" for d in devices):
        keys = select(DeviceKey).where(
            DeviceKey.device_id.in_([d.device_id for d in devices]), DeviceKey.valid_through_seq.is_(None)
        )
        current = {k.device_id: k for k in session.scalars(keys)}
    out: dict[str, dict[str, Any]] = {}
    for d in devices:
        key = current.get(d.device_id) if d.auth == "key" else None
        view: dict[str, Any] = {"device_id": d.device_id, "status": d.status}
        view |= auth_kind(Alg(key.alg) if key is not None else Alg.HS256)
        if key is not None:
            view["key_fingerprint"] = key.fingerprint
        view["revoked_after_seq"] = d.revoked_after_seq
        out[d.device_id] = view
    return out
