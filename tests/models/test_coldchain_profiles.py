"""Product profiles load from the shipped YAML and refuse malformed definitions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.coldchain.profiles import (
    PROFILE_DIR,
    load_profile,
    load_profile_file,
    load_profiles,
    parse_profile,
    profile_from_mapping,
)
from oracle.errors import ValidationError


def test_shipped_profiles_load_with_their_bands() -> None:
    profiles = load_profiles()
    assert set(profiles) == {"refrigerated", "frozen", "ultracold", "crt"}
    bands = {name: (p.band_low_c, p.band_high_c) for name, p in profiles.items()}
    assert bands == {
        "refrigerated": (2.0, 8.0),
        "frozen": (-25.0, -15.0),
        "ultracold": (-90.0, -60.0),
        "crt": (20.0, 25.0),
    }
    fridge = profiles["refrigerated"]
    assert (fridge.mkt.window_s, fridge.mkt.max_c, fridge.mkt.dh_over_r) == (86400, 8.0, 10000.0)
    assert (profiles["crt"].mkt.window_s, profiles["crt"].mkt.max_c) == (30 * 86400, 25.0)
    who = {(d.mode, d.op, d.threshold_c, d.limit_s) for d in fridge.duration_limits}
    assert ("consecutive", ">=", 45.0, 3600) in who
    assert ("cumulative", ">=", 30.0, 36000) in who
    assert ("consecutive", "<=", -0.5, 3600) in who
    assert all(p.sources for p in profiles.values())


def _raw(name: str = "refrigerated") -> dict[str, object]:
    data = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"band_c": [8.0, 2.0]}, "band_c low"),
        ({"band_c": [2.0]}, "band_c must be"),
        ({"hard_limits_c": {"min": 3.0, "max": 50.0}}, "enclose"),
        ({"gap_limit_s": 0}, "gap_limit_s"),
        ({"gap_limit_s": "1h"}, "gap_limit_s"),
        ({"mkt": {"window_s": 86400, "max_c": "eight"}}, "mkt.max_c"),
        ({"mkt": {"window_s": 86400, "max_c": 8.0, "dh_over_r": -1}}, "dh_over_r"),
        ({"budget": {"reference_c": -300.0, "allowed_s": 10}}, "absolute zero"),
        ({"duration_limits": [{"mode": "sometimes", "op": ">=", "threshold_c": 1, "limit_s": 1}]}, "mode"),
        ({"duration_limits": [{"mode": "cumulative", "op": "=>", "threshold_c": 1, "limit_s": 1}]}, "op"),
        ({"duration_limits": [{"mode": "cumulative", "op": ">=", "limit_s": 1}]}, "threshold_c"),
        ({"name": "not a name"}, "name"),
    ],
)
def test_bad_profile_is_refused_with_the_field(change: dict[str, object], needle: str) -> None:
    data = {**_raw(), **change}
    with pytest.raises(ValidationError) as info:
        profile_from_mapping(data, origin="test.yaml")
    assert info.value.reason == "bad_profile"
    assert needle in str(info.value)
    assert "test.yaml" in str(info.value)


def test_missing_field_and_bad_yaml_and_unknown_name(tmp_path: Path) -> None:
    data = _raw()
    del data["mkt"]
    with pytest.raises(ValidationError, match="missing field 'mkt'"):
        profile_from_mapping(data)
    with pytest.raises(ValidationError, match="not valid YAML"):
        parse_profile("band_c: [1, 2", origin="x")
    with pytest.raises(ValidationError) as info:
        load_profile("cryogenic")
    assert info.value.reason == "unknown_profile"
    with pytest.raises(ValidationError, match="cannot be read"):
        load_profile_file(tmp_path / "absent.yaml")


def test_profiles_are_frozen() -> None:
    profile = load_profile("frozen")
    with pytest.raises(AttributeError):
        profile.gap_limit_s = 1  # type: ignore[misc]
