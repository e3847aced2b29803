"""Product terms as data: the pydantic model of a product file (YAML or JSON) and its hash.

A product file holds one object, validated by :class:`ProductTerms` (unknown keys are refused, so a
typo cannot silently change a product). The **product hash** is what the pool stores with each policy:

    product_hash = keccak256(canonical_json(terms))

where ``canonical_json`` is the JSON encoding of the *validated* terms (every field, defaults filled
in, ``null`` for an absent optional field) with keys sorted, no whitespace (``","`` and ``":"`` as
separators), non-ASCII characters written as themselves, encoded as UTF-8. Numbers are written the way
their field's type says: integers as integers, decimal fields (weights, triggers, loading) as the
shortest decimal that reads back to the same binary double (``0.3``, ``120.0``). So the same terms in
YAML or JSON, in any key order, with any whitespace or comments, give the same hash; any change to
a term gives another.
"""

from __future__ import annotations

import json
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oracle.errors import ValidationError

#: Product ids are file names and URL path segments.
PRODUCT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: The pool stores limits as uint128.
UINT128_MAX = 2**128 - 1


class IndexKind(StrEnum):
    """What the product measures. ``severity`` (the oracle's drought severity score, 0..5) is worse
    when higher; ``rainfall_total`` (mm), ``spi`` (SPI-k, unitless) and ``vhi`` (0..100) are worse when
    lower."""

    SEVERITY = "severity"
    SPI = "spi"
    VHI = "vhi"
    RAINFALL_TOTAL = "rainfall_total"

    @property
    def higher_is_worse(self) -> bool:
        return self is IndexKind.SEVERITY


class PeriodGrid(StrEnum):
    """``seasonal``: each window is evaluated once, at its last month. ``monthly``: each month of each
    window is evaluated, and the window pays its largest (confirmed) monthly payout."""

    SEASONAL = "seasonal"
    MONTHLY = "monthly"


