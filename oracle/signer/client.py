"""How the rest of the oracle gets reports signed.

:class:`Signer` is the boundary: :class:`HttpSigner` talks to the signer process (``oracle signer serve``),
:class:`LocalSigner` signs in memory for unit tests with the same policy. :func:`collect_signatures`
gathers a k-of-n set in the ascending signer order the router contract requires.

Errors: :class:`~oracle.signer.policy.SigningRefused` (the signer said no; ``reason`` as in
:mod:`oracle.signer.policy`) and :class:`SignerUnavailable` (``unreachable``, ``timeout``,
``bad_response``) are both :class:`~oracle.errors.SignerError` and carry ``reason``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import is_hex_address, to_checksum_address

from oracle.errors import ConfigError, SignerError
from oracle.reports import Report, report_digest, typed_data
from oracle.signer.epochs import MemoryEpochStore
from oracle.signer.keys import SigningKey
from oracle.signer.policy import Domain, RateLimiter, RateLimits, SigningPolicy, SigningRefused
from oracle.signer.service import SignedReport, SigningService

__all__ = [
    "HttpSigner",
    "LocalSigner",
    "SignedReport",
    "Signer",
    "SignerUnavailable",
    "SigningRefused",
    "collect_signatures",
    "recover_signer",
]

logger = logging.getLogger(__name__)


class SignerUnavailable(SignerError):
    """The signer could not be reached or answered something unusable."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Signer(Protocol):
    """Something that signs reports with one oracle key."""

    @property
    def address(self) -> str:
        """The checksummed address of the signing key."""
        ...

    def sign(self, report: Report, *, chain_id: int, router: str) -> SignedReport:
        """Sign ``report`` for the router at ``router`` on ``chain_id``; raises ``SignerError``."""
        ...


def recover_signer(report: Report, signature: bytes, *, chain_id: int, router: str) -> str:
    """The checksummed address that made ``signature`` over the report's EIP-712 digest."""
    msg = encode_typed_data(full_message=typed_data(report, chain_id=chain_id, router=router))
    return str(to_checksum_address(Account.recover_message(msg, signature=signature)))


class LocalSigner:
    """In-memory signer for tests: same policy and epoch rules as the service, memory forgotten on exit.

    ``private_key`` is 32 raw bytes or hex. ``domains`` restricts the allowed (chain id, router) pairs
    (``None``: any). Rate limits are off unless ``limits`` is given.
    """

    def __init__(
        self,
        private_key: bytes | str,
        *,
        domains: Sequence[tuple[int, str]] | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        key = SigningKey(private_key) if isinstance(private_key, bytes) else SigningKey.from_hex(private_key)
        allowed = None if domains is None else frozenset(Domain.of(c, r) for c, r in domains)
        unlimited = RateLimits(global_rate=1e12, global_burst=1e12, subject_rate=1e12, subject_burst=1e12)
        self._service = SigningService(
            key,
            policy=SigningPolicy(domains=allowed),
            store=MemoryEpochStore(),
            limiter=RateLimiter(limits or unlimited),
        )

    @property
    def address(self) -> str:
        return self._service.address

    def sign(self, report: Report, *, chain_id: int, router: str) -> SignedReport:
        return self._service.sign(report, chain_id=chain_id, router=router)

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address})"


