"""Cold-chain product profiles: the limits a shipment of one product class must respect.

Profiles live as YAML in ``models/profiles/<name>.yaml`` and load into frozen dataclasses. Every
field is checked on load; a malformed profile raises :class:`oracle.errors.ValidationError` with
``reason="bad_profile"`` and a message naming the file and the field.

Semantics (shared with :mod:`models.coldchain.rules`):

- ``band_c``: the labelled storage range; time outside it is reported as time out of range.
- ``hard_limits_c``: a single reading ``<= min`` or ``>= max`` is a breach.
- ``duration_limits``: readings matching ``op threshold_c`` for ``limit_s`` seconds or longer, either in
  one unbroken run (``consecutive``) or in total (``cumulative``), are a breach.
- ``mkt``: mean kinetic temperature over any full trailing window of ``window_s`` above ``max_c`` is a breach.
- ``budget``: Arrhenius-equivalent time at ``reference_c`` reaching ``allowed_s`` is a breach.
- ``gap_limit_s``: a gap between readings (or from the last reading to "now") of this length or longer is
  a breach, because unknown exposure is not safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from models.errors import ValidationError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
ABSOLUTE_ZERO_C = -273.15

DurationMode = Literal["consecutive", "cumulative"]
Comparison = Literal[">=", ">", "<=", "<"]
_MODES: tuple[str, ...] = ("consecutive", "cumulative")
_OPS: tuple[str, ...] = (">=", ">", "<=", "<")


@dataclass(frozen=True)
class DurationLimit:
    """Readings with ``temp op threshold_c`` for ``limit_s`` seconds (one run or in total) breach."""

    mode: DurationMode
    op: Comparison
    threshold_c: float
    limit_s: int

    def describe(self) -> str:
        return f"{self.mode} {self.op} {self.threshold_c:g} °C for {self.limit_s} s"


@dataclass(frozen=True)
class MktLimit:
    """Mean kinetic temperature over a trailing ``window_s`` must stay ``<= max_c``."""

    window_s: int
    max_c: float
    dh_over_r: float


@dataclass(frozen=True)
class StabilityBudget:
    """Arrhenius-equivalent seconds at ``reference_c`` the shipment may consume (``allowed_s``)."""

    reference_c: float
    allowed_s: int
    dh_over_r: float


@dataclass(frozen=True)
class ProductProfile:
    """All cold-chain limits for one product class. Temperatures in °C, durations in seconds."""

    name: str
    description: str
    band_low_c: float
    band_high_c: float
    hard_min_c: float
    hard_max_c: float
    duration_limits: tuple[DurationLimit, ...]
    mkt: MktLimit
    budget: StabilityBudget
    gap_limit_s: int
    sources: tuple[str, ...]


def _fail(origin: str, message: str) -> ValidationError:
    return ValidationError(f"profile {origin}: {message}", reason="bad_profile")


def _number(origin: str, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(origin, f"{field} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _fail(origin, f"{field} must be finite, got {value!r}")
    return number


def _temperature(origin: str, field: str, value: object) -> float:
    number = _number(origin, field, value)
    if number <= ABSOLUTE_ZERO_C:
        raise _fail(origin, f"{field} is at or below absolute zero: {number}")
    return number


def _seconds(origin: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(origin, f"{field} must be a positive whole number of seconds, got {value!r}")
    return value


def _mapping(origin: str, field: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(origin, f"{field} must be a mapping, got {type(value).__name__}")
    return value


def _require(origin: str, data: Mapping[str, Any], field: str) -> Any:
    if field not in data:
        raise _fail(origin, f"missing field {field!r}")
    return data[field]


def _duration_limit(origin: str, index: int, raw: object) -> DurationLimit:
    field = f"duration_limits[{index}]"
    data = _mapping(origin, field, raw)
    mode = _require(origin, data, "mode")
    op = _require(origin, data, "op")
    if mode not in _MODES:
        raise _fail(origin, f"{field}.mode must be one of {_MODES}, got {mode!r}")
    if op not in _OPS:
        raise _fail(origin, f"{field}.op must be one of {_OPS}, got {op!r}")
    return DurationLimit(
        mode=mode,
        op=op,
        threshold_c=_temperature(origin, f"{field}.threshold_c", _require(origin, data, "threshold_c")),
        limit_s=_seconds(origin, f"{field}.limit_s", _require(origin, data, "limit_s")),
    )


def _dh_over_r(origin: str, field: str, data: Mapping[str, Any]) -> float:
    value = _number(origin, field, data.get("dh_over_r", 10000.0))
    if value <= 0:
        raise _fail(origin, f"{field} must be positive, got {value}")
    return value


def profile_from_mapping(data: object, *, origin: str = "<mapping>") -> ProductProfile:
    """Build and validate a profile from parsed YAML. ``origin`` names the source in error messages."""
    top = _mapping(origin, "profile", data)
    name = _require(origin, top, "name")
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(origin, f"name must be an identifier-like string, got {name!r}")
    band = _require(origin, top, "band_c")
    if not isinstance(band, list | tuple) or len(band) != 2:
        raise _fail(origin, f"band_c must be [low, high], got {band!r}")
    low = _temperature(origin, "band_c[0]", band[0])
    high = _temperature(origin, "band_c[1]", band[1])
    if not low < high:
        raise _fail(origin, f"band_c low {low} must be below high {high}")
    hard = _mapping(origin, "hard_limits_c", _require(origin, top, "hard_limits_c"))
    hard_min = _temperature(origin, "hard_limits_c.min", _require(origin, hard, "min"))
    hard_max = _temperature(origin, "hard_limits_c.max", _require(origin, hard, "max"))
    if not hard_min < low < high < hard_max:
        raise _fail(origin, f"hard limits [{hard_min}, {hard_max}] must enclose the band [{low}, {high}]")
    raw_limits = top.get("duration_limits", [])
    if not isinstance(raw_limits, list):
        raise _fail(origin, "duration_limits must be a list")
    limits = tuple(_duration_limit(origin, i, raw) for i, raw in enumerate(raw_limits))
    mkt_raw = _mapping(origin, "mkt", _require(origin, top, "mkt"))
    mkt = MktLimit(
        window_s=_seconds(origin, "mkt.window_s", _require(origin, mkt_raw, "window_s")),
        max_c=_temperature(origin, "mkt.max_c", _require(origin, mkt_raw, "max_c")),
        dh_over_r=_dh_over_r(origin, "mkt.dh_over_r", mkt_raw),
    )
    budget_raw = _mapping(origin, "budget", _require(origin, top, "budget"))
    budget = StabilityBudget(
        reference_c=_temperature(origin, "budget.reference_c", _require(origin, budget_raw, "reference_c")),
        allowed_s=_seconds(origin, "budget.allowed_s", _require(origin, budget_raw, "allowed_s")),
        dh_over_r=_dh_over_r(origin, "budget.dh_over_r", budget_raw),
    )
    sources = top.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise _fail(origin, "sources must be a list of strings")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise _fail(origin, "description must be a string")
    return ProductProfile(
        name=name,
        description=description,
        band_low_c=low,
        band_high_c=high,
        hard_min_c=hard_min,
        hard_max_c=hard_max,
        duration_limits=limits,
        mkt=mkt,
        budget=budget,
        gap_limit_s=_seconds(origin, "gap_limit_s", _require(origin, top, "gap_limit_s")),
        sources=tuple(sources),
    )


def parse_profile(text: str, *, origin: str = "<text>") -> ProductProfile:
    """Parse YAML text into a validated profile."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(origin, f"not valid YAML: {exc}") from exc
    return profile_from_mapping(data, origin=origin)


