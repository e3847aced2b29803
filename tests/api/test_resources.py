"""Read resources: shapes, pagination, filters, nothing internal leaking, problem+json errors, metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from oracle.context import Context
from tests.api.conftest import INSURED, POOL, SUBJECT_A, SUBJECT_B, Keys, seed
from tests.api.test_auth import assert_problem


@pytest.fixture
def world(ctx: Context, keys: Keys) -> Keys:
    seed(ctx)
    return keys


def get(client: TestClient, keys: Keys, path: str, **params: object) -> dict[str, object]:
    resp = client.get(path, params=params, headers=keys.header("viewer"))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_attestations_join_the_outbox_and_show_top_three_factors(client: TestClient, world: Keys) -> None:
    one = get(client, world, "/v1/attestations/1")
    assert one["subject"] == SUBJECT_A
    assert one["kind"] == "drought_severity"
    assert one["value"] == "1250000"
    assert one["value_display"] == "1.25"
    assert one["signers"] == ["0x" + "33" * 20]
    assert [f["name"] for f in one["factors"]] == ["f0", "f1", "f2"]  # type: ignore[union-attr]
    tx = one["transaction"]
    assert isinstance(tx, dict)
    assert tx["state"] == "confirmed"
    assert tx["gas_used"] == 91_000
    assert tx["tx_hash"] == "0x" + "ab" * 32
    verdict = get(client, world, "/v1/attestations/2")
    assert verdict["kind"] == "coldchain_verdict"
    assert verdict["value_display"] == "breach"
    assert get(client, world, "/v1/attestations/3")["transaction"] is None
    assert_problem(client.get("/v1/attestations/99", headers=world.header("viewer")), 404, "not_found")


def test_pagination_walks_every_item_once(client: TestClient, world: Keys) -> None:
    seen: list[int] = []
    offset: object = 0
    while offset is not None:
        page = get(client, world, "/v1/attestations", limit=2, offset=offset)
        assert page["total"] == 5
        assert page["limit"] == 2
        seen += [i["id"] for i in page["items"]]  # type: ignore[attr-defined]
        offset = page["next_offset"]
    assert seen == [5, 4, 3, 2, 1]
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}):
        resp = client.get("/v1/attestations", params=bad, headers=world.header("viewer"))
        body = assert_problem(resp, 422, "invalid_request")
        assert body["errors"]
        assert str(next(iter(bad))) in str(body["errors"])


def test_filters(client: TestClient, world: Keys) -> None:
    assert get(client, world, "/v1/attestations", subject=SUBJECT_A)["total"] == 3
    assert get(client, world, "/v1/attestations", subject="shipment:b")["total"] == 2
    assert get(client, world, "/v1/attestations", kind="coldchain_verdict")["total"] == 2
    assert get(client, world, "/v1/attestations", status="confirmed")["total"] == 1
    assert get(client, world, "/v1/attestations", tx_state="pending")["total"] == 1
    window = get(client, world, "/v1/attestations", since="2026-03-03T00:00:00Z", until="2026-03-05T00:00:00")
    assert [i["epoch"] for i in window["items"]] == [3, 2]  # type: ignore[attr-defined]
    resp = client.get(
        "/v1/attestations",
        params={"since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        headers=world.header("viewer"),
    )
    assert_problem(resp, 422, "bad_time_range")
    assert get(client, world, "/v1/policies", status="active")["total"] == 2
    assert (
        get(client, world, "/v1/policies", pool=POOL.upper().replace("0X", "0x"), subject=SUBJECT_A)["total"]
        == 3
    )
    assert get(client, world, f"/v1/policies/{POOL}/0")["status"] == "paid"
    assert get(client, world, "/v1/payouts", policy_id=0, insured=INSURED)["total"] == 1
    assert get(client, world, "/v1/payouts", policy_id=1)["total"] == 0
    assert get(client, world, "/v1/shipments", status="voided")["total"] == 1
    assert get(client, world, f"/v1/shipments/{SUBJECT_B}")["status"] == "voided"
    assert get(client, world, "/v1/observations", kind="telemetry", subject="shipment:b")["total"] == 1
    assert get(client, world, "/v1/observations", since="2026-03-02T00:00:00Z")["total"] == 0
    assert get(client, world, "/v1/rejects", reason="bad_signature")["total"] == 1
    assert get(client, world, "/v1/rejects", source="http")["items"][0]["message"] == "not JSON"  # type: ignore[index]
    assert get(client, world, "/v1/outbox", state="confirmed")["total"] == 1
    assert get(client, world, "/v1/subscriptions", active=True)["total"] == 0
    resp = client.get("/v1/attestations", params={"subject": "bad\x00name"}, headers=world.header("viewer"))
    assert_problem(resp, 422, "invalid_request")


def test_internal_columns_and_urls_do_not_leak(client: TestClient, world: Keys) -> None:
    resp = client.get("/v1/outbox/1", headers=world.header("viewer"))
    body = resp.json()
    assert "raw_tx" not in body
    assert "calldata" not in body
    assert "version" not in body
    assert "apikey" not in resp.text
    assert "rpc.example" not in resp.text
    assert body["last_error"] == "rpc <url> failed"


def test_models_list_the_shipped_cards(client: TestClient, world: Keys) -> None:
    page = get(client, world, "/v1/models")
    import json

    from oracle.api.routes.models import artifacts_dir

    on_disk = {json.loads(p.read_text())["model_id_hex"] for p in artifacts_dir().glob("*/*.card.json")}
    assert on_disk
    assert {m["model_id"][2:] for m in page["items"]} == on_disk
    first = page["items"][0]  # type: ignore[index]
    assert get(client, world, f"/v1/models/{first['model_id']}")["name"] == first["name"]
    assert get(client, world, "/v1/models", kind=first["kind"])["total"] >= 1
    assert_problem(client.get("/v1/models/" + "0" * 64, headers=world.header("viewer")), 404, "not_found")


def test_unknown_paths_and_methods_are_problems(client: TestClient, world: Keys) -> None:
    assert_problem(client.get("/v1/nothing", headers=world.header("viewer")), 404, "not_found")
    assert_problem(client.put("/v1/attestations", headers=world.header("viewer")), 405, "method_not_allowed")
    resp = client.post(
        "/v1/apikeys",
        content=b"{not json",
        headers={**world.header("admin"), "Content-Type": "application/json"},
    )
    assert_problem(resp, 422, "invalid_request")


def test_metrics_cover_http_and_the_database(client: TestClient, world: Keys) -> None:
    get(client, world, "/v1/attestations/1")
    client.get("/v1/attestations/2", headers={"X-API-Key": "bad"})
    text = client.get("/metrics").text
    assert 'oracle_outbox_rows{state="confirmed"} 1.0' in text
    assert 'oracle_outbox_rows{state="pending"} 1.0' in text
    assert "oracle_gas_used_total 91000.0" in text
    assert 'oracle_last_report_age_seconds{subject="region:a"}' in text
    assert "oracle_metrics_db_up 1.0" in text
    assert (
        'oracle_http_requests_total{method="GET",route="/v1/attestations/{attestation_id}",status="200"} 1.0'
        in text
    )
    assert 'route="/v1/attestations/{attestation_id}",status="401"} 1.0' in text
    assert client.get("/healthz").status_code == 200
