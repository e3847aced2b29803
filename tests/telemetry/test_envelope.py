"""Canonical JSON, the reference signer, and the reading schema (pure, no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from ingest.telemetry.envelope import (
    EnvelopeError,
    RejectReason,
    canonical_json,
    parse_envelope,
    sign_envelope,
    signature_ok,
    validate_reading,
)

SECRET = bytes.fromhex("11" * 32)


def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_utf8() -> None:
    body = {"ts": 1, "seq": 2, "temp_c": -18.0, "x": "é"}
    assert canonical_json(body) == '{"seq":2,"temp_c":-18.0,"ts":1,"x":"é"}'.encode()


def test_canonical_json_renders_floats_as_shortest_round_trip() -> None:
    assert (
        canonical_json([4.1, 4.0, 4, 0.1 + 0.2, 1e-05, 1e16])
        == b"[4.1,4.0,4,0.30000000000000004,1e-05,1e+16]"
    )


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"temp_c": float("nan")})


def test_sign_envelope_is_hmac_sha256_over_canonical_body() -> None:
    body = [{"seq": 1, "ts": 1700000000000, "temp_c": 5.25}]
    env = sign_envelope(body, SECRET)
    expected = hmac.new(SECRET, b'[{"seq":1,"temp_c":5.25,"ts":1700000000000}]', hashlib.sha256).hexdigest()
    assert env == {"body": body, "sig": expected}
    assert signature_ok(parse_envelope(json.dumps(env).encode()), SECRET)


def test_signature_survives_reformatting_but_not_a_changed_value() -> None:
    env = sign_envelope({"seq": 1, "ts": 5, "temp_c": 4.5}, SECRET)
    pretty = json.dumps(env, indent=4, sort_keys=False).encode()
    assert signature_ok(parse_envelope(pretty), SECRET)
    tampered = json.dumps({"body": {"seq": 1, "ts": 5, "temp_c": 4.6}, "sig": env["sig"]}).encode()
    assert not signature_ok(parse_envelope(tampered), SECRET)
    assert not signature_ok(parse_envelope(json.dumps(env).encode()), bytes(32))


def test_number_rendered_differently_from_canonical_fails_as_documented() -> None:
    # The device signed "4.10" but canonical JSON is "4.1": the README tells makers to sign canonical bytes.
    sig = hmac.new(SECRET, b'{"seq":1,"temp_c":4.10,"ts":5}', hashlib.sha256).hexdigest()
    raw = b'{"body": {"seq": 1, "ts": 5, "temp_c": 4.10}, "sig": "' + sig.encode() + b'"}'
    assert not signature_ok(parse_envelope(raw), SECRET)


@pytest.mark.parametrize(
    ("payload", "reason", "match"),
    [
        (b"\xff\xfe", RejectReason.MALFORMED, "not UTF-8"),
        (b"{not json", RejectReason.MALFORMED, "not JSON"),
        (b"[1, 2]", RejectReason.MALFORMED, "JSON object"),
        (b'{"body": {}}', RejectReason.MALFORMED, "exactly the keys"),
        (b'{"body": {}, "sig": "ab", "x": 1}', RejectReason.MALFORMED, "exactly the keys"),
        (b'{"body": {}, "sig": "zz' + b"0" * 62 + b'"}', RejectReason.MALFORMED, "64 hex"),
        (b'{"body": {}, "sig": 5}', RejectReason.MALFORMED, "64 hex"),
        (b'{"body": [], "sig": "' + b"0" * 64 + b'"}', RejectReason.MALFORMED, "empty array"),
        (b'{"body": 3, "sig": "' + b"0" * 64 + b'"}', RejectReason.MALFORMED, "reading object or an array"),
        (b'{"body": {"temp_c": NaN}, "sig": "' + b"0" * 64 + b'"}', RejectReason.MALFORMED, "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, RejectReason.MALFORMED, "nests deeper"),
        (b" " * 262_145, RejectReason.TOO_LARGE, "exceeds"),
    ],
)
def test_envelope_refusals(payload: bytes, reason: RejectReason, match: str) -> None:
    with pytest.raises(EnvelopeError, match=match) as info:
        parse_envelope(payload)
    assert info.value.code is reason


def test_valid_reading_with_every_field() -> None:
    item = {
        "seq": 7,
        "ts": 1700000000000,
        "temp_c": 5,
        "humidity_pct": 55.5,
        "door_open": False,
        "battery_pct": 88.0,
        "lat": 52.5,
        "lon": 13.4,
    }
    r = validate_reading(item)
    assert (r.seq, r.ts_ms, r.temp_c, r.humidity_pct, r.door_open, r.battery_pct, r.lat, r.lon) == (
        7,
        1700000000000,
        5.0,
        55.5,
        False,
        88.0,
        52.5,
        13.4,
    )
    assert r.digest == hashlib.sha256(canonical_json(item)).hexdigest()[:32]


@pytest.mark.parametrize(
    ("item", "reason", "match"),
    [
        ("x", RejectReason.MALFORMED, "JSON object"),
        ({"ts": 1, "temp_c": 4}, RejectReason.MALFORMED, "seq is required"),
        ({"seq": True, "ts": 1, "temp_c": 4}, RejectReason.MALFORMED, "seq is required"),
        ({"seq": -1, "ts": 1, "temp_c": 4}, RejectReason.MALFORMED, "between 0"),
        ({"seq": 2**63, "ts": 1, "temp_c": 4}, RejectReason.MALFORMED, "between 0"),
        ({"seq": 1, "ts": 1.5, "temp_c": 4}, RejectReason.MALFORMED, "ts is required"),
        ({"seq": 1, "ts": 1}, RejectReason.MALFORMED, "temp_c is required"),
        ({"seq": 1, "ts": 1, "temp_c": "4"}, RejectReason.MALFORMED, "must be a number"),
        ({"seq": 1, "ts": 1, "temp_c": False}, RejectReason.MALFORMED, "must be a number"),
        ({"seq": 1, "ts": 1, "temp_c": 1e400}, RejectReason.MALFORMED, "finite"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "humidity_pct": None}, RejectReason.MALFORMED, "humidity_pct"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "door_open": 1}, RejectReason.MALFORMED, "door_open"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "door_open": None}, RejectReason.MALFORMED, "door_open"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "firmware": "x"}, RejectReason.MALFORMED, "unexpected fields"),
        ({"seq": 1, "ts": 1, "temp_c": 100.01}, RejectReason.SENSOR_FAULT, "temp_c"),
        ({"seq": 1, "ts": 1, "temp_c": -273.15}, RejectReason.SENSOR_FAULT, "temp_c"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "humidity_pct": 101}, RejectReason.SENSOR_FAULT, "humidity"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "battery_pct": -1}, RejectReason.SENSOR_FAULT, "battery"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "lat": 90.5}, RejectReason.SENSOR_FAULT, "lat"),
        ({"seq": 1, "ts": 1, "temp_c": 4, "lon": -181}, RejectReason.SENSOR_FAULT, "lon"),
    ],
)
def test_reading_refusals(item: object, reason: RejectReason, match: str) -> None:
    with pytest.raises(EnvelopeError, match=match) as info:
        validate_reading(item)
    assert info.value.code is reason