def load_profile_file(path: Path) -> ProductProfile:
    """Load one profile file. Unreadable or invalid files raise ValidationError(reason="bad_profile")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(str(path), f"cannot be read: {exc.strerror}") from exc
    return parse_profile(text, origin=str(path))


def profile_names(directory: Path = PROFILE_DIR) -> tuple[str, ...]:
    """Names of the profiles shipped in ``directory``, sorted."""
    return tuple(sorted(p.stem for p in directory.glob("*.yaml")))


def load_profile(name: str, *, directory: Path = PROFILE_DIR) -> ProductProfile:
    """Load the shipped profile ``name``: ``refrigerated``, ``frozen``, ``ultracold`` or ``crt``."""
    if not name.isidentifier():
        raise ValidationError(f"unknown profile {name!r}", reason="unknown_profile")
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(profile_names(directory))
        raise ValidationError(f"unknown profile {name!r}; known: {known}", reason="unknown_profile")
    profile = load_profile_file(path)
    if profile.name != name:
        raise _fail(str(path), f"name {profile.name!r} does not match the file name {name!r}")
    return profile


def load_profiles(directory: Path = PROFILE_DIR) -> dict[str, ProductProfile]:
    """All profiles in ``directory`` by name."""
    return {name: load_profile(name, directory=directory) for name in profile_names(directory)}