class HttpSigner:
    """Client of the signer service at ``url`` (e.g. ``http://127.0.0.1:8711``) with bearer ``token``.

    Every call has a ``timeout`` in seconds. Each answer is checked: the digest must equal the one
    computed here and the signature must recover to the claimed signer (and to :attr:`address` once
    known), so a confused or hostile signer cannot hand back something else.
    """

    def __init__(self, url: str, token: str, timeout: float = 5.0) -> None:
        if not token or token != token.strip() or not token.isprintable():
            raise ConfigError("the signer bearer token is empty or contains whitespace")
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,  # a loopback signer must never be reached through a proxy from the environment
        )
        self._address: str | None = None

    def __repr__(self) -> str:
        return f"HttpSigner(url={self.url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSigner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            resp = self._client.request(method, path, json=json)
        except httpx.TimeoutException:
            raise SignerUnavailable(f"signer at {self.url} timed out", reason="timeout") from None
        except httpx.HTTPError as e:
            raise SignerUnavailable(
                f"signer at {self.url} unreachable: {type(e).__name__}", reason="unreachable"
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200:
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict) and isinstance(err.get("reason"), str):
                raise SigningRefused(str(err.get("message", "")), reason=err["reason"])
            raise SignerUnavailable(
                f"signer at {self.url} answered HTTP {resp.status_code}", reason="bad_response"
            )
        if not isinstance(body, dict):
            raise SignerUnavailable(
                f"signer at {self.url} answered something that is not JSON", reason="bad_response"
            )
        return body

    def health(self) -> dict[str, Any]:
        """The ``GET /v1/health`` answer (status, address, allowed domains)."""
        body: dict[str, Any] = self._request("GET", "/v1/health")
        return body

    @property
    def address(self) -> str:
        if self._address is None:
            addr = self.health().get("address")
            if not isinstance(addr, str) or not is_hex_address(addr):
                raise SignerUnavailable(f"signer at {self.url} reported no address", reason="bad_response")
            self._address = str(to_checksum_address(addr))
        return self._address

    def sign(self, report: Report, *, chain_id: int, router: str) -> SignedReport:
        body = self._request(
            "POST", "/v1/sign", json={"report": report.to_json(), "chainId": chain_id, "router": router}
        )
        try:
            signature = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
            digest = bytes.fromhex(str(body["digest"]).removeprefix("0x"))
            claimed = str(to_checksum_address(str(body["signer"])))
        except (KeyError, ValueError, TypeError):
            raise SignerUnavailable(
                f"signer at {self.url} answered a malformed signature", reason="bad_response"
            ) from None
        expected_digest = report_digest(report, chain_id=chain_id, router=router)
        if digest != expected_digest or len(signature) != 65:
            raise SignerUnavailable(f"signer at {self.url} signed a different digest", reason="bad_response")
        try:
            recovered = recover_signer(report, signature, chain_id=chain_id, router=router)
        except (ValueError, TypeError):
            raise SignerUnavailable(
                f"signer at {self.url} answered an invalid signature", reason="bad_response"
            ) from None
        if recovered != claimed or (self._address is not None and recovered != self._address):
            raise SignerUnavailable(
                f"signer at {self.url} answered a signature by {recovered}", reason="bad_response"
            )
        self._address = recovered
        return SignedReport(report=report, signer=recovered, signature=signature, digest=digest)


def collect_signatures(
    signers: Sequence[Signer], report: Report, *, chain_id: int, router: str, threshold: int
) -> list[SignedReport]:
    """Ask ``signers`` in order until ``threshold`` distinct signers have signed ``report``.

    Returns exactly ``threshold`` signatures sorted by signer address ascending (as uint160), the order
    the router contract requires. A signer that fails or repeats an address already collected is
    skipped. Raises ``SignerUnavailable(reason="threshold_not_met")`` listing each failure's reason
    when the threshold cannot be met, and ``ValueError`` when ``threshold`` is below 1.
    """
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")
    collected: dict[str, SignedReport] = {}
    failures: list[str] = []
    for i, signer in enumerate(signers):
        if len(collected) >= threshold:
            break
        try:
            signed = signer.sign(report, chain_id=chain_id, router=router)
        except SignerError as e:
            reason = getattr(e, "reason", "error")
            logger.warning("signer %d (%r) refused or failed reason=%s: %s", i, signer, reason, e)
            failures.append(f"signer {i}: {reason}")
            continue
        if signed.signer in collected:
            failures.append(f"signer {i}: duplicate address {signed.signer}")
            continue
        collected[signed.signer] = signed
    if len(collected) < threshold:
        detail = "; ".join(failures) or "no signers given"
        raise SignerUnavailable(
            f"only {len(collected)} of {threshold} required signatures for epoch {report.epoch}: {detail}",
            reason="threshold_not_met",
        )
    return sorted(collected.values(), key=lambda s: int(s.signer, 16))
