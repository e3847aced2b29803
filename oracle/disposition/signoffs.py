"""Electronic sign-offs of disposition reports, in the manner of 21 CFR Part 11.

- §11.50: each sign-off records the signer's printed name, the meaning (one of :data:`MEANINGS`) and the
  UTC time, set here, never by the caller; the reports show all three.
- §11.70: each names the SHA-256 of the disposition content it signs; signing a hash that is not the
  record's current one is refused (:class:`StaleContent`), so a signature cannot be carried to another or
  a changed record.
- §11.200(a): two distinct identification components: the operator's API key (who is calling) and the
  signer's signing password, re-entered at every signature (:func:`enroll_signer` stores it as a salted
  scrypt hash, bound to that key and to the printed name fixed at enrolment).
- The log is hash-chained: ``entry_hash = sha256(canonical_json({"prev_hash", ...fields}))``, each entry's
  ``prev_hash`` the entry before's ``entry_hash``; :func:`verify_chain` walks it and names the first broken
  link, so an edited, deleted or re-ordered row shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oracle.decisions.trace import canonical_json
from oracle.errors import NotFound, OracleError, ValidationError
from oracle.storage.api_tables import ApiKeyRow
from oracle.storage.signoff_tables import DispositionSignoff, SigningCredential

#: What a signature means (§11.50(a)(3)); a closed list.
MEANINGS: tuple[str, ...] = ("review", "approval", "responsibility", "authorship")
GENESIS = "0" * 64
NAME_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]{2,120}$")
SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
MIN_PASSWORD = 12
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class SignoffRefused(OracleError):
    """A sign-off was refused; ``status`` is the HTTP status, ``reason`` the short code."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class StaleContent(SignoffRefused):
    """The content hash signed is not the record's current one (409)."""


@dataclass(frozen=True)
class Signoff:
    """One sign-off as the reports show it (§11.50 manifestation)."""

    seq: int
    shipment: str
    printed_name: str
    meaning: str
    signed_at: dt.datetime
    content_sha256: str
    entry_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "shipment": self.shipment,
            "printed_name": self.printed_name,
            "meaning": self.meaning,
            "signed_at": utc_text(self.signed_at),
            "content_sha256": self.content_sha256,
            "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True)
class ChainCheck:
    """The result of :func:`verify_chain`: ``ok``, how many entries were checked, and the first broken
    link (its ``seq`` and why) when not ok."""

    ok: bool
    entries: int
    broken_seq: int | None = None
    problem: str = ""


