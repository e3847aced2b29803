"""The external adapter (``POST /adapter``) through the real app and Starlette's TestClient, on a copy of
the synthetic drought world: every answer in the bridge's shapes, async answers PATCHed to a real local
HTTP receiver."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from oracle.api.app import create_app
from oracle.chainlink.adapter import AdapterOptions, router
from oracle.chainlink.tasks import scaled
from oracle.context import Context
from oracle.decisions.drought import evaluate_drought
from oracle.storage.decision_tables import Decision
from tests.chainlink.conftest import open_world
from tests.drought.world import PERIOD

TOKEN = "bridge-test-token"


@pytest.fixture(scope="module")
def ctx(world_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    context = open_world(world_template, tmp_path_factory.mktemp("adapter") / "data")
    yield context
    context.close()


def client_for(ctx: Context, *, settings: dict[str, Any] | None = None, **options: Any) -> TestClient:
    """A client of the app over ``ctx`` with adapter ``options`` and ``settings`` overrides."""
    if options:
        ctx = dataclasses.replace(ctx, extras={**ctx.extras, "chainlink_adapter": AdapterOptions(**options)})
    if settings:
        ctx = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update=settings))
    app = create_app(ctx)
    app.include_router(router)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(ctx: Context) -> Iterator[TestClient]:
    with client_for(ctx) as c:
        yield c


def bridge(data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "run-1", "data": data, "meta": {"oracleRequest": {}}, **extra}


def test_drought_severity_answers_the_evaluation(ctx: Context, client: TestClient) -> None:
    r = client.post("/adapter", json=bridge({"task": "drought-severity", "region": "dry", "period": PERIOD}))
    assert r.status_code == 200, r.text
    body = r.json()
    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.score is not None
    assert body["jobRunID"] == "run-1"
    assert (body["statusCode"], body["providerStatusCode"]) == (200, 200)
    assert body["result"] == body["data"]["result"] == scaled(outcome.score, 10_000)
    assert body["data"]["score"] == pytest.approx(outcome.score)
    assert body["data"]["attestationId"] == outcome.decision_id  # not posted: the decision names it
    assert [f["feature"] for f in body["data"]["factors"]] == [f["feature"] for f in outcome.factors]
    assert "error" not in body

    wet = client.post(
        "/adapter", json=bridge({"task": "drought-severity", "region": "wet", "period": PERIOD, "times": 100})
    ).json()
    assert wet["result"] < body["result"] // 100  # the wet region is far from drought
    assert wet["result"] == scaled(wet["data"]["score"], 100)


def test_attestation_id_is_the_report_once_posted(ctx: Context, client: TestClient) -> None:
    from oracle.attest import record_report

    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.report is not None
    with ctx.sessions() as s:
        row, _ = record_report(s, outcome.report, subject_name="region:dry")
        decision = s.get(Decision, outcome.decision_id)
        assert decision is not None
        decision.report_id = row.id
        s.commit()
        report_id = row.id
    r = client.post("/adapter", json=bridge({"task": "drought-severity", "region": "dry", "period": PERIOD}))
    assert r.json()["data"]["attestationId"] == report_id
    assert r.json()["data"]["decisionId"] == outcome.decision_id


@pytest.mark.parametrize(
    ("data", "status", "name"),
    [
        ({"task": "weather", "region": "dry", "period": PERIOD}, 400, "unknown_task"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-6"}, 400, "bad_period"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-13"}, 400, "bad_period"),
        ({"task": "drought-severity", "period": PERIOD}, 400, "missing_region"),
        ({"task": "drought-severity", "region": "dry", "period": PERIOD, "times": 0}, 400, "bad_times"),
        ({"task": "drought-severity", "region": "dry", "period": PERIOD, "times": 1.5}, 400, "bad_times"),
        ({"task": "drought-severity", "region": "atlantis", "period": PERIOD}, 404, "unknown_region"),
        ({"task": "drought-severity", "region": "dry", "period": "2026-07"}, 422, "incomplete"),
        ({"task": "coldchain-breach", "shipment": "no-such-shipment"}, 404, "unknown_shipment"),
        ({"task": "coldchain-breach"}, 400, "missing_shipment"),
    ],
)
def test_refusals_use_the_bridge_error_shape(
    client: TestClient, data: dict[str, Any], status: int, name: str
) -> None:
    r = client.post("/adapter", json=bridge(data))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["jobRunID"] == "run-1"
    assert (body["status"], body["statusCode"], body["error"]["name"]) == ("errored", status, name)
    assert body["error"]["message"]
    assert "result" not in body


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"id": "x"}', b'{"id": "x", "data": "drought"}', b"\xff\xfe", b""],
)
def test_malformed_bodies_are_400_in_the_same_shape(client: TestClient, raw: bytes) -> None:
    r = client.post("/adapter", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["status"] == "errored"
    assert r.json()["error"]["name"] == "bad_request"


def test_bearer_token_is_required_when_configured(ctx: Context) -> None:
    settings = ctx.settings.model_copy(update={"chainlink_bridge_token": SecretStr(TOKEN)})
    guarded = dataclasses.replace(ctx, settings=settings)
    data = bridge({"task": "drought-severity", "region": "atlantis", "period": PERIOD})
    with client_for(guarded) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            r = c.post("/adapter", json=data, headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["name"] == "unauthorized"
            assert TOKEN not in r.text
        ok = c.post("/adapter", json=data, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 404  # past the token check: the region is unknown


def test_slow_evaluation_without_response_url_times_out_with_504(ctx: Context) -> None:
    with client_for(ctx, timeout_s=0.01) as c:
        r = c.post("/adapter", json=bridge({"task": "drought-severity", "region": "wet", "period": PERIOD}))
    assert r.status_code == 504
    assert r.json()["error"]["name"] == "timeout"


class Receiver:
    """A real HTTP server on a free port that records PATCH bodies (the node's resume endpoint)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base}/v2/resume/run-1"

    @property
    def allowed(self) -> dict[str, Any]:
        """Settings that make this receiver the configured Chainlink node."""
        return {"chainlink_node_urls": [self.base]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_long_evaluation_answers_pending_then_patches_the_result(ctx: Context, receiver: Receiver) -> None:
    options = {"sync_wait_s": 0.0, "response_token": "node-incoming-token"}
    with client_for(ctx, settings=receiver.allowed, **options) as c:
        data = {"task": "drought-severity", "region": "dry", "period": PERIOD, "times": 1000}
        r = c.post("/adapter", json=bridge(data, responseURL=receiver.url))
    assert r.status_code == 200
    assert r.json() == {"jobRunID": "run-1", "pending": True}
    assert receiver.arrived.wait(timeout=60)
    (patched,) = receiver.bodies
    outcome = evaluate_drought(ctx.sessions, ctx.blobs, region_id="dry", period=PERIOD)
    assert outcome.score is not None
    assert patched["data"]["result"] == scaled(outcome.score, 1000)
    assert "error" not in patched
    assert receiver.headers[0]["Authorization"] == "Bearer node-incoming-token"


def test_async_failure_is_patched_as_an_error(ctx: Context, receiver: Receiver) -> None:
    with client_for(ctx, settings=receiver.allowed, sync_wait_s=0.0) as c:
        data = {"task": "drought-severity", "region": "atlantis", "period": PERIOD}
        r = c.post("/adapter", json=bridge(data, responseURL=receiver.url))
    assert r.json()["pending"] is True
    assert receiver.arrived.wait(timeout=30)
    (patched,) = receiver.bodies
    assert patched["error"]["name"] == "unknown_region"
    assert "data" not in patched
    assert "Authorization" not in receiver.headers[0]


def test_fast_answer_with_response_url_is_given_directly(ctx: Context, receiver: Receiver) -> None:
    with client_for(ctx, settings=receiver.allowed, sync_wait_s=30.0) as c:
        data = {"task": "drought-severity", "region": "atlantis", "period": PERIOD}
        r = c.post("/adapter", json=bridge(data, responseURL=receiver.url))
    assert r.status_code == 404
    assert r.json()["error"]["name"] == "unknown_region"
    assert not receiver.arrived.wait(timeout=0.5)
