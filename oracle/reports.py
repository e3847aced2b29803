"""The attested report: what the oracle signs and the router contract verifies.

One definition serves the signer, the outbox, the contracts' tests and ``oracle verify``. The EIP-712
type string here must match ``REPORT_TYPEHASH`` in ``contracts/src/OracleRouter.sol``; a test checks it.

Values are fixed point. ``kind`` decides the scale:

* ``DROUGHT_SEVERITY``: expected drought severity on the scale 0 (no drought) … 5 (D4, exceptional),
  where 1…5 are the US Drought Monitor classes D0…D4, times ``VALUE_SCALE`` (10**6). So D2 is 3_000_000.
* ``COLDCHAIN_VERDICT``: an enum, not scaled: 0 = no decision yet, 1 = BREACH (void and refund the
  buyer), 2 = DELIVERED without breach (release payment to the seller).

``epoch`` is strictly increasing per subject; ``observedAt`` is the end of the observation window in
unix seconds (for drought: the end of the period; for cold chain: the last reading's time).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NewType

from eth_utils.crypto import keccak

from oracle.errors import ValidationError

Bytes32 = NewType("Bytes32", bytes)
FixedPoint = NewType("FixedPoint", int)

VALUE_DECIMALS = 6
VALUE_SCALE = 10**VALUE_DECIMALS

DOMAIN_NAME = "ParametricOracle"
DOMAIN_VERSION = "1"

REPORT_TYPE = (
    "Report(bytes32 subject,uint8 kind,int256 value,uint64 epoch,uint64 observedAt,"
    "bytes32 inputsRoot,bytes32 modelId)"
)
REPORT_FIELDS: list[dict[str, str]] = [
    {"name": "subject", "type": "bytes32"},
    {"name": "kind", "type": "uint8"},
    {"name": "value", "type": "int256"},
    {"name": "epoch", "type": "uint64"},
    {"name": "observedAt", "type": "uint64"},
    {"name": "inputsRoot", "type": "bytes32"},
    {"name": "modelId", "type": "bytes32"},
]
DOMAIN_FIELDS: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

UINT64_MAX = 2**64 - 1

#: Revisions per period (drought) or per shipment (cold chain): epochs are built from them.
MAX_REVISIONS = 1000


def month_index_of(unix_s: int) -> int:
    """Months since year 0 of the UTC month containing ``unix_s`` (the drought epoch's period clock)."""
    import datetime as dt

    t = dt.datetime.fromtimestamp(unix_s, tz=dt.UTC)
    return t.year * 12 + t.month - 1


def max_epoch(kind: int, *, now: int) -> int:
    """The highest epoch an honest report of ``kind`` can carry at ``now``: drought, the current month's
    index × 1000 + 999 (a period is reported once it has ended, so this leaves a month's margin for
    clock skew); cold chain, :data:`MAX_REVISIONS`."""
    if kind == ReportKind.DROUGHT_SEVERITY:
        return month_index_of(now) * MAX_REVISIONS + MAX_REVISIONS - 1
    return MAX_REVISIONS


class ReportKind(enum.IntEnum):
    DROUGHT_SEVERITY = 1
    COLDCHAIN_VERDICT = 2


class Verdict(enum.IntEnum):
    NO_DECISION = 0
    BREACH = 1
    DELIVERED = 2


#: Inclusive value range the signer accepts for each kind.
VALUE_RANGE: dict[ReportKind, tuple[int, int]] = {
    ReportKind.DROUGHT_SEVERITY: (0, 5 * VALUE_SCALE),
    ReportKind.COLDCHAIN_VERDICT: (int(Verdict.NO_DECISION), int(Verdict.DELIVERED)),
}


def to_fixed(x: float | Decimal | str) -> FixedPoint:
    """Convert a decimal number to fixed point with ``VALUE_DECIMALS`` decimals, rounding half to even.

    Floats are converted through their shortest repr, so ``to_fixed(0.1)`` is exactly 100000.
    """
    d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    if not d.is_finite():
        raise ValidationError(f"value {x!r} is not a finite number", reason="value_not_finite")
    return FixedPoint(int((d * VALUE_SCALE).to_integral_value(rounding=ROUND_HALF_EVEN)))


def from_fixed(v: int) -> Decimal:
    """The exact decimal value of a fixed-point integer."""
    return Decimal(v) / Decimal(VALUE_SCALE)


def subject_id(namespace: str, name: str) -> Bytes32:
    """The on-chain subject for a named thing: ``keccak256("<namespace>:<name>")``.

    Namespaces in use: ``region``, ``shipment``, ``policy``.
    """
    if not namespace or ":" in namespace:
        raise ValidationError(f"bad subject namespace {namespace!r}", reason="bad_subject")
    if not name:
        raise ValidationError("subject name is empty", reason="bad_subject")
    return Bytes32(keccak(f"{namespace}:{name}".encode()))


@dataclass(frozen=True, slots=True)
class Report:
    subject: bytes
    kind: ReportKind
    value: int
    epoch: int
    observed_at: int
    inputs_root: bytes
    model_id: bytes

    def __post_init__(self) -> None:
        for name in ("subject", "inputs_root", "model_id"):
            b = getattr(self, name)
            if not isinstance(b, bytes) or len(b) != 32:
                raise ValidationError(f"report {name} must be 32 bytes", reason="bad_report")
        if not (0 < self.epoch <= UINT64_MAX):
            raise ValidationError(f"report epoch {self.epoch} out of range 1..2^64-1", reason="bad_epoch")
        if not (0 <= self.observed_at <= UINT64_MAX):
            raise ValidationError("report observedAt out of range", reason="bad_report")

    def check_value_range(self) -> None:
        lo, hi = VALUE_RANGE[self.kind]
        if not lo <= self.value <= hi:
            raise ValidationError(
                f"value {self.value} out of range [{lo}, {hi}] for kind {self.kind.name}",
                reason="value_out_of_range",
            )

    def check_epoch_bound(self, *, now: int) -> None:
        """Refuse an epoch ahead of the subject's period clock (``now``, UNIX seconds).

        Epochs must rise strictly per subject, so one signed epoch far in the future (say 2^63 − 1)
        would make every honest report after it stale and block the subject for good. No honest report
        can carry more than :func:`max_epoch`: a drought epoch is the observed month's index × 1000 +
        revision, and that month has ended by now; a cold-chain epoch is 1 + revision.
        """
        bound = max_epoch(self.kind, now=now)
        if self.epoch > bound:
            raise ValidationError(
                f"epoch {self.epoch} is ahead of the period clock: at most {bound} for "
                f"{self.kind.name.lower()} reports now",
                reason="epoch_too_far_ahead",
            )

    def message(self) -> dict[str, Any]:
        """The EIP-712 message fields, named as in Solidity."""
        return {
            "subject": self.subject,
            "kind": int(self.kind),
            "value": self.value,
            "epoch": self.epoch,
            "observedAt": self.observed_at,
            "inputsRoot": self.inputs_root,
            "modelId": self.model_id,
        }

    def as_tuple(self) -> tuple[bytes, int, int, int, int, bytes, bytes]:
        """The ABI tuple for ``OracleRouter.submit``."""
        return (
            self.subject,
            int(self.kind),
            self.value,
            self.epoch,
            self.observed_at,
            self.inputs_root,
            self.model_id,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": "0x" + self.subject.hex(),
            "kind": int(self.kind),
            "value": str(self.value),
            "epoch": self.epoch,
            "observedAt": self.observed_at,
            "inputsRoot": "0x" + self.inputs_root.hex(),
            "modelId": "0x" + self.model_id.hex(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Report:
        try:
            return cls(
                subject=_hex32(d["subject"]),
                kind=ReportKind(int(d["kind"])),
                value=int(d["value"]),
                epoch=int(d["epoch"]),
                observed_at=int(d["observedAt"]),
                inputs_root=_hex32(d["inputsRoot"]),
                model_id=_hex32(d["modelId"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError(f"malformed report: {e}", reason="bad_report") from e


def _hex32(s: Any) -> bytes:
    if not isinstance(s, str):
        raise ValueError("expected a 0x-prefixed hex string")
    b = bytes.fromhex(s.removeprefix("0x"))
    if len(b) != 32:
        raise ValueError("expected 32 bytes")
    return b


def typed_data(report: Report, *, chain_id: int, router: str) -> dict[str, Any]:
    """The full EIP-712 structure for eth-account's ``encode_typed_data(full_message=...)``."""
    return {
        "types": {"EIP712Domain": DOMAIN_FIELDS, "Report": REPORT_FIELDS},
        "primaryType": "Report",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": router,
        },
        "message": report.message(),
    }


def report_digest(report: Report, *, chain_id: int, router: str) -> bytes:
    """The 32-byte EIP-712 digest the router recovers signers from."""
    from eth_account.messages import encode_typed_data

    m = encode_typed_data(full_message=typed_data(report, chain_id=chain_id, router=router))
    return bytes(keccak(b"\x19" + m.version + m.header + m.body))
