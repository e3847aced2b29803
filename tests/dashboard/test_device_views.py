"""How each device signs, in the API's device views, a shipment's detail and a decision's custody: a device
with its own key shows its algorithm and key fingerprint; HS256 is marked weaker (the oracle holds the
secret). Through the app (Starlette TestClient, real SQLite); never a secret in any answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fastapi.testclient import TestClient

from oracle.context import Context
from oracle.device_keys import load_public_key, public_pem
from oracle.devices import load_kek, register_device, register_device_key, revoke_device
from oracle.storage.tables import TelemetryReading
from tests.dashboard.conftest import make_app
from tests.dashboard.test_views import _coldchain_manifest, _report


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(make_app(ctx)) as c:
        yield c


def test_devices_view_and_shipment_detail_mark_hs256_weaker(
    client: TestClient, ctx: Context, viewer_key: str
) -> None:
    secret = register_device(ctx.sessions, load_kek(ctx.settings), device_id="old-hmac", shipment_id="SHP-D")
    es_pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
    register_device_key(ctx.sessions, device_id="new-es", public_key_pem=es_pem, shipment_id="SHP-D")
    ed_pem = public_pem(ed25519.Ed25519PrivateKey.generate())
    register_device_key(ctx.sessions, device_id="other-ed", public_key_pem=ed_pem, shipment_id="SHP-E")
    revoke_device(ctx.sessions, "other-ed")
    with ctx.sessions() as s:
        s.add(
            TelemetryReading(
                device_id="new-es",
                seq=1,
                ts_ms=1_780_000_000_000,
                shipment_id="SHP-D",
                temp_c=4.0,
                digest="0" * 32,
                batch_cid="b",
                source="mqtt",
                received_ms=1_780_000_000_000,
            )
        )
        s.commit()
    h = {"X-API-Key": viewer_key}
    assert client.get("/v1/dashboard/devices").status_code == 401
    r = client.get("/v1/dashboard/devices", headers=h)
    assert r.status_code == 200
    items = {d["device_id"]: d for d in r.json()["items"]}
    assert items["old-hmac"]["alg"] == "HS256"
    assert items["old-hmac"]["strength"] == "weaker"
    assert "oracle holds" in items["old-hmac"]["note"]
    assert "key_fingerprint" not in items["old-hmac"]
    assert items["new-es"] == {
        "device_id": "new-es",
        "status": "active",
        "alg": "ES256",
        "strength": "device-held key",
        "key_fingerprint": load_public_key(es_pem).fingerprint,
        "revoked_after_seq": None,
    }
    assert (items["other-ed"]["alg"], items["other-ed"]["status"]) == ("EdDSA", "revoked")
    assert items["other-ed"]["revoked_after_seq"] == -1
    assert secret.hex() not in r.text
    detail = client.get("/v1/dashboard/shipments/SHP-D", headers=h).json()
    assert [(d["device_id"], d["alg"], d["strength"]) for d in detail["devices"]] == [
        ("new-es", "ES256", "device-held key"),
        ("old-hmac", "HS256", "weaker"),
    ]


def test_custody_says_how_the_batch_was_signed(client: TestClient, ctx: Context, viewer_key: str) -> None:
    # The hand-made manifest's telemetry batch comes from logger-4: an HS256 device here.
    register_device(ctx.sessions, load_kek(ctx.settings), device_id="logger-4", shipment_id="SHP-3")
    manifest_cid, c = _coldchain_manifest(ctx)
    report_id = _report(ctx, {"manifest_cid": manifest_cid})
    d = client.get(
        f"/v1/dashboard/attestations/{report_id}/custody", headers={"X-API-Key": viewer_key}
    ).json()
    raw = {r["cid"]: r for r in d["raw_inputs"]}
    assert raw[c["batch"]]["label"] == (
        "3 readings from logger-4 · shipment SHP-3 · HS256 (weaker: the oracle holds the secret)"
    )
