"""POST /v1/attestations: a manual report is recorded, signed over HTTP by a real signer service and
queued in the outbox, with an audit entry; repeats are idempotent, conflicts and a missing signer are
problems."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import select

from oracle.chain.deploy import Deployment
from oracle.context import Context
from oracle.reports import subject_id
from oracle.signer.app import create_app as create_signer_app
from oracle.signer.epochs import MemoryEpochStore
from oracle.signer.keys import SigningKey
from oracle.signer.policy import Domain, RateLimiter, SigningPolicy
from oracle.signer.service import SigningService
from oracle.storage.api_tables import AuditEntry
from oracle.storage.tables import OutboxRow, ReportRow
from tests.api.conftest import Keys
from tests.api.test_auth import assert_problem

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


@pytest.fixture
def configured(ctx: Context, signer_url: str) -> Context:
    ctx.extras["deployment"] = Deployment(
        chain_id=CHAIN_ID, block=0, deployer=ROUTER, addresses={"OracleRouter": ROUTER}
    )
    ctx.extras["signer"] = (signer_url, TOKEN)
    return ctx


BODY = {"subject": {"namespace": "region", "name": "marsabit"}, "kind": "drought_severity", "value": "2.5"}


def test_manual_attestation_is_signed_queued_and_audited(
    configured: Context, client: TestClient, keys: Keys
) -> None:
    resp = client.post("/v1/attestations", json={**BODY, "note": "storm"}, headers=keys.header("operator"))
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["subject"] == "0x" + subject_id("region", "marsabit").hex()
    assert made["value"] == "2500000"
    assert made["epoch"] == 1
    assert made["manual"] is True
    assert made["signers"] == [Account.from_key(SIGNER_KEY).address]
    assert made["transaction"]["state"] == "pending"
    assert TOKEN not in resp.text
    with configured.sessions() as s:
        out = s.scalar(select(OutboxRow).where(OutboxRow.report_id == made["id"]))
        assert out is not None
        assert out.to_address == ROUTER
        assert len(out.calldata) > 4
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.resource == "attestations")))
    assert len(entries) == 1
    assert entries[0].key_name == "test-operator"
    assert entries[0].method == "POST"
    assert entries[0].resource_id == str(made["id"])
    assert "marsabit" in entries[0].summary
    # The next manual report for the subject gets the next epoch.
    again = client.post("/v1/attestations", json={**BODY, "value": 3}, headers=keys.header("operator"))
    assert again.status_code == 201
    assert again.json()["epoch"] == 2
    audit = client.get("/v1/audit", params={"resource": "attestations"}, headers=keys.header("admin")).json()
    assert audit["total"] == 2


def test_repeats_are_idempotent_and_conflicts_refused(
    configured: Context, client: TestClient, keys: Keys
) -> None:
    body = {**BODY, "epoch": 7, "observed_at": 1_700_000_000}
    first = client.post("/v1/attestations", json=body, headers=keys.header("operator"))
    second = client.post("/v1/attestations", json=body, headers=keys.header("operator"))
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    conflict = client.post("/v1/attestations", json={**body, "value": "1"}, headers=keys.header("operator"))
    assert_problem(conflict, 422, "epoch_conflict")
    with configured.sessions() as s:
        assert len(list(s.scalars(select(ReportRow)))) == 1
        assert len(list(s.scalars(select(OutboxRow)))) == 1


BAD_REPORTS: list[tuple[dict[str, object], str]] = [
    ({"value": "5.000001"}, "value_out_of_range"),
    ({"kind": "coldchain_verdict", "value": "1.5"}, "value_out_of_range"),
    ({"kind": "coldchain_verdict", "value": 3}, "value_out_of_range"),
    ({"kind": "flood"}, "invalid_request"),
    ({"value": "NaN"}, "invalid_request"),
    ({"epoch": 2**63}, "invalid_request"),
    ({"subject": {"namespace": "Region:", "name": "x"}}, "invalid_request"),
    ({"extra": 1}, "invalid_request"),
]


def test_bad_reports_are_422_with_a_reason(configured: Context, client: TestClient, keys: Keys) -> None:
    for change, reason in BAD_REPORTS:
        resp = client.post("/v1/attestations", json={**BODY, **change}, headers=keys.header("operator"))
        assert_problem(resp, 422, reason)
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