Month = Annotated[int, Field(ge=1, le=12)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IndexSpec(_Strict):
    kind: IndexKind
    #: Accumulation in months: SPI-k's k; for ``rainfall_total`` on the monthly grid, the length of the
    #: rolling total ending at each evaluated month (the seasonal grid totals the whole window).
    months: int = Field(default=1, ge=1, le=72)
    unit: str = Field(default="", max_length=20)


class Coverage(_Strict):
    """The insured season, repeated every year: ``months`` calendar months from ``start_month``
    (it may run across the new year; the season is named after the year it starts in)."""

    start_month: Month
    months: int = Field(ge=1, le=12)


class Window(_Strict):
    """One aggregation window, e.g. a crop phase: calendar months ``first_month``..``last_month`` (may
    cross the new year), inside the coverage. Its share of the limit is ``floor(limit * weight)``.
    ``trigger`` / ``exit`` override the product's for this window (needed for rainfall totals over
    windows of different lengths)."""

    name: str = Field(min_length=1, max_length=40)
    first_month: Month
    last_month: Month
    weight: float = Field(gt=0, le=1)
    trigger: float | None = None
    exit: float | None = None


class Pricing(_Strict):
    """``loaded_premium = pure_premium * (1 + loading)``; the insurer sets the loading.
    ``reference_series`` (relative to the product file) is the index history the product is priced on."""

    loading: float = Field(ge=0, le=10)
    reference_series: str | None = Field(default=None, max_length=200)


class ProductTerms(_Strict):
    """A parametric product. Amounts (``limit``, ``deductible``) are in the pool token's base units."""

    id: str = Field(pattern=PRODUCT_ID_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    version: int = Field(ge=1)
    description: str = Field(default="", max_length=2000)
    index: IndexSpec
    period_grid: PeriodGrid
    coverage: Coverage
    #: Months after the coverage ends during which late reports (and confirmations) still count.
    grace_months: int = Field(default=0, ge=0, le=12)
    windows: list[Window] = Field(min_length=1, max_length=12)
    trigger: float | None = None
    exit: float | None = None
    limit: int = Field(gt=0, le=UINT128_MAX)
    #: Subtracted from each window's payout (one claim per window and season), never below zero.
    deductible: int = Field(default=0, ge=0)
    #: Candidate → confirm: a crossing opens a candidate that pays only if the next evaluation crosses too.
    hysteresis: bool = False
    pricing: Pricing

    @field_validator("trigger", "exit")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not Decimal(repr(v)).is_finite():
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ProductTerms:
        if self.deductible >= self.limit:
            raise ValueError("deductible: must be below limit")
        total = sum((Decimal(repr(w.weight)) for w in self.windows), Decimal(0))
        if abs(total - 1) > Decimal("1e-9"):
            raise ValueError(f"windows: weights must sum to 1 (they sum to {total})")
        if self.hysteresis and self.period_grid is not PeriodGrid.MONTHLY:
            raise ValueError("hysteresis: needs period_grid monthly (the next evaluation is next month's)")
        names = [w.name for w in self.windows]
        if len(set(names)) != len(names):
            raise ValueError("windows: names must be unique")
        taken: set[int] = set()
        for i, w in enumerate(self.windows):
            first, last = self.offset(w.first_month), self.offset(w.last_month)
            if first is None or last is None or first > last:
                raise ValueError(
                    f"windows.{i}: months {w.first_month}..{w.last_month} are not inside the coverage "
                    f"({self.coverage.months} months from month {self.coverage.start_month})"
                )
            span = set(range(first, last + 1))
            if span & taken:
                raise ValueError(f"windows.{i}: overlaps another window")
            taken |= span
            trigger, exit_ = self.window_trigger_exit(w)
            if trigger is None or exit_ is None:
                raise ValueError(f"windows.{i}: no trigger/exit (set them on the window or the product)")
            if self.index.kind.higher_is_worse and not exit_ > trigger:
                raise ValueError(f"windows.{i}: exit must exceed trigger for {self.index.kind.value}")
            if not self.index.kind.higher_is_worse and not exit_ < trigger:
                raise ValueError(
                    f"windows.{i}: exit must be below trigger for {self.index.kind.value} (lower is worse)"
                )
        return self

    def offset(self, month: int) -> int | None:
        """Months from the coverage start to calendar ``month``, or None when outside the coverage."""
        off = (month - self.coverage.start_month) % 12
        return off if off < self.coverage.months else None

    def window_trigger_exit(self, window: Window) -> tuple[float | None, float | None]:
        return (
            window.trigger if window.trigger is not None else self.trigger,
            window.exit if window.exit is not None else self.exit,
        )

    def window_limit(self, window: Window) -> int:
        """``floor(limit * weight)``, exactly (the weight read as the decimal it was written as)."""
        return int((Decimal(self.limit) * Decimal(repr(window.weight))).to_integral_value(ROUND_FLOOR))


def canonical_json(terms: ProductTerms) -> bytes:
    """The bytes the product hash is taken over (see the module docstring)."""
    return json.dumps(
        terms.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def product_hash(terms: ProductTerms) -> str:
    """``0x`` + 64 hex digits: keccak256 of :func:`canonical_json`, the bytes32 stored on-chain."""
    from eth_utils.crypto import keccak

    return "0x" + keccak(canonical_json(terms)).hex()


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(product)"


def parse_terms(data: Any, *, source: str = "product") -> ProductTerms:
    """Validate a decoded product object. :raises ValidationError: naming each bad field."""
    if not isinstance(data, dict):
        raise ValidationError(f"{source}: a product file holds one object (a mapping)", reason="bad_product")
    try:
        return ProductTerms.model_validate(data)
    except pydantic.ValidationError as e:
        problems = []
        for err in e.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            loc = _field_path(tuple(err["loc"]))
            problems.append(msg if loc == "(product)" and ":" in msg else f"{loc}: {msg}")
        raise ValidationError(f"{source}: " + "; ".join(problems), reason="bad_product") from None


def load_terms(path: Path) -> ProductTerms:
    """Read and validate a product file (``.yaml``/``.yml`` or ``.json``).

    :raises ValidationError: missing or unreadable file, bad YAML/JSON, or bad terms (field named).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such product file", reason="not_found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError(f"{path}: unreadable ({e.__class__.__name__})", reason="bad_product") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValidationError(f"{path}: not JSON ({e})", reason="bad_product") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValidationError(f"{path}: not YAML ({e})", reason="bad_product") from None
    return parse_terms(data, source=str(path))
