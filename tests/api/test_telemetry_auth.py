"""POST /v1/telemetry/{device}: authenticated before anything is stored, and rate-limited per device and
per source address (issue 16, item 13: 500 unauthenticated posts all got 202 and added 2.9 MB to the
blob store).

An unusable, unsigned, forged or unknown post gets a problem+json answer and leaves one bounded reject row
(no payload, no blob, no observation, no reading); a post over a limit gets 429 with Retry-After and leaves
nothing at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ingest.telemetry import sign_envelope
from oracle.api.app import create_app
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.devices import load_kek, register_device, revoke_device
from oracle.storage.tables import Observation, Reject, TelemetryReading
from tests.telemetry.conftest import START, now_ms, reading

Factory = Callable[..., tuple[TestClient, Context]]


@pytest.fixture
def make_client(tmp_path: Path, database_url: str) -> Iterator[Factory]:
    opened: list[tuple[TestClient, Context]] = []

    def make(**settings: Any) -> tuple[TestClient, Context]:
        ctx = open_context(
            Settings(
                data_dir=tmp_path / "data",
                database_url=database_url,
                _env_file=None,  # type: ignore[call-arg]
                **settings,
            )
        )
        client = TestClient(create_app(ctx))
        client.__enter__()
        opened.append((client, ctx))
        return client, ctx

    yield make
    for client, ctx in opened:
        client.__exit__(None, None, None)
        ctx.close()


def _device(ctx: Context, device_id: str) -> bytes:
    return register_device(
        ctx.sessions, load_kek(ctx.settings), device_id=device_id, shipment_id="SHP-A", valid_from=START
    )


def _stored(ctx: Context) -> dict[str, int]:
    """What a post can leave behind: blob files, telemetry batches, readings, reject rows."""
    blobs = sum(1 for p in ctx.settings.blob_dir.rglob("*") if p.is_file())
    with ctx.sessions() as s:
        batches = s.scalar(
            select(func.count()).select_from(Observation).where(Observation.kind == "telemetry_batch")
        )
        readings = s.scalar(select(func.count()).select_from(TelemetryReading))
        rejects = s.scalar(select(func.count()).select_from(Reject))
    return {"blobs": blobs, "batches": batches or 0, "readings": readings or 0, "rejects": rejects or 0}


def _post(client: TestClient, device_id: str, payload: Any) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(f"/v1/telemetry/{device_id}", content=body)


def test_unauthenticated_posts_store_nothing_but_a_bounded_reject(make_client: Factory) -> None:
    client, ctx = make_client()
    secret = _device(ctx, "gw-1")
    _device(ctx, "gw-old")
    revoke_device(ctx.sessions, "gw-old")
    t = now_ms()
    good = sign_envelope([reading(i, t + i) for i in range(1, 40)], secret)
    padded = {"body": good["body"], "sig": "0" * 64}  # a few KB each, as in the review's run
    before = _stored(ctx)
    cases = [
        ("gw-1", padded, 401, "bad_signature"),
        ("gw-1", sign_envelope(good["body"], b"\x01" * 32), 401, "bad_signature"),
        ("gw-nobody", good, 404, "unknown_device"),
        ("gw-old", sign_envelope(good["body"], b"\x02" * 32), 403, "revoked_key"),
        ("gw-1", b"not json", 400, "malformed"),
        ("gw-1", b'{"body": {}}', 400, "malformed"),
        ("bad id!", good, 400, "malformed"),
    ]
    for device_id, payload, status, reason in cases:
        for _ in range(5):
            r = _post(client, device_id, payload)
            assert r.status_code == status, (device_id, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["reason"] == reason
            assert "cid" not in r.json()
    after = _stored(ctx)
    assert {k: after[k] - before[k] for k in after} == {
        "blobs": 0,
        "batches": 0,
        "readings": 0,
        "rejects": 5 * len(cases),
    }
    with ctx.sessions() as s:
        rows = s.scalars(select(Reject)).all()
    assert {r.cid for r in rows} == {None}  # the reason is kept, the payload is not
    assert all(len(r.message) <= 300 and r.source == "http" for r in rows)
    assert all(r.meta.get("address") == "testclient" for r in rows)

    ok = _post(client, "gw-1", good)  # the real device still gets through, and is stored
    assert ok.status_code == 202, ok.text
    assert ok.json()["accepted"] == 39
    stored = _stored(ctx)
    assert (stored["batches"], stored["readings"]) == (before["batches"] + 1, before["readings"] + 39)


def test_per_device_limit_counts_only_authenticated_posts(make_client: Factory) -> None:
    client, ctx = make_client(telemetry_http_device_rate_per_s=0.01, telemetry_http_device_burst=3)
    secret = _device(ctx, "gw-1")
    other = _device(ctx, "gw-2")
    t = now_ms()
    for _ in range(10):  # forged posts naming gw-1 do not use up gw-1's allowance
        assert _post(client, "gw-1", {"body": [reading(1, t)], "sig": "0" * 64}).status_code == 401
    codes = [
        _post(client, "gw-1", sign_envelope([reading(i, t + i)], secret)).status_code for i in range(1, 6)
    ]
    assert codes == [202, 202, 202, 429, 429]
    limited = _post(client, "gw-1", sign_envelope([reading(9, t + 9)], secret))
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["reason"] == "rate_limited"
    assert _post(client, "gw-2", sign_envelope([reading(1, t)], other)).status_code == 202
    with ctx.sessions() as s:
        seqs = s.scalars(select(TelemetryReading.seq).where(TelemetryReading.device_id == "gw-1")).all()
    assert sorted(seqs) == [1, 2, 3]  # what was refused with 429 was not stored


def test_per_source_limit_holds_before_any_work(make_client: Factory) -> None:
    client, ctx = make_client(telemetry_http_source_rate_per_s=0.01, telemetry_http_source_burst=5)
    secret = _device(ctx, "gw-1")
    t = now_ms()
    codes = [_post(client, "gw-1", {"body": [reading(1, t)], "sig": "0" * 64}).status_code for _ in range(8)]
    assert codes == [401] * 5 + [429] * 3
    before = _stored(ctx)
    late = _post(client, "gw-1", sign_envelope([reading(1, t)], secret))
    assert late.status_code == 429  # the address is over its limit, whoever it signs for
    assert int(late.headers["Retry-After"]) >= 1
    assert _stored(ctx) == before  # a refusal over the limit writes nothing, not even a reject row
