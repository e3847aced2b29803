"""Electronic sign-offs of disposition reports (21 CFR Part 11 §11.50, §11.70, §11.200).

``signing_credentials``: the second identification component of a signer. An operator's API key says
*who is calling*; the signing password, re-entered at every signature and stored only as a salted scrypt
hash, says that *this person* means to sign. One active credential per API key, with the signer's printed
name fixed at enrolment, so a key holder cannot sign under another name.

``disposition_signoffs``: the hash-chained sign-off log. Each entry names the disposition content it signs
by its SHA-256, so a signature cannot be moved to another record (§11.70), and carries ``prev_hash`` (the
previous entry's ``entry_hash``; 64 zeros for the first) and ``entry_hash = sha256(canonical(prev_hash,
fields))`` (:mod:`oracle.disposition.signoffs`). ``prev_hash`` is unique: two sign-offs racing for the same
tail cannot both land, so the chain never forks. Rows are never updated or deleted.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from oracle.storage.tables import Base, utcnow


class SigningCredential(Base):
    """A signer's password for e-signatures, bound to one API key. ``scrypt``: n=2**14, r=8, p=1, 32
    bytes over a 16-byte random ``salt``. Revoked credentials stay so old sign-offs keep their signer."""

    __tablename__ = "signing_credentials"
    __table_args__ = (Index("ix_signing_credential_key", "key_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    printed_name: Mapped[str] = mapped_column(String(120))
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    scrypt_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DispositionSignoff(Base):
    """One signature on one shipment's disposition: printed name, meaning, UTC time, the content hash."""

    __tablename__ = "disposition_signoffs"
    __table_args__ = (Index("ix_disposition_signoff_shipment", "shipment"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    shipment: Mapped[str] = mapped_column(String(120))
    content_sha256: Mapped[str] = mapped_column(String(64))
    printed_name: Mapped[str] = mapped_column(String(120))
    meaning: Mapped[str] = mapped_column(String(20))
    signed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[int] = mapped_column(Integer)
    credential_id: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
