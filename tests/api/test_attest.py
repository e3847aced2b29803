"""POST /v1/attestations asks for an evaluation: the oracle evaluates the subject from the inputs it holds
(the synthetic drought world of tests/drought/world.py), and a real signer service signs only the report
the decision engine computed. A caller can name no value, epoch or model; an incomplete decision is
signed never; repeats are idempotent; a missing or unreachable signer is a problem."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import select

from oracle.chain.deploy import Deployment
from oracle.config import Settings
from oracle.context import Context, open_context
from oracle.reports import subject_id
from oracle.scheduler.evaluations import run_drought
from oracle.signer.app import create_app as create_signer_app
from oracle.signer.epochs import MemoryEpochStore
from oracle.signer.keys import SigningKey
from oracle.signer.policy import Domain, RateLimiter, SigningPolicy
from oracle.signer.service import SigningService
from oracle.storage.api_tables import AuditEntry
from oracle.storage.tables import OutboxRow, ReportRow
from tests.api.conftest import Keys
from tests.api.test_auth import assert_problem
from tests.drought.world import PERIOD, build_data_dir

CHAIN_ID = 31337
ROUTER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SIGNER_KEY = "0x" + "5a" * 32  # made up for this test
TOKEN = "test-token-" + "t" * 24


@pytest.fixture
def signer_url() -> Iterator[str]:
    """The real signer HTTP app under uvicorn on a free loopback port (fresh epoch memory per test)."""
    service = SigningService(
        SigningKey.from_hex(SIGNER_KEY),
        policy=SigningPolicy(domains=frozenset([Domain.of(CHAIN_ID, ROUTER)])),
        store=MemoryEpochStore(),
        limiter=RateLimiter(),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_signer_app(service, token=TOKEN), log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "signer did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_data_dir(tmp_path_factory.mktemp("attest-world"))


@pytest.fixture
def ctx(world_dir: Path, tmp_path: Path) -> Iterator[Context]:
    """A private copy of the drought world (SQLite and blobs): this module's API context."""
    data = tmp_path / "data"
    shutil.copytree(world_dir, data)
    context = open_context(Settings(env="dev", data_dir=data, _env_file=None))  # type: ignore[call-arg]
    yield context
    context.close()


@pytest.fixture
def configured(ctx: Context, signer_url: str) -> Context:
    ctx.extras["deployment"] = Deployment(
        chain_id=CHAIN_ID, block=0, deployer=ROUTER, addresses={"OracleRouter": ROUTER}
    )
    ctx.extras["signer"] = (signer_url, TOKEN)
    return ctx


BODY = {"subject": {"namespace": "region", "name": "dry"}, "period": PERIOD}


def test_requested_evaluation_signs_the_report_the_oracle_computed(
    configured: Context, client: TestClient, keys: Keys
) -> None:
    resp = client.post("/v1/attestations", json={**BODY, "note": "storm"}, headers=keys.header("operator"))
    assert resp.status_code == 201, resp.text
    made = resp.json()
    # The value is what the decision engine computes from the stored inputs, recomputed here on its own.
    expected = run_drought(configured, region_id="dry", period=PERIOD, post=False).report
    assert expected is not None
    assert made["subject"] == "0x" + subject_id("region", "dry").hex()
    assert made["value"] == str(expected.value)
    assert made["epoch"] == expected.epoch
    assert made["model_id"] == "0x" + expected.model_id.hex()
    assert made["manual"] is False
    assert len(made["factors"]) == 3
    assert made["signers"] == [Account.from_key(SIGNER_KEY).address]
    assert made["transaction"]["state"] == "pending"
    assert TOKEN not in resp.text
    with configured.sessions() as s:
        out = s.scalar(select(OutboxRow).where(OutboxRow.report_id == made["id"]))
        assert out is not None
        assert out.to_address == ROUTER
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.resource == "attestations")))
    assert len(entries) == 1
    assert entries[0].key_name == "test-operator"
    assert "dry" in entries[0].summary
    assert "storm" in entries[0].summary
    # Asking again evaluates the same inputs to the same report: idempotent, nothing new signed.
    again = client.post("/v1/attestations", json=BODY, headers=keys.header("operator"))
    assert again.status_code == 200
    assert again.json()["id"] == made["id"]
    with configured.sessions() as s:
        assert len(list(s.scalars(select(OutboxRow)))) == 1


