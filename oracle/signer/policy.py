"""What the signer agrees to sign: pure rules shared by the HTTP service and the in-memory signer.

Nothing here does I/O or touches a key. Every refusal is a :class:`SigningRefused` carrying a short
``reason`` code and the HTTP status the service answers with:

========================  ======  ==========================================================
reason                    status  meaning
========================  ======  ==========================================================
``unauthorized``          401     missing or wrong bearer token (HTTP service only)
``bad_request``           400     the request body is not the documented JSON shape
``bad_report``            400     a report field is missing or malformed
``unknown_kind``          422     ``kind`` is not a :class:`~oracle.reports.ReportKind`
``value_out_of_range``    422     ``value`` outside :data:`~oracle.reports.VALUE_RANGE`
``wrong_chain_id``        403     the signer is not configured for this chain
``wrong_router``          403     the signer is not configured for this router contract
``rate_limited``          429     the per-subject or global token bucket is empty
``stale_epoch``           409     an equal or higher epoch was already signed for the subject
``epoch_too_far_ahead``   400     the epoch runs ahead of the subject's period clock (check_epoch_bound)
``epoch_conflict``        409     a different report was already signed for this subject and epoch
========================  ======  ==========================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address

from oracle.errors import SignerError, ValidationError
from oracle.reports import Report, ReportKind

STATUS_BY_REASON: dict[str, int] = {
    "unauthorized": 401,
    "bad_request": 400,
    "bad_report": 400,
    "bad_epoch": 400,
    "unknown_kind": 422,
    "value_out_of_range": 422,
    "wrong_chain_id": 403,
    "wrong_router": 403,
    "rate_limited": 429,
    "stale_epoch": 409,
    "epoch_too_far_ahead": 400,
    "epoch_conflict": 409,
}


class SigningRefused(SignerError):
    """The signer refused a report. ``reason`` is a code from the table above; ``status`` its HTTP status."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = STATUS_BY_REASON.get(reason, 400)


@dataclass(frozen=True, slots=True)
class SignRequest:
    """A parsed ``POST /v1/sign`` body."""

    report: Report
    chain_id: int
    router: str  # checksummed address


def parse_router(router: Any) -> str:
    """A router address as checksummed hex; ``SigningRefused(bad_request)`` when it is not an address."""
    if not isinstance(router, str) or not is_hex_address(router):
        raise SigningRefused("router must be a 0x-prefixed 20-byte hex address", reason="bad_request")
    return str(to_checksum_address(router))


def parse_report(data: Any) -> Report:
    """Build a :class:`Report` from its JSON form, telling an unknown kind apart from a malformed report."""
    if not isinstance(data, Mapping):
        raise SigningRefused("report must be a JSON object", reason="bad_request")
    kind = data.get("kind")
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise SigningRefused("report kind must be an integer", reason="bad_report")
    if kind not in {k.value for k in ReportKind}:
        known = ", ".join(f"{k.value}={k.name}" for k in ReportKind)
        raise SigningRefused(f"unknown report kind {kind} (known: {known})", reason="unknown_kind")
    try:
        return Report.from_json(dict(data))
    except ValidationError as e:
        raise SigningRefused(str(e), reason=e.reason) from None


def parse_sign_request(body: Any) -> SignRequest:
    """Validate a ``{"report": ..., "chainId": int, "router": "0x..."}`` body.

    Raises :class:`SigningRefused` (bad_request, bad_report, bad_epoch, unknown_kind).
    """
    if not isinstance(body, Mapping):
        raise SigningRefused("request body must be a JSON object", reason="bad_request")
    chain_id = body.get("chainId")
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise SigningRefused("chainId must be a positive integer", reason="bad_request")
    router = parse_router(body.get("router"))
    return SignRequest(report=parse_report(body.get("report")), chain_id=chain_id, router=router)


@dataclass(frozen=True, slots=True)
class Domain:
    """An EIP-712 domain the signer may sign for: one chain and one router contract."""

    chain_id: int
    router: str

    @classmethod
    def of(cls, chain_id: int, router: str) -> Domain:
        if chain_id <= 0:
            raise ValidationError(f"chain id must be positive, got {chain_id}", reason="bad_domain")
        if not is_hex_address(router):
            raise ValidationError(f"router {router!r} is not a 20-byte hex address", reason="bad_domain")
        return cls(chain_id=chain_id, router=str(to_checksum_address(router)))


