"""Device reputation: Beta-posterior score, monotone in flags, recovering with decay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.quality import FlagReason, ReadingFlag, ReputationParams, device_reputation, device_reputations
from oracle.errors import ValidationError


def flag(seq: int, device: str = "d1", reason: FlagReason = FlagReason.SPIKE) -> ReadingFlag:
    return ReadingFlag(device, seq, 0, reason, 1.0, 0.5, "°C", "test")


def test_prior_and_counts() -> None:
    assert device_reputation([], 0) == pytest.approx(0.9)
    assert device_reputation([], 90) == pytest.approx(99 / 100)
    # two detectors on the same reading count once
    assert device_reputation([flag(1), flag(1, reason=FlagReason.STUCK)], 10) == pytest.approx(18 / 20)
    assert device_reputation([flag(i) for i in range(100)], 100) == pytest.approx(9 / 110)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 300),
    data=st.data(),
    half_life=st.one_of(st.none(), st.floats(0.5, 500)),
)
def test_more_flags_never_raise_the_score(n: int, data: st.DataObject, half_life: float | None) -> None:
    flagged = data.draw(st.sets(st.integers(0, n - 1), max_size=n))
    extra = data.draw(st.integers(0, n - 1))
    params = ReputationParams(half_life_readings=half_life)
    seqs = list(range(n))
    before = device_reputation([flag(s) for s in flagged], n, seqs=seqs, params=params)
    after = device_reputation([flag(s) for s in flagged | {extra}], n, seqs=seqs, params=params)
    assert 0.0 < after <= before < 1.0
    if extra not in flagged and half_life is None:
        # With decay a very old reading's weight can round to nothing, so strictness holds only without it.
        assert after < before


def test_decay_lets_a_device_recover_and_punishes_recent_faults_more() -> None:
    params = ReputationParams(half_life_readings=20)
    seqs = list(range(200))
    old_faults = device_reputation([flag(s) for s in range(20)], 200, seqs=seqs, params=params)
    new_faults = device_reputation([flag(s) for s in range(180, 200)], 200, seqs=seqs, params=params)
    undecayed = device_reputation([flag(s) for s in range(20)], 200)
    assert new_faults < undecayed < old_faults
    assert old_faults > 0.97
    assert new_faults < 0.65


def test_per_device_from_readings() -> None:
    readings = [{"device": d, "seq": s} for d in ("a", "b") for s in range(10)]
    scores = device_reputations(readings, [flag(3, "b"), flag(4, "b")])
    assert scores == {"a": pytest.approx(19 / 20), "b": pytest.approx(17 / 20)}


def test_bad_input_gets_a_reason() -> None:
    with pytest.raises(ValidationError) as e:
        device_reputation([flag(1, "a"), flag(1, "b")], 5)
    assert e.value.reason == "bad_input"
    with pytest.raises(ValidationError):
        device_reputation([flag(i) for i in range(5)], 3)
    with pytest.raises(ValidationError):
        device_reputation([flag(1)], 3, params=ReputationParams(half_life_readings=10))  # no seqs
    with pytest.raises(ValidationError):
        device_reputation([flag(9)], 3, seqs=[0, 1, 2], params=ReputationParams(half_life_readings=10))
    with pytest.raises(ValidationError):
        device_reputations([{"device": "a", "seq": 1}], [flag(1, "zz")])
    with pytest.raises(ValidationError) as e:
        ReputationParams(prior_clean=0)
    assert e.value.reason == "params"
