"""API keys: roles, creation (the key is returned once), verification and revocation.

A key looks like ``ok_<prefix>_<secret>``: ``prefix`` is 12 lowercase hex characters that find the row,
``secret`` is 32 random bytes in URL-safe base64. Only the SHA-256 of the secret is stored, and it is
compared in constant time. The secret has 256 bits of entropy, so a plain hash (no salt, no stretching)
is enough: there is nothing to guess from a leaked hash.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from oracle.errors import NotFound, ValidationError
from oracle.storage.api_tables import ApiKeyRow
from oracle.storage.tables import utcnow

KEY_PATTERN = re.compile(r"^ok_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9 ._:@-]{1,80}$")


class Role(enum.StrEnum):
    """What a key may do. Each role includes the ones below it."""

    VIEWER = "viewer"  # read everything
    OPERATOR = "operator"  # plus changes: manual attestations, and what later routers add
    ADMIN = "admin"  # plus key and signer management

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class ApiKey:
    """A stored key as the API and the CLI show it: never the secret."""

    id: int
    name: str
    prefix: str
    role: Role
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``secret_key`` is the full key, shown to the user once and never stored."""

    key: ApiKey
    secret_key: str


def parse_role(value: str) -> Role:
    """``viewer``, ``operator`` or ``admin``; :raises ValidationError: (reason ``bad_role``) otherwise."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise ValidationError(
            f"role {value!r} is not one of viewer, operator, admin", reason="bad_role"
        ) from None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _utc(t: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes (written as UTC); PostgreSQL returns aware ones.
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _public(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=Role(row.role),
        created_at=_utc(row.created_at),
        revoked_at=None if row.revoked_at is None else _utc(row.revoked_at),
    )


def create_key(session: Session, *, role: Role, name: str) -> NewKey:
    """Add a key with ``role`` and a human ``name`` (1–80 of ``A-Z a-z 0-9 space . _ : @ -``).

    Flushes but does not commit: the caller commits, together with its audit entry.
    :raises ValidationError: ``bad_name``.
    """
    if not NAME_PATTERN.match(name):
        raise ValidationError(
            f"key name {name!r} must be 1-80 characters of letters, digits, space and . _ : @ -",
            reason="bad_name",
        )
    while True:
        prefix = secrets.token_hex(6)
        if session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.prefix == prefix)) is None:
            break
    secret = secrets.token_urlsafe(32)
    row = ApiKeyRow(name=name, prefix=prefix, secret_sha256=_digest(secret), role=role.value)
    session.add(row)
    session.flush()
    return NewKey(key=_public(row), secret_key=f"ok_{prefix}_{secret}")


def verify_key(session: Session, presented: str) -> ApiKey | None:
    """The active key ``presented`` belongs to, or ``None`` (malformed, unknown, wrong secret, revoked).

    The four failures are not told apart to the caller, so a probe learns nothing about which prefixes exist.
    """
    m = KEY_PATTERN.match(presented)
    if m is None:
        return None
    prefix, secret = m.groups()
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))
    expected = row.secret_sha256 if row is not None else "0" * 64
    matches = hmac.compare_digest(_digest(secret).encode(), expected.encode())
    if row is None or not matches or row.revoked_at is not None:
        return None
    return _public(row)


def list_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first."""
    q = select(ApiKeyRow).order_by(ApiKeyRow.id)
    if not include_revoked:
        q = q.where(ApiKeyRow.revoked_at.is_(None))
    return [_public(r) for r in session.scalars(q)]


def get_key(session: Session, key_id: int) -> ApiKey:
    """:raises NotFound: no key with that id."""
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    return _public(row)


def revoke_key(session: Session, ident: int | str) -> ApiKey:
    """Revoke the key with id or prefix ``ident``; revoking twice keeps the first time. Flushes only.

    :raises NotFound: no such key.
    """
    if isinstance(ident, int):
        row = session.get(ApiKeyRow, ident)
    else:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == ident))
    if row is None:
        raise NotFound(f"no API key {ident}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return _public(row)
