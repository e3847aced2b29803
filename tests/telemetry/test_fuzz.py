"""1,000 fuzzed payloads through the worker's own validate-and-store function: never a crash, every
payload leaves a trace (a stored reading or a recorded refusal)."""

from __future__ import annotations

import contextlib
import json
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


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    kind = draw(st.sampled_from(["signed", "signed", "bad_sig", "raw_bytes", "json"]))
    device = draw(st.sampled_from(["fuzz-1", "fuzz-1", "ghost", "a/b"]))
    if kind == "raw_bytes":
        return device, draw(st.binary(max_size=200)), False
    if kind == "json":
        return device, json.dumps(draw(_JSONISH)).encode(), False
    body: Any = draw(st.one_of(_READING, st.lists(_READING, min_size=0, max_size=4)))
    return device, json.dumps({"body": body, "sig": "x"}).encode(), kind == "signed"


def test_fuzzed_payloads_are_stored_or_rejected_never_crash(sqlite_db: Db, kek: Kek, tmp_path: Path) -> None:
    secret = add_device(sqlite_db, kek, "fuzz-1")
    ingest: TelemetryIngest = make_ingest(sqlite_db, kek, tmp_path)
    base = now_ms()
    seen = {"n": 0}

    def traces() -> int:
        with sqlite_db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Reject)) or 0) + int(
                s.scalar(select(func.count()).select_from(TelemetryReading)) or 0
            )

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(payloads())
    def run(case: tuple[str, bytes, bool]) -> None:
        device, payload, sign = case
        if sign:
            body = json.loads(payload)["body"]
            if isinstance(body, dict) and isinstance(body.get("ts"), int) and body["ts"] > base:
                body["ts"] = base  # keep some valid readings in the mix
            # An infinite float cannot be signed: then the unsigned form goes in.
            with contextlib.suppress(ValueError):
                payload = json.dumps(sign_envelope(body, secret)).encode()
        before = traces()
        out = ingest.process([IncomingMessage(device, payload)])
        m = out.messages[0]
        assert traces() > before or m.duplicates > 0
        seen["n"] += 1

    run()
    assert seen["n"] == 1000
