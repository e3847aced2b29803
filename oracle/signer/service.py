"""Signing as one operation: policy, rate limit, epoch memory, then the key. Shared by the HTTP service
and the in-memory :class:`~oracle.signer.client.LocalSigner`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from oracle.reports import Report, report_digest
from oracle.signer.epochs import EpochStore
from oracle.signer.keys import SigningKey
from oracle.signer.policy import RateLimiter, SigningPolicy, SigningRefused, parse_router

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report with one signer's EIP-712 signature.

    ``signer`` is the checksummed address, ``signature`` the 65-byte ``r || s || v`` (v = 27/28) and
    ``digest`` the 32-byte EIP-712 digest it signs (:func:`oracle.reports.report_digest`).
    """

    report: Report
    signer: str
    signature: bytes
    digest: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != 65:
            raise ValueError(f"signature must be 65 bytes, got {len(self.signature)}")
        if len(self.digest) != 32:
            raise ValueError(f"digest must be 32 bytes, got {len(self.digest)}")


class SigningService:
    """Signs reports the policy accepts, at most once per (subject, epoch), within the rate limits.

    Order of checks: content and domain (:class:`SigningPolicy`), rate limit, epoch memory. Every refusal
    raises :class:`SigningRefused` and is logged with its reason, the subject and the epoch.
    """

    def __init__(
        self, key: SigningKey, *, policy: SigningPolicy, store: EpochStore, limiter: RateLimiter
    ) -> None:
        self._key = key
        self.policy = policy
        self.store = store
        self.limiter = limiter

    @property
    def address(self) -> str:
        return self._key.address

    def sign(self, report: Report, *, chain_id: int, router: str) -> SignedReport:
        try:
            self.policy.check(report, chain_id=chain_id, router=router)
            router = parse_router(router)
            self.limiter.take(report.subject)
            digest = report_digest(report, chain_id=chain_id, router=router)
            rec = self.store.sign_once(
                report.subject, report.epoch, digest, lambda: self._key.sign_digest(digest)
            )
        except SigningRefused as e:
            logger.warning(
                "refused to sign reason=%s subject=0x%s epoch=%d chain_id=%d: %s",
                e.reason,
                report.subject.hex(),
                report.epoch,
                chain_id,
                e,
            )
            raise
        logger.info(
            "signed report subject=0x%s epoch=%d kind=%s chain_id=%d router=%s",
            report.subject.hex(),
            report.epoch,
            report.kind.name,
            chain_id,
            router,
        )
        return SignedReport(
            report=report, signer=self._key.address, signature=rec.signature, digest=rec.digest
        )

    def __repr__(self) -> str:
        return f"SigningService(address={self._key.address})"
