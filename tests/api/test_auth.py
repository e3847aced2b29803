"""Authentication, roles, rate limits and body-size limits of the operators' API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from oracle.api.app import create_app
from oracle.api.keys import Role, create_key, verify_key
from oracle.api.limits import ApiLimits, TokenBuckets
from oracle.context import Context
from oracle.storage.api_tables import ApiKeyRow
from tests.api.conftest import Keys


def assert_problem(resp: object, status: int, reason: str) -> dict[str, object]:
    from httpx import Response

    assert isinstance(resp, Response)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status
    assert body["reason"] == reason
    assert body["type"] == f"urn:oracle:problem:{reason}"
    assert body["title"]
    assert body["detail"]
    assert body["instance"]
    return dict(body)


def test_missing_and_invalid_keys_are_401_with_a_bearer_challenge(client: TestClient, keys: Keys) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer " + keys.viewer[:-1] + ("A" if keys.viewer[-1] != "A" else "B")},
        {"X-API-Key": "ok_000000000000_" + "x" * 43},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        resp = client.get("/v1/attestations", headers=headers)
        body = assert_problem(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert keys.viewer not in resp.text
        assert "nope" not in str(body)


def test_both_headers_authenticate(client: TestClient, keys: Keys) -> None:
    assert client.get("/v1/attestations", headers=keys.header("viewer")).status_code == 200
    assert client.get("/v1/attestations", headers={"X-API-Key": keys.viewer}).status_code == 200


def test_roles_are_enforced_with_403(client: TestClient, keys: Keys) -> None:
    new_key = {"role": "viewer", "name": "dash"}
    for role in ("viewer", "operator"):
        resp = client.post("/v1/apikeys", json=new_key, headers=keys.header(role))
        body = assert_problem(resp, 403, "forbidden")
        assert role in str(body["detail"])
        assert "admin" in str(body["detail"])
        assert_problem(client.get("/v1/audit", headers=keys.header(role)), 403, "forbidden")
    resp = client.post(
        "/v1/attestations",
        json={"subject": {"namespace": "region", "name": "x"}, "period": "2026-06"},
        headers=keys.header("viewer"),
    )
    assert_problem(resp, 403, "forbidden")
    assert client.post("/v1/apikeys", json=new_key, headers=keys.header("admin")).status_code == 201


def test_keys_are_stored_hashed_and_revocation_is_immediate(
    ctx: Context, client: TestClient, keys: Keys
) -> None:
    created = client.post(
        "/v1/apikeys", json={"role": "viewer", "name": "temp"}, headers=keys.header("admin")
    )
    secret = created.json()["secret_key"]
    key_id = created.json()["key"]["id"]
    assert secret.startswith("ok_")
    assert created.json()["key"]["role"] == "viewer"
    with ctx.sessions() as s:
        stored = [(r.prefix, r.secret_sha256, r.name) for r in s.scalars(select(ApiKeyRow))]
    assert all(secret.split("_", 2)[2] not in "".join(row) for row in stored)
    listing = client.get("/v1/apikeys", headers=keys.header("admin"))
    assert secret not in listing.text
    assert listing.json()["total"] == 4
    assert client.get("/v1/models", headers={"X-API-Key": secret}).status_code == 200
    revoked = client.delete(f"/v1/apikeys/{key_id}", headers=keys.header("admin"))
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    assert_problem(client.get("/v1/models", headers={"X-API-Key": secret}), 401, "unauthorized")
    assert_problem(client.delete("/v1/apikeys/999", headers=keys.header("admin")), 404, "not_found")


def test_an_admin_cannot_revoke_its_own_key(client: TestClient, keys: Keys) -> None:
    me = [
        k
        for k in client.get("/v1/apikeys", headers=keys.header("admin")).json()["items"]
        if k["role"] == "admin"
    ]
    assert_problem(client.delete(f"/v1/apikeys/{me[0]['id']}", headers=keys.header("admin")), 409, "own_key")


def test_verify_key_refuses_lookalikes(ctx: Context) -> None:
    with ctx.sessions() as s:
        made = create_key(s, role=Role.OPERATOR, name="ops")
        s.commit()
        assert verify_key(s, made.secret_key) == made.key
        prefix = made.key.prefix
        assert verify_key(s, f"ok_{prefix}_" + "A" * 43) is None
        assert verify_key(s, made.secret_key + "x") is None
        assert verify_key(s, "") is None


@pytest.fixture
def limited(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, limits=ApiLimits(rate_per_s=0.2, burst=3, max_body_bytes=1000))) as c:
        yield c


def test_rate_limit_is_per_key_and_answers_429_with_retry_after(limited: TestClient, keys: Keys) -> None:
    for _ in range(3):
        assert limited.get("/v1/rejects", headers=keys.header("viewer")).status_code == 200
    resp = limited.get("/v1/rejects", headers=keys.header("viewer"))
    assert_problem(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["retry-after"]) <= 5
    # Another key has its own bucket; health endpoints are never limited or authenticated.
    assert limited.get("/v1/rejects", headers=keys.header("operator")).status_code == 200
    assert limited.get("/healthz").status_code == 200


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert buckets.take(1) == 0.0
    assert buckets.take(1) == 0.0
    assert buckets.take(1) == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take(1) == 0.0
    assert buckets.take(2) == 0.0


def test_oversized_bodies_are_413_by_header_and_by_stream(limited: TestClient, keys: Keys) -> None:
    big = b'{"role": "viewer", "name": "' + b"x" * 2000 + b'"}'
    resp = limited.post(
        "/v1/apikeys", content=big, headers={**keys.header("admin"), "Content-Type": "application/json"}
    )
    assert_problem(resp, 413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    resp = limited.post(
        "/v1/apikeys", content=chunks(), headers={**keys.header("admin"), "Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in resp.request.headers}
    assert_problem(resp, 413, "body_too_large")
    assert limited.get("/v1/apikeys", headers=keys.header("admin")).json()["total"] == 3
