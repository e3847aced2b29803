"""1,000 fuzzed payloads through the worker's own validate-and-store function: never a crash, every
payload leaves a trace (a stored reading or a recorded refusal), and a fixed share of them is well-formed
and correctly signed, so the signature check and the store are reached, not only the early refusals."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ingest.telemetry import IncomingMessage, TelemetryIngest, sign_envelope
from oracle.devices import Kek
from oracle.storage.tables import Reject, TelemetryReading

from .conftest import Db, add_device, make_ingest, now_ms

_NUM = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=3)
)
_READING = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.one_of(st.integers(-5, 2**64), _NUM),
        "ts": st.one_of(st.integers(0, 2 * 10**12 + 10**13), _NUM),
        "temp_c": st.one_of(st.floats(-150, 150), _NUM),
        "humidity_pct": _NUM,
        "door_open": st.one_of(st.booleans(), _NUM),
        "battery_pct": _NUM,
        "lat": _NUM,
        "lon": _NUM,
        "extra": _NUM,
    },
)
_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=10,
)


#: Shares of the generated payloads (out of 10): every branch of validate-and-store is reached for sure.
KINDS = ["valid"] * 4 + ["bad_sig"] * 2 + ["unknown_device", "raw_bytes", "json", "broken_reading"]


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(kind, device, body or raw bytes): ``valid`` readings are schema-correct and plausible, and the
    test signs them with the device's real secret; ``bad_sig`` are the same but signed with another key
    or altered after signing."""
    kind = KINDS[draw(st.integers(0, len(KINDS) - 1))]
    if kind == "raw_bytes":
        return kind, "fuzz-1", draw(st.binary(max_size=200))
    if kind == "json":
        return kind, "fuzz-1", draw(_JSONISH)
    if kind == "broken_reading":
        return (
            kind,
            draw(st.sampled_from(["fuzz-1", "a/b"])),
            draw(st.one_of(_READING, st.lists(_READING, max_size=4))),
        )
    reading = {
        "temp_c": draw(st.floats(-60.0, 60.0, allow_nan=False)),
        "door_open": draw(st.booleans()),
        "battery_pct": draw(st.floats(0.0, 100.0)),
    }
    return kind, "ghost" if kind == "unknown_device" else "fuzz-1", reading


def test_fuzzed_payloads_reach_every_branch_and_never_crash(sqlite_db: Db, kek: Kek, tmp_path: Path) -> None:
    secret = add_device(sqlite_db, kek, "fuzz-1")
    ingest: TelemetryIngest = make_ingest(sqlite_db, kek, tmp_path)
    base = now_ms() - 3_600_000
    seen = {"n": 0, "seq": 0}
    outcome: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}

    def traces() -> int:
        with sqlite_db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Reject)) or 0) + int(
                s.scalar(select(func.count()).select_from(TelemetryReading)) or 0
            )

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(payloads())
    def run(case: tuple[str, str, Any]) -> None:
        kind, device, body = case
        if kind in ("valid", "bad_sig", "unknown_device"):
            seen["seq"] += 1  # fresh (seq, ts) per valid reading: no duplicates, in order
            body = {**body, "seq": seen["seq"], "ts": base + seen["seq"] * 1000}
            envelope = sign_envelope(body, secret if kind != "bad_sig" else b"\x01" * 32)
            if kind == "bad_sig" and seen["seq"] % 2:  # the right key, but the body altered afterwards
                envelope = sign_envelope(body, secret)
                envelope["body"] = {**body, "temp_c": body["temp_c"] + 1.0}
            payload = json.dumps(envelope).encode()
        elif kind == "raw_bytes":
            payload = body
        elif kind == "json":
            payload = json.dumps(body).encode()
        else:
            payload = json.dumps({"body": body, "sig": "x"}).encode()
        before = traces()
        out = ingest.process([IncomingMessage(device, payload)])
        m = out.messages[0]
        assert traces() > before or m.duplicates > 0  # every payload leaves a trace
        result = "stored" if m.accepted else (m.rejects[0].reason.value if m.rejects else "duplicate")
        outcome[result] += 1
        by_kind.setdefault(kind, Counter())[result] += 1
        seen["n"] += 1

    run()
    report = json.dumps({"outcomes": outcome, "by_kind": by_kind}, sort_keys=True)
    print(f"fuzz outcomes: {report}")
    assert seen["n"] == 1000
    # Each branch was reached, and each kind ended where it must.
    assert outcome["stored"] >= 250, report
    assert outcome["bad_signature"] >= 100, report
    assert outcome["malformed"] >= 100, report
    assert outcome["unknown_device"] >= 50, report
    assert set(by_kind["valid"]) == {"stored"}, report
    assert set(by_kind["bad_sig"]) == {"bad_signature"}, report
    assert set(by_kind["unknown_device"]) == {"unknown_device"}, report
    assert "stored" not in by_kind["raw_bytes"], report
    assert "stored" not in by_kind["json"], report