CALLER_CHOSEN: list[dict[str, object]] = [
    {"value": "5"},
    {"kind": "drought_severity", "value": "0"},
    {"epoch": 2**63 - 1},
    {"observed_at": 1_700_000_000},
    {"model_id": "0x" + "00" * 32},
    {"inputs_root": "0x" + "00" * 32},
]


def test_a_caller_can_choose_no_value_epoch_or_model(
    configured: Context, client: TestClient, keys: Keys
) -> None:
    for change in CALLER_CHOSEN:
        resp = client.post("/v1/attestations", json={**BODY, **change}, headers=keys.header("operator"))
        assert_problem(resp, 422, "invalid_request")
    with configured.sessions() as s:
        assert s.scalar(select(ReportRow)) is None
        assert s.scalar(select(OutboxRow)) is None


def test_an_incomplete_decision_is_409_and_nothing_is_signed(
    configured: Context, client: TestClient, keys: Keys
) -> None:
    resp = client.post(
        "/v1/attestations", json={**BODY, "period": "2019-01"}, headers=keys.header("operator")
    )
    body = assert_problem(resp, 409, "decision_incomplete")
    assert "incomplete" in str(body["detail"])
    with configured.sessions() as s:
        assert s.scalar(select(ReportRow)) is None


BAD_REQUESTS: list[tuple[dict[str, object], int, str]] = [
    ({"subject": {"namespace": "flood", "name": "x"}}, 422, "unknown_subject"),
    ({"period": None}, 422, "period_required"),
    ({"period": "2026-6"}, 422, "invalid_request"),
    ({"subject": {"namespace": "Region:", "name": "x"}}, 422, "invalid_request"),
    ({"subject": {"namespace": "region", "name": "atlantis"}}, 404, "not_found"),
    ({"subject": {"namespace": "shipment", "name": "nobody-bound"}}, 404, "not_found"),
]


def test_bad_requests_are_problems_with_a_reason(configured: Context, client: TestClient, keys: Keys) -> None:
    for change, status, reason in BAD_REQUESTS:
        resp = client.post("/v1/attestations", json={**BODY, **change}, headers=keys.header("operator"))
        assert_problem(resp, status, reason)
    with configured.sessions() as s:
        assert s.scalar(select(ReportRow)) is None


def test_without_a_signer_it_is_503_and_nothing_is_recorded(
    ctx: Context, client: TestClient, keys: Keys
) -> None:
    resp = client.post("/v1/attestations", json=BODY, headers=keys.header("operator"))
    body = assert_problem(resp, 503, "signer_not_configured")
    assert "signer not configured" in str(body["detail"])
    with ctx.sessions() as s:
        assert s.scalar(select(ReportRow)) is None
    status = client.get("/v1/signer", headers=keys.header("admin")).json()
    assert status["configured"] is False


def test_an_unreachable_signer_is_503(ctx: Context, client: TestClient, keys: Keys) -> None:
    ctx.extras["deployment"] = Deployment(
        chain_id=CHAIN_ID, block=0, deployer=ROUTER, addresses={"OracleRouter": ROUTER}
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ctx.extras["signer"] = (f"http://127.0.0.1:{dead}", TOKEN)
    resp = client.post("/v1/attestations", json=BODY, headers=keys.header("operator"))
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert TOKEN not in resp.text
    with ctx.sessions() as s:
        assert s.scalar(select(OutboxRow)) is None
