"""POST /v1/telemetry/{device_id}: the gateway path through the same pipeline as MQTT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ingest.telemetry import sign_envelope
from oracle.api.app import create_app
from oracle.api.telemetry import router
from oracle.config import load_settings
from oracle.context import open_context
from oracle.devices import load_kek, register_device
from oracle.storage.tables import Reject

from .conftest import START, now_ms, reading


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, bytes, object]]:
    ctx = open_context(load_settings(data_dir=tmp_path, database_url=database_url))
    secret = register_device(
        ctx.sessions, load_kek(ctx.settings), device_id="gw-1", shipment_id="SHP-H", valid_from=START
    )
    app = create_app(ctx)
    app.include_router(router)
    with TestClient(app) as c:
        yield c, secret, ctx
    ctx.close()


def test_accepts_counts_duplicates_and_per_reading_rejects(client: tuple[TestClient, bytes, object]) -> None:
    c, secret, ctx = client
    t = now_ms()
    env = sign_envelope([reading(1, t), reading(2, t + 1, 120.0), reading(3, t + 2)], secret)
    r = c.post("/v1/telemetry/gw-1", content=json.dumps(env))
    assert r.status_code == 202
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 1)
    assert body["rejects"][0]["reason"] == "sensor_fault"
    assert body["rejects"][0]["seq"] == 2
    again = c.post("/v1/telemetry/gw-1", content=json.dumps(env)).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    # Refused before anything is stored (tests/api/test_telemetry_auth.py has the rest).
    forged = c.post("/v1/telemetry/gw-1", content=json.dumps({"body": env["body"], "sig": "0" * 64}))
    assert forged.status_code == 401
    assert forged.json()["reason"] == "bad_signature"
    unknown = c.post("/v1/telemetry/gw-2", content=json.dumps(env))
    assert unknown.status_code == 404
    assert unknown.json()["reason"] == "unknown_device"
    with ctx.sessions() as s:  # type: ignore[attr-defined]
        assert set(s.scalars(select(Reject.source))) == {"http"}
    metrics = c.get("/metrics").text
    assert 'oracle_telemetry_rejects_total{reason="bad_signature",source="http"}' in metrics


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        (b"not json", 400, "malformed"),
        (b'{"body": {}}', 400, "malformed"),
        (b"{" + b" " * 300_000 + b"}", 413, "too_large"),
    ],
)
def test_unusable_requests_get_problem_json(
    client: tuple[TestClient, bytes, object], payload: bytes, status: int, reason: str
) -> None:
    c, _secret, ctx = client
    r = c.post("/v1/telemetry/gw-1", content=payload)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == status
    assert problem["reason"] == reason
    assert problem["title"]
    assert problem["detail"]
    with ctx.sessions() as s:  # type: ignore[attr-defined]
        assert list(s.scalars(select(Reject.reason))) == [reason]
