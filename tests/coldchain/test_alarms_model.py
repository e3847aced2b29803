"""The excursion engine (models/coldchain/excursions.py): incremental == full re-evaluation, the
documented semantics on hand-made records, legs, the ignore period, restarts from a snapshot, and that
alarm rules leave every product profile (and so every signed digest) as it was."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.coldchain.excursions import (
    LEGS,
    AlarmEvaluator,
    AlarmRules,
    Transition,
    alarm_rules_from_mapping,
    load_alarm_rules,
    replay_alarms,
)
from models.coldchain.profiles import PROFILE_DIR, profile_names
from models.errors import ValidationError

RULES = alarm_rules_from_mapping(
    {
        "profile": "refrigerated",
        "ignore_s": 600,
        "rules": [
            {"name": "hi30", "boundary": "upper", "threshold_c": 8.0, "mode": "single", "allowed_s": 1800},
            {"name": "hi0", "boundary": "upper", "threshold_c": 25.0, "mode": "single", "allowed_s": 0},
            {
                "name": "hicum",
                "boundary": "upper",
                "threshold_c": 8.0,
                "mode": "cumulative",
                "allowed_s": 3000,
            },
            {"name": "locum0", "boundary": "lower", "threshold_c": 0.0, "mode": "cumulative", "allowed_s": 0},
            {
                "name": "dock",
                "boundary": "upper",
                "threshold_c": 8.0,
                "mode": "single",
                "allowed_s": 600,
                "legs": ["origin", "destination"],
            },
            {
                "name": "transit_cold",
                "boundary": "lower",
                "threshold_c": 2.0,
                "mode": "single",
                "allowed_s": 900,
                "legs": ["in_transit"],
            },
        ],
    }
)


def _key(t: Transition) -> tuple[int, int, bool]:
    order = {r.name: i for i, r in enumerate(RULES.rules)}
    return (t.at_s, order[t.rule], t.action != "raise")


def _feed(
    rules: AlarmRules, events: list[tuple[str, int, object]], *, restart_every: int = 0
) -> list[Transition]:
    ev = AlarmEvaluator(rules)
    out: list[Transition] = []
    for i, (what, ts, value) in enumerate(events):
        if what == "leg":
            ev.set_leg(ts, value)  # type: ignore[arg-type]
        else:
            out += ev.reading(ts, float(value))  # type: ignore[arg-type]
        if restart_every and i % restart_every == 0:
            ev = AlarmEvaluator.from_state(rules, json.loads(json.dumps(ev.to_state())))
    return sorted(out, key=_key)


@st.composite
def records(draw: st.DrawFn) -> list[tuple[str, int, object]]:
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.sampled_from([60, 300, 600, 601, 900, 1200, 2400]), min_size=n, max_size=n))
    temps = draw(
        st.lists(st.sampled_from([-1.0, 1.5, 2.0, 5.0, 8.0, 8.5, 12.0, 26.0]), min_size=n, max_size=n)
    )
    out: list[tuple[str, int, object]] = []
    t = 1_700_000_000
    for step, temp in zip(steps, temps, strict=True):
        if draw(st.integers(0, 9)) == 0:  # a leg change at or before the next reading
            out.append(("leg", t + draw(st.sampled_from([1, step // 2, step])), draw(st.sampled_from(LEGS))))
        t += step
        out.append(("reading", t, temp))
    return out


@settings(max_examples=300, deadline=None)
@given(records(), st.integers(0, 7))
def test_incremental_equals_full_reevaluation(
    record: list[tuple[str, int, object]], restart_every: int
) -> None:
    ts = [t for what, t, _ in record if what == "reading"]
    temps = [float(v) for what, _, v in record if what == "reading"]  # type: ignore[arg-type]
    legs = [(t, v) for what, t, v in record if what == "leg"]
    expected = replay_alarms(ts, temps, RULES, legs=legs)  # type: ignore[arg-type]
    assert _feed(RULES, record) == expected
    # A restart from the JSON snapshot after any reading changes nothing.
    assert _feed(RULES, record, restart_every=restart_every) == expected


def _series(temps: list[float], *, step: int = 600, t0: int = 1_700_000_000) -> list[tuple[str, int, object]]:
    return [("reading", t0 + i * step, x) for i, x in enumerate(temps)]


T0 = 1_700_000_000


def test_single_event_raises_after_its_allowed_time_and_clears_back_in_band() -> None:
    # 5 °C, then 9 °C for 4 readings (40 min), then back to 5 °C.
    got = [t for t in _feed(RULES, _series([5, 5, 9, 9, 9, 9, 5])) if t.rule == "hi30"]
    assert [(t.action, t.at_s - T0, t.raised_at_s - T0) for t in got] == [
        ("raise", 1200 + 1800, 3000),
        ("clear", 3600, 3000),
    ]
    # 20 minutes beyond the boundary is within the allowance: no alarm.
    assert not [t for t in _feed(RULES, _series([5, 5, 9, 9, 5])) if t.rule == "hi30"]


def test_immediate_rule_and_the_ignore_period() -> None:
    # 26 °C at the first reading is inside the 10-minute ignore period; at 10 min it counts.
    got = [t for t in _feed(RULES, _series([26, 26, 5])) if t.rule == "hi0"]
    assert [(t.action, t.at_s - T0) for t in got] == [("raise", 600), ("clear", 1200)]


def test_cumulative_adds_up_separate_excursions_and_does_not_clear_by_itself() -> None:
    # Three 20-minute excursions above 8 °C: 1200 + 1200 + 600 s reach the 3000 s allowance.
    temps = [5, 9, 9, 5, 9, 9, 5, 9, 9, 5, 5]
    got = [t for t in _feed(RULES, _series(temps)) if t.rule == "hicum"]
    assert [(t.action, t.at_s - T0, t.measured_s) for t in got] == [("raise", 4200 + 600, 3000)]
    assert AlarmEvaluator(RULES).rules.rule("hicum").clears_automatically is False


def test_legs_gate_rules() -> None:
    ev = AlarmEvaluator(RULES)
    readings = [(T0 + i * 600, x) for i, x in enumerate([5.0, 5.0, 9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0])]
    ev.set_leg(T0 + 600, "in_transit")
    out: list[Transition] = []
    for ts, x in readings:
        out += ev.reading(ts, x)
    names = {t.rule for t in out}
    assert "dock" not in names  # in transit: the dock rule does not apply
    assert "transit_cold" in names  # and the transit-only one does
    # At the origin the dock rule fires after 10 min and the transit rule does not.
    at_origin = {t.rule for t in _feed(RULES, _series([5.0, 5.0, 9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0]))}
    assert "dock" in at_origin
    assert "transit_cold" not in at_origin


def test_a_late_reading_changes_nothing() -> None:
    ev = AlarmEvaluator(RULES)
    ev.reading(T0 + 1200, 5.0)
    assert ev.reading(T0 + 600, 30.0) == []
    assert ev.last_ts == T0 + 1200


def test_rule_files_are_valid_and_leave_the_profiles_alone() -> None:
    for name in profile_names():
        rules = load_alarm_rules(name)
        assert rules is not None
        assert rules.profile == name
    # The product profiles the escrow registers by keccak of their bytes are the four flat files;
    # alarm files sit in a subfolder profile_names() does not see.
    assert profile_names() == ("crt", "frozen", "refrigerated", "ultracold")
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(PROFILE_DIR.glob("*.yaml"))
    }
    assert digests == {
        "crt.yaml": digests["crt.yaml"],
        "frozen.yaml": digests["frozen.yaml"],
        "refrigerated.yaml": digests["refrigerated.yaml"],
        "ultracold.yaml": digests["ultracold.yaml"],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"boundary": "sideways"}, "boundary"),
        ({"allowed_s": -1}, "allowed_s"),
        ({"allowed_s": 800 * 3600 + 1}, "allowed_s"),
        ({"legs": ["at_sea"]}, "legs"),
        ({"severity": "apocalyptic"}, "severity"),
    ],
)
def test_bad_rules_are_refused(change: dict[str, object], message: str) -> None:
    rule = {"name": "r", "boundary": "upper", "threshold_c": 8.0, "mode": "single", "allowed_s": 60} | change
    with pytest.raises(ValidationError, match=message):
        alarm_rules_from_mapping({"profile": "p", "rules": [rule]})


def test_at_most_six_boundaries_per_side() -> None:
    rules = [
        {"name": f"r{i}", "boundary": "upper", "threshold_c": 8.0 + i, "mode": "single", "allowed_s": 60}
        for i in range(7)
    ]
    with pytest.raises(ValidationError, match="at most 6 upper"):
        alarm_rules_from_mapping({"profile": "p", "rules": rules})
