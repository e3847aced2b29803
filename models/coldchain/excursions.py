"""Operational excursion alarms (Controlant/ThingsBoard style): boundaries, allowed durations, legs.

Alarms are operational: they tell people to act. They never feed the signed verdict, which stays the
rule engine's (:mod:`models.coldchain.rules`); alarm rules live in their own files
(``models/profiles/alarms/<profile>.yaml``) so a product profile's bytes, and every digest over them, are
unchanged by them.

Semantics (sample and hold, as in :mod:`models.coldchain.readings`): a reading stands from its timestamp
until the next reading's. Alarms are driven by readings only, so the transitions are a pure function of
the readings and leg events, and a live evaluator fires at the same instants as a full re-evaluation:

- A reading *matches* a rule when its temperature is beyond the boundary (``upper``: ``temp > threshold``;
  ``lower``: ``temp < threshold``), it was taken at or after ``start + ignore_s`` (``start``: the
  shipment's first reading) and the shipment's leg at that instant is one the rule lists.
- ``single`` (one event): a run of consecutive matching readings starting at ``a`` raises at
  ``a + allowed_s`` once the run is known to have lasted that long (``allowed_s == 0``: at ``a``). It clears
  automatically at the first reading that does not match (back in band, or out of the rule's legs).
- ``cumulative``: all matching readings together; raises at the instant the total reaches ``allowed_s``
  (``0``: at the first matching reading). The allowance is spent for good, so it never clears by itself:
  only an operator clears it.
- Legs (``origin``, ``in_transit``, ``destination``) are set by events ``(at_s, leg)``; the leg at an
  instant is that of the latest event at or before it, ``origin`` before any. An event is not retroactive:
  readings already evaluated keep the leg they were evaluated under.

Each transition names its alarm by ``(rule, raised_at_s)``; with the shipment that is the alarm's key.
:class:`AlarmEvaluator` costs O(rules) per reading, whatever the history length or the number of
shipments; :func:`replay_alarms` re-evaluates a whole record at once (vectorised, independent code), and
a property test checks both agree.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from models.errors import ValidationError

from .profiles import ABSOLUTE_ZERO_C, PROFILE_DIR

ALARM_DIR = PROFILE_DIR / "alarms"

Leg = Literal["origin", "in_transit", "destination"]
Boundary = Literal["upper", "lower"]
AlarmMode = Literal["single", "cumulative"]
Action = Literal["raise", "clear"]
LEGS: tuple[Leg, ...] = ("origin", "in_transit", "destination")
SEVERITIES = ("critical", "major", "minor", "warning")
#: Controlant's limits: at most six upper and six lower boundaries per profile, durations up to 800 h.
MAX_BOUNDARIES_PER_SIDE = 6
MAX_ALLOWED_S = 800 * 3600


@dataclass(frozen=True)
class AlarmRule:
    """One boundary with its allowed duration. ``allowed_s`` 0 alarms on the first matching reading."""

    name: str
    boundary: Boundary
    threshold_c: float
    mode: AlarmMode
    allowed_s: int
    severity: str
    legs: tuple[Leg, ...] = LEGS

    def matches(self, temp_c: float) -> bool:
        return temp_c > self.threshold_c if self.boundary == "upper" else temp_c < self.threshold_c

    @property
    def clears_automatically(self) -> bool:
        """Single-event alarms clear when the excursion ends; cumulative ones only by an operator."""
        return self.mode == "single"

    def describe(self) -> str:
        op = ">" if self.boundary == "upper" else "<"
        return f"{self.mode} {op} {self.threshold_c:g} °C for {self.allowed_s} s in {', '.join(self.legs)}"


@dataclass(frozen=True)
class AlarmRules:
    """The alarm rules of one product profile. ``ignore_s``: no alarm from readings this soon after start."""

    profile: str
    ignore_s: int
    rules: tuple[AlarmRule, ...]

    def rule(self, name: str) -> AlarmRule:
        for r in self.rules:
            if r.name == name:
                return r
        raise ValidationError(f"profile {self.profile} has no alarm rule {name!r}", reason="unknown_rule")


@dataclass(frozen=True)
class Transition:
    """An alarm raised or cleared. ``at_s``: the instant it happened (reading time, UNIX s);
    ``raised_at_s``: when the alarm was raised (with the rule, the alarm's identity); ``value_c``: the
    reading that triggered it; ``measured_s``: the time beyond the boundary counted so far."""

    rule: str
    action: Action
    at_s: int
    raised_at_s: int
    value_c: float
    measured_s: int


# --- loading ------------------------------------------------------------------------------------------


def _fail(origin: str, message: str) -> ValidationError:
    return ValidationError(f"alarm rules {origin}: {message}", reason="bad_alarm_rules")


def _rule(origin: str, index: int, raw: object) -> AlarmRule:
    where = f"rules[{index}]"
    if not isinstance(raw, Mapping):
        raise _fail(origin, f"{where} must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier() or len(name) > 64:
        raise _fail(origin, f"{where}.name must be an identifier of at most 64 characters, got {name!r}")
    boundary, mode, severity = raw.get("boundary"), raw.get("mode"), raw.get("severity", "major")
    if boundary not in ("upper", "lower"):
        raise _fail(origin, f"{where}.boundary must be upper or lower, got {boundary!r}")
    if mode not in ("single", "cumulative"):
        raise _fail(origin, f"{where}.mode must be single or cumulative, got {mode!r}")
    if severity not in SEVERITIES:
        raise _fail(origin, f"{where}.severity must be one of {SEVERITIES}, got {severity!r}")
    threshold = raw.get("threshold_c")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise _fail(origin, f"{where}.threshold_c must be a number, got {threshold!r}")
    if not np.isfinite(threshold) or threshold <= ABSOLUTE_ZERO_C:
        raise _fail(origin, f"{where}.threshold_c must be finite and above absolute zero")
    allowed = raw.get("allowed_s")
    if isinstance(allowed, bool) or not isinstance(allowed, int) or not 0 <= allowed <= MAX_ALLOWED_S:
        raise _fail(origin, f"{where}.allowed_s must be whole seconds in 0..{MAX_ALLOWED_S}, got {allowed!r}")
    legs = raw.get("legs", list(LEGS))
    if not isinstance(legs, list) or not legs or any(leg not in LEGS for leg in legs):
        raise _fail(origin, f"{where}.legs must be a non-empty list of {LEGS}, got {legs!r}")
    return AlarmRule(
        name=name,
        boundary=boundary,
        threshold_c=float(threshold),
        mode=mode,
        allowed_s=allowed,
        severity=severity,
        legs=tuple(leg for leg in LEGS if leg in legs),
    )


def alarm_rules_from_mapping(data: object, *, origin: str = "<mapping>") -> AlarmRules:
    """Build and validate alarm rules from parsed YAML (ValidationError ``bad_alarm_rules``)."""
    if not isinstance(data, Mapping):
        raise _fail(origin, "must be a mapping")
    profile, ignore = data.get("profile"), data.get("ignore_s", 0)
    if not isinstance(profile, str) or not profile.isidentifier():
        raise _fail(origin, f"profile must be a profile name, got {profile!r}")
    if isinstance(ignore, bool) or not isinstance(ignore, int) or ignore < 0:
        raise _fail(origin, f"ignore_s must be whole seconds >= 0, got {ignore!r}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _fail(origin, "rules must be a non-empty list")
    rules = tuple(_rule(origin, i, r) for i, r in enumerate(raw_rules))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise _fail(origin, "rule names must be unique")
    for side in ("upper", "lower"):
        boundaries = {r.threshold_c for r in rules if r.boundary == side}
        if len(boundaries) > MAX_BOUNDARIES_PER_SIDE:
            raise _fail(origin, f"at most {MAX_BOUNDARIES_PER_SIDE} {side} boundaries, got {len(boundaries)}")
    return AlarmRules(profile=profile, ignore_s=ignore, rules=rules)


def load_alarm_rules(profile: str, *, directory: Path = ALARM_DIR) -> AlarmRules | None:
    """The alarm rules shipped for ``profile``, or None when it has none."""
    if not profile.isidentifier():
        return None
    path = directory / f"{profile}.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(str(path), f"cannot be read: {exc}") from exc
    rules = alarm_rules_from_mapping(data, origin=str(path))
    if rules.profile != profile:
        raise _fail(str(path), f"profile {rules.profile!r} does not match the file name {profile!r}")
    return rules


# --- the incremental evaluator -------------------------------------------------------------------------


@dataclass
class _RuleState:
    matched: bool = False
    run_start: int | None = None
    cum_s: int = 0
    raised_at: int | None = None


@dataclass
class AlarmEvaluator:
    """One shipment's live alarm state. Feed readings in time order with :meth:`reading` and leg changes
    with :meth:`set_leg`; each call returns the transitions it caused. A reading not after the last one
    is ignored (returns nothing): alarms are not retroactive. Serialise with :meth:`to_state`."""

    rules: AlarmRules
    start_s: int | None = None
    last_ts: int | None = None
    last_temp: float | None = None
    leg: Leg = "origin"
    pending_legs: list[tuple[int, Leg]] = field(default_factory=list)
    states: list[_RuleState] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.states:
            self.states = [_RuleState() for _ in self.rules.rules]

    def set_leg(self, at_s: int, leg: Leg) -> None:
        """The shipment enters ``leg`` at ``at_s``; it applies to readings taken at or after ``at_s``."""
        if leg not in LEGS:
            raise ValidationError(f"unknown leg {leg!r}; one of {LEGS}", reason="bad_leg")
        bisect.insort(self.pending_legs, (at_s, leg), key=lambda e: e[0])

    def reading(self, ts_s: int, temp_c: float) -> list[Transition]:
        """Evaluate one reading: O(rules) (plus the leg events it passes)."""
        if self.last_ts is not None and ts_s <= self.last_ts:
            return []
        while self.pending_legs and self.pending_legs[0][0] <= ts_s:
            self.leg = self.pending_legs.pop(0)[1]
        out: list[Transition] = []
        if self.start_s is None:
            self.start_s = ts_s
        held = 0 if self.last_ts is None else ts_s - self.last_ts
        armed = ts_s >= self.start_s + self.rules.ignore_s
        for rule, st in zip(self.rules.rules, self.states, strict=True):
            # The previous reading's interval is now closed: count it.
            if st.matched and held:
                if rule.mode == "single":
                    assert st.run_start is not None
                    if st.raised_at is None and ts_s - st.run_start >= rule.allowed_s:
                        st.raised_at = st.run_start + rule.allowed_s
                        out.append(self._t(rule, "raise", st.raised_at, st, ts_s - st.run_start))
                else:
                    before = st.cum_s
                    st.cum_s += held
                    if st.raised_at is None and st.cum_s >= rule.allowed_s:
                        assert self.last_ts is not None
                        st.raised_at = self.last_ts + (rule.allowed_s - before)
                        out.append(self._t(rule, "raise", st.raised_at, st, st.cum_s))
            matched = armed and self.leg in rule.legs and rule.matches(temp_c)
            if rule.mode == "single":
                if not matched and st.run_start is not None:
                    if st.raised_at is not None:
                        out.append(self._t(rule, "clear", ts_s, st, ts_s - st.run_start))
                        st.raised_at = None
                    st.run_start = None
                elif matched and st.run_start is None:
                    st.run_start = ts_s
                    if rule.allowed_s == 0:
                        st.raised_at = ts_s
                        out.append(self._t(rule, "raise", ts_s, st, 0, value=temp_c))
            elif matched and st.raised_at is None and rule.allowed_s == 0:
                st.raised_at = ts_s
                out.append(self._t(rule, "raise", ts_s, st, st.cum_s, value=temp_c))
            st.matched = matched
        self.last_ts, self.last_temp = ts_s, temp_c
        return out

    def _t(
        self,
        rule: AlarmRule,
        action: Action,
        at_s: int,
        st: _RuleState,
        measured: int,
        value: float | None = None,
    ) -> Transition:
        assert st.raised_at is not None
        temp = value if value is not None else self.last_temp
        return Transition(
            rule.name, action, at_s, st.raised_at, float(temp if temp is not None else 0.0), measured
        )

    def active(self) -> dict[str, int]:
        """{rule name: raised_at_s} of the alarms whose condition currently holds."""
        return {
            r.name: s.raised_at
            for r, s in zip(self.rules.rules, self.states, strict=True)
            if s.raised_at is not None
        }

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot; :meth:`from_state` restores it under the same rules."""
        return {
            "start_s": self.start_s,
            "last_ts": self.last_ts,
            "last_temp": self.last_temp,
            "leg": self.leg,
            "pending_legs": [[t, leg] for t, leg in self.pending_legs],
            "rules": {
                r.name: [s.matched, s.run_start, s.cum_s, s.raised_at]
                for r, s in zip(self.rules.rules, self.states, strict=True)
            },
        }

    @classmethod
    def from_state(cls, rules: AlarmRules, state: Mapping[str, Any]) -> AlarmEvaluator:
        """Restore a snapshot; rules added since start fresh, rules removed are dropped."""
        saved = state.get("rules", {})
        states = []
        for r in rules.rules:
            raw = saved.get(r.name)
            states.append(_RuleState(bool(raw[0]), raw[1], int(raw[2]), raw[3]) if raw else _RuleState())
        return cls(
            rules=rules,
            start_s=state.get("start_s"),
            last_ts=state.get("last_ts"),
            last_temp=state.get("last_temp"),
            leg=state.get("leg", "origin"),
            pending_legs=[(int(t), leg) for t, leg in state.get("pending_legs", [])],
            states=states,
        )


# --- full re-evaluation ---------------------------------------------------------------------------------


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def replay_alarms(
    ts_s: Sequence[int] | npt.NDArray[np.int64],
    temp_c: Sequence[float] | npt.NDArray[np.float64],
    rules: AlarmRules,
    *,
    legs: Iterable[tuple[int, Leg]] = (),
) -> list[Transition]:
    """Every transition of a whole record (strictly increasing ``ts_s``), sorted by (at_s, rule, action):
    what :class:`AlarmEvaluator` yields fed the same readings, with each leg event given before the
    readings it precedes."""
    ts = np.asarray(ts_s, dtype=np.int64)
    temp = np.asarray(temp_c, dtype=np.float64)
    n = ts.shape[0]
    if n == 0:
        return []
    events = sorted(legs, key=lambda e: e[0])
    event_ts = np.array([t for t, _ in events], dtype=np.int64)
    names = np.array(["origin"] + [leg for _, leg in events])
    leg_at = names[np.searchsorted(event_ts, ts, side="right")]
    held = np.append(np.diff(ts), 0)
    armed = ts >= ts[0] + rules.ignore_s
    out: list[Transition] = []
    for rule in rules.rules:
        beyond = temp > rule.threshold_c if rule.boundary == "upper" else temp < rule.threshold_c
        mask = armed & np.isin(leg_at, rule.legs) & beyond
        if rule.mode == "single":
            for a, b in _runs(mask):
                extent = int(ts[b + 1] - ts[a]) if b + 1 < n else int(ts[b] - ts[a])
                if extent < rule.allowed_s:
                    continue
                raised = int(ts[a]) + rule.allowed_s
                # The reading that showed it: the run's first (allowed 0), else the one closing the interval.
                k = a if rule.allowed_s == 0 else int(np.searchsorted(ts, raised, side="left"))
                shown = float(temp[a]) if rule.allowed_s == 0 else float(temp[k - 1])
                seen = 0 if rule.allowed_s == 0 else int(ts[k] - ts[a])
                out.append(Transition(rule.name, "raise", raised, raised, shown, seen))
                if b + 1 < n:
                    out.append(Transition(rule.name, "clear", int(ts[b + 1]), raised, float(temp[b]), extent))
            continue
        hits = np.flatnonzero(mask)
        if hits.size == 0:
            continue
        if rule.allowed_s == 0:
            first = int(hits[0])
            out.append(Transition(rule.name, "raise", int(ts[first]), int(ts[first]), float(temp[first]), 0))
            continue
        counted = np.where(mask, held, 0)
        running = np.cumsum(counted)
        if running[-1] < rule.allowed_s:
            continue
        k = int(np.searchsorted(running, rule.allowed_s, side="left"))
        raised = int(ts[k] + (rule.allowed_s - (running[k] - counted[k])))
        out.append(Transition(rule.name, "raise", raised, raised, float(temp[k]), int(running[k])))
    order = {r.name: i for i, r in enumerate(rules.rules)}
    out.sort(key=lambda t: (t.at_s, order[t.rule], t.action != "raise"))
    return out
