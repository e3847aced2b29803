"""Policy modes: exclude drops flagged inputs, hold stops the decision, record only records."""

from __future__ import annotations

import pytest

from models.quality import (
    FlagReason,
    InputFlag,
    InputReason,
    ReadingFlag,
    apply_policy,
    kept_inputs,
    kept_readings,
)
from oracle.errors import ValidationError

READINGS = [{"device": "a", "seq": s, "ts_ms": s, "temp_c": 5.0} for s in range(5)]
STUCK = [ReadingFlag("a", s, s, FlagReason.STUCK, 7200.0, 7200.0, "s", "stuck") for s in (1, 2)]
ROWS = [{"region_id": "r1", "variable": "ndvi", "date": d, "mean": 0.5} for d in ("2024-06", "2024-07")]
DUP = InputFlag("r1", "ndvi", "2024-07", InputReason.DUPLICATE, 0.0, 0.0, "copy", same_as="2024-06")
NOTE = InputFlag("r1", "ndvi", "2024-06", InputReason.SHORT_HISTORY, 2.0, 5.0, "short")


def test_exclude_drops_flagged_keys_and_does_not_hold() -> None:
    out = apply_policy(STUCK, mode="exclude")
    assert (out.drop, out.hold, out.flags) == (frozenset({("a", 1), ("a", 2)}), False, tuple(STUCK))
    assert [r["seq"] for r in kept_readings(READINGS, out)] == [0, 3, 4]


def test_hold_keeps_inputs_and_holds_only_when_something_is_flagged() -> None:
    out = apply_policy([DUP, NOTE], mode="hold")
    assert out.hold
    assert out.drop == frozenset()
    assert kept_inputs(ROWS, out) == ROWS
    assert not apply_policy([], mode="hold").hold


def test_record_only_records() -> None:
    out = apply_policy([*STUCK, DUP], mode="record")
    assert (out.drop, out.hold, len(out.flags)) == (frozenset(), False, 3)


def test_notes_never_drop_or_hold() -> None:
    assert apply_policy([NOTE], mode="hold").hold is False
    out = apply_policy([NOTE, DUP], mode="exclude")
    assert out.drop == frozenset({("r1", "ndvi", "2024-07")})
    assert out.flags == (NOTE, DUP)
    assert kept_inputs(ROWS, out) == ROWS[:1]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValidationError) as e:
        apply_policy(STUCK, mode="ignore")
    assert e.value.reason == "bad_policy"
