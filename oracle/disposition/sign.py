"""The two things callers do with a disposition, shared by the API and the CLI: read the document (content,
its hash, its sign-offs) and sign it (both identification components checked, the sign-off chained and
an audit entry written in the same transaction)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from oracle.api.keys import ApiKey, Role
from oracle.disposition.content import build_disposition, content_sha256, resolve_shipment
from oracle.disposition.signoffs import (
    Signoff,
    SignoffRefused,
    check_credential,
    record_signoff,
    signoffs_for,
)
from oracle.storage.blobs import BlobStore
from oracle.storage.signoff_tables import DispositionSignoff


@dataclass(frozen=True)
class Document:
    """A shipment's disposition as of now: ``content``, its ``sha256`` and every sign-off of it."""

    shipment: str
    content: dict[str, Any]
    sha256: str
    signoffs: list[Signoff]

    def to_json(self) -> dict[str, Any]:
        return {
            "shipment": self.shipment,
            "content_sha256": self.sha256,
            "content": self.content,
            "signoffs": [{**x.to_json(), "current": x.content_sha256 == self.sha256} for x in self.signoffs],
        }


def domain_of(extras: dict[str, Any]) -> tuple[int, str] | None:
    """(chain id, router address) from a context's deployment, to show the report's EIP-712 digest."""
    from oracle.chain.deploy import Deployment

    dep = extras.get("deployment")
    if not isinstance(dep, Deployment):
        return None
    return int(dep.chain_id), dep.address("OracleRouter")


def disposition_document(
    s: Session, blobs: BlobStore, shipment: str, *, domain: tuple[int, str] | None = None
) -> Document:
    """Raises NotFound (unknown shipment, or no rule evaluation yet)."""
    content = build_disposition(s, blobs, shipment, domain=domain)
    name = content["shipment"]["name"]
    return Document(name, content, content_sha256(content), signoffs_for(s, name))


def sign_disposition(
    s: Session,
    blobs: BlobStore,
    *,
    shipment: str,
    key: ApiKey,
    printed_name: str,
    meaning: str,
    signed_sha256: str,
    password: str,
    domain: tuple[int, str] | None = None,
    audit: Callable[[Session, DispositionSignoff | None, SignoffRefused | None], None] | None = None,
) -> Signoff:
    """Sign ``shipment``'s disposition as the holder of ``key`` (component 1) with ``password`` (component 2).

    ``audit(session, row, None)`` is called before the sign-off commits (same transaction);
    ``audit(session, None, refusal)`` for a refused attempt, which is then committed on its own.
    :raises SignoffRefused: 403 (role, credential, name), 409 (stale content). :raises NotFound: shipment.
    """
    name, _ = resolve_shipment(s, shipment)
    try:
        if not key.role.allows(Role.OPERATOR):
            raise SignoffRefused(
                f"this API key has role {key.role.value}; signing needs operator or higher",
                status=403,
                reason="forbidden",
            )
        credential = check_credential(s, key_id=key.id, printed_name=printed_name, password=password)
        current = disposition_document(s, blobs, name, domain=domain).sha256
        return record_signoff(
            s,
            shipment=name,
            current_sha256=current,
            signed_sha256=signed_sha256,
            meaning=meaning,
            credential=credential,
            before_commit=(lambda row: audit(s, row, None)) if audit is not None else None,
        )
    except SignoffRefused as refused:
        s.rollback()
        if audit is not None:
            audit(s, None, refused)
            s.commit()
        raise


__all__ = ["Document", "disposition_document", "domain_of", "sign_disposition"]