def utc_text(t: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (stored times are whole seconds, UTC)."""
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)


def enroll_signer(s: Session, *, key_id: int, printed_name: str, password: str) -> int:
    """Give API key ``key_id`` a signing credential under ``printed_name``; an earlier active one is
    revoked. Flushes, does not commit. Returns the credential id.

    :raises NotFound: no such key (or revoked). :raises ValidationError: ``bad_name``, ``weak_password``
    (shorter than :data:`MIN_PASSWORD`).
    """
    key = s.get(ApiKeyRow, key_id)
    if key is None or key.revoked_at is not None:
        raise NotFound(f"no active API key with id {key_id}")
    name = printed_name.strip()
    if not NAME_PATTERN.match(name):
        raise ValidationError("the printed name must be 2-120 printable characters", reason="bad_name")
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"the signing password must be at least {MIN_PASSWORD} characters", reason="weak_password"
        )
    now = dt.datetime.now(dt.UTC)
    for old in s.scalars(
        select(SigningCredential).where(
            SigningCredential.key_id == key_id, SigningCredential.revoked_at.is_(None)
        )
    ):
        old.revoked_at = now
    salt = secrets.token_bytes(16)
    row = SigningCredential(key_id=key_id, printed_name=name, salt=salt, scrypt_hash=_scrypt(password, salt))
    s.add(row)
    s.flush()
    return row.id


def check_credential(s: Session, *, key_id: int, printed_name: str, password: str) -> SigningCredential:
    """The active credential of ``key_id`` when ``password`` and ``printed_name`` match it.

    :raises SignoffRefused: 403 ``no_signing_credential`` / ``bad_signing_credential`` /
        ``printed_name_mismatch``.
    """
    cred = s.scalars(
        select(SigningCredential)
        .where(SigningCredential.key_id == key_id, SigningCredential.revoked_at.is_(None))
        .order_by(SigningCredential.id.desc())
    ).first()
    if cred is None:
        raise SignoffRefused(
            "this API key has no signing credential; an admin enrols one with "
            "'oracle shipments enroll-signer --key-id ID --name \"Printed Name\"'",
            status=403,
            reason="no_signing_credential",
        )
    if not hmac.compare_digest(_scrypt(password, cred.salt), cred.scrypt_hash):
        raise SignoffRefused("the signing password is wrong", status=403, reason="bad_signing_credential")
    if " ".join(printed_name.split()) != cred.printed_name:
        raise SignoffRefused(
            f"the printed name must be the one enrolled with this credential ({cred.printed_name!r})",
            status=403,
            reason="printed_name_mismatch",
        )
    return cred


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of ``prev_hash`` and the entry's fields."""
    return hashlib.sha256(canonical_json({"prev_hash": prev_hash, **fields})).hexdigest()


def _fields(row: DispositionSignoff) -> dict[str, Any]:
    return {
        "seq": int(row.seq),
        "shipment": row.shipment,
        "content_sha256": row.content_sha256,
        "printed_name": row.printed_name,
        "meaning": row.meaning,
        "signed_at": utc_text(row.signed_at),
        "key_id": int(row.key_id),
        "credential_id": int(row.credential_id),
    }


def record_signoff(
    s: Session,
    *,
    shipment: str,
    current_sha256: str,
    signed_sha256: str,
    meaning: str,
    credential: SigningCredential,
    now: dt.datetime | None = None,
    before_commit: Callable[[DispositionSignoff], None] | None = None,
) -> Signoff:
    """Append a sign-off of ``shipment`` to the log and commit.

    ``current_sha256`` is the record's content hash now, ``signed_sha256`` the one the signer reviewed;
    ``before_commit(row)`` adds what must land with the entry (the audit log's line).
    :raises StaleContent: they differ (409 ``stale_content``). :raises ValidationError: unknown meaning.
    """
    if meaning not in MEANINGS:
        raise ValidationError(
            f"meaning {meaning!r} is not one of {', '.join(MEANINGS)}", reason="bad_meaning"
        )
    if not SHA256_PATTERN.match(signed_sha256):
        raise ValidationError("content_sha256 must be 64 hex characters", reason="bad_content_sha256")
    if not hmac.compare_digest(current_sha256, signed_sha256.lower()):
        raise StaleContent(
            f"the disposition of {shipment} changed since it was reviewed: its content SHA-256 is now "
            f"{current_sha256}, not {signed_sha256}; review the current report and sign again",
            status=409,
            reason="stale_content",
        )
    signed_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    for _ in range(5):
        tail = s.scalars(select(DispositionSignoff).order_by(DispositionSignoff.seq.desc())).first()
        row = DispositionSignoff(
            seq=(tail.seq + 1) if tail is not None else 1,
            shipment=shipment,
            content_sha256=current_sha256,
            printed_name=credential.printed_name,
            meaning=meaning,
            signed_at=signed_at,
            key_id=credential.key_id,
            credential_id=credential.id,
            prev_hash=tail.entry_hash if tail is not None else GENESIS,
        )
        row.entry_hash = entry_hash(row.prev_hash, _fields(row))
        s.add(row)
        if before_commit is not None:
            before_commit(row)
        try:
            s.commit()
        except sa_exc.IntegrityError:
            # Another sign-off took this tail first (prev_hash and seq are unique): chain after it.
            s.rollback()
            continue
        return _public(row)
    raise SignoffRefused("the sign-off log is busy; retry", status=503, reason="signoff_busy")


def _public(row: DispositionSignoff) -> Signoff:
    return Signoff(
        seq=int(row.seq),
        shipment=row.shipment,
        printed_name=row.printed_name,
        meaning=row.meaning,
        signed_at=row.signed_at if row.signed_at.tzinfo else row.signed_at.replace(tzinfo=dt.UTC),
        content_sha256=row.content_sha256,
        entry_hash=row.entry_hash,
    )


def signoffs_for(s: Session, shipment: str) -> list[Signoff]:
    """Every sign-off of ``shipment``, oldest first (including ones of earlier versions of the record)."""
    rows = s.scalars(
        select(DispositionSignoff)
        .where(DispositionSignoff.shipment == shipment)
        .order_by(DispositionSignoff.seq)
    )
    return [_public(r) for r in rows]


def verify_chain(s: Session) -> ChainCheck:
    """Walk the whole sign-off log in ``seq`` order: each entry's ``prev_hash`` must be the previous
    entry's ``entry_hash`` (64 zeros first), its ``entry_hash`` must recompute, and ``seq`` must run
    1, 2, 3 … without a gap. Stops at the first broken link."""
    prev = GENESIS
    n = 0
    for n, row in enumerate(s.scalars(select(DispositionSignoff).order_by(DispositionSignoff.seq)), start=1):
        if row.seq != n:
            return ChainCheck(False, n, int(row.seq), f"entry {n} is missing (next is seq {row.seq})")
        if row.prev_hash != prev:
            return ChainCheck(False, n, n, "prev_hash does not match the previous entry's hash")
        if entry_hash(row.prev_hash, _fields(row)) != row.entry_hash:
            return ChainCheck(False, n, n, "entry_hash does not match the entry's fields")
        prev = row.entry_hash
    return ChainCheck(True, n)


def chain_length(s: Session) -> int:
    return int(s.scalar(select(func.count(DispositionSignoff.id))) or 0)


__all__ = [
    "MEANINGS",
    "ChainCheck",
    "Signoff",
    "SignoffRefused",
    "StaleContent",
    "check_credential",
    "enroll_signer",
    "entry_hash",
    "record_signoff",
    "signoffs_for",
    "verify_chain",
]