@dataclass(frozen=True, slots=True)
class SigningPolicy:
    """Content rules: known kind, value in range, and (when ``domains`` is set) an allowed domain.

    ``domains=None`` accepts any domain; only the in-memory test signer uses that. The service always
    runs with an explicit set, because a signer must never sign for a contract it was not set up for.
    """

    domains: frozenset[Domain] | None = None

    def check(self, report: Report, *, chain_id: int, router: str) -> None:
        """Raise :class:`SigningRefused` unless the report and domain are acceptable."""
        if report.kind not in set(ReportKind):
            raise SigningRefused(f"unknown report kind {report.kind}", reason="unknown_kind")
        try:
            report.check_value_range()
            report.check_epoch_bound(now=int(time.time()))
        except ValidationError as e:
            raise SigningRefused(str(e), reason=e.reason) from None
        if self.domains is None:
            return
        checksummed = parse_router(router)
        if all(d.chain_id != chain_id for d in self.domains):
            allowed = sorted({d.chain_id for d in self.domains})
            raise SigningRefused(
                f"not configured for chain {chain_id} (allowed: {allowed})", reason="wrong_chain_id"
            )
        if Domain(chain_id=chain_id, router=checksummed) not in self.domains:
            raise SigningRefused(
                f"not configured for router {checksummed} on chain {chain_id}", reason="wrong_router"
            )


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One signature the signer gave: the report's subject and epoch, its EIP-712 digest and the signature."""

    subject: bytes
    epoch: int
    digest: bytes
    signature: bytes


def decide_epoch(
    *, same_epoch: EpochRecord | None, latest_epoch: int | None, epoch: int, digest: bytes
) -> bool:
    """Decide whether a report for ``epoch`` may be signed, given what was signed before for its subject.

    Returns ``True`` when ``same_epoch`` holds the identical report (same digest): the caller returns the
    stored signature, so an outbox retry after a crash is idempotent. Returns ``False`` when a fresh
    signature may be made (``epoch`` above every epoch signed so far). Raises ``SigningRefused`` with
    ``epoch_conflict`` (another report for the same epoch) or ``stale_epoch`` (not above the latest).
    """
    if same_epoch is not None:
        if same_epoch.digest == digest:
            return True
        raise SigningRefused(
            f"a different report was already signed for epoch {epoch} of this subject",
            reason="epoch_conflict",
        )
    if latest_epoch is not None and epoch <= latest_epoch:
        raise SigningRefused(
            f"epoch {epoch} is not above the last signed epoch {latest_epoch} for this subject",
            reason="stale_epoch",
        )
    return False


@dataclass(slots=True)
class TokenBucket:
    """A token bucket: ``rate`` tokens per second refill, up to ``burst`` tokens. Times in seconds."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        """Take one token if there is one; refills for the time since the last call first."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.burst


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Signing rate limits in signatures per second, with burst sizes (bucket capacity)."""

    global_rate: float = 50.0
    global_burst: float = 200.0
    subject_rate: float = 1.0
    subject_burst: float = 10.0

    def __post_init__(self) -> None:
        for name in ("global_rate", "global_burst", "subject_rate", "subject_burst"):
            if not getattr(self, name) > 0:
                raise ValidationError(f"rate limit {name} must be positive", reason="bad_rate_limit")
        if self.global_burst < 1 or self.subject_burst < 1:
            raise ValidationError("rate limit bursts must be at least 1", reason="bad_rate_limit")


# Past this many tracked subjects, buckets that have refilled completely are forgotten: a full bucket
# behaves exactly like a new one, so dropping it changes nothing but memory.
_MAX_TRACKED_SUBJECTS = 10_000


@dataclass
class RateLimiter:
    """Per-subject and global token buckets. ``clock`` returns seconds (monotonic)."""

    limits: RateLimits = field(default_factory=RateLimits)
    clock: Callable[[], float] = time.monotonic
    _global: TokenBucket | None = None
    _subjects: dict[bytes, TokenBucket] = field(default_factory=dict)
    # The HTTP service signs from a thread pool; bucket arithmetic must not interleave.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, subject: bytes) -> None:
        """Spend a token from the subject's and the global bucket; else ``SigningRefused(rate_limited)``."""
        with self._lock:
            self._take(subject)

    def _take(self, subject: bytes) -> None:
        now = self.clock()
        lim = self.limits
        if self._global is None:
            self._global = TokenBucket(lim.global_rate, lim.global_burst, lim.global_burst, now)
        bucket = self._subjects.get(subject)
        if bucket is None:
            if len(self._subjects) >= _MAX_TRACKED_SUBJECTS:
                self._forget_full(now)
            bucket = TokenBucket(lim.subject_rate, lim.subject_burst, lim.subject_burst, now)
            self._subjects[subject] = bucket
        if not bucket.take(now):
            raise SigningRefused(
                f"rate limit for this subject exceeded ({lim.subject_rate}/s, burst {lim.subject_burst:g})",
                reason="rate_limited",
            )
        if not self._global.take(now):
            bucket.tokens = min(bucket.burst, bucket.tokens + 1.0)  # refund: this subject did not sign
            raise SigningRefused(
                f"global signing rate limit exceeded ({lim.global_rate}/s, burst {lim.global_burst:g})",
                reason="rate_limited",
            )

    def _forget_full(self, now: float) -> None:
        for s in [s for s, b in self._subjects.items() if b.full(now)]:
            del self._subjects[s]


def domains_of(pairs: Iterable[tuple[int, str]]) -> frozenset[Domain]:
    """The allowed domain set for ``(chain_id, router)`` pairs; raises ``ValidationError(bad_domain)``."""
    return frozenset(Domain.of(c, r) for c, r in pairs)
