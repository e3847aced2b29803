"""Replaying a cold-chain decision checks the devices' own signatures with their public keys (issue 13
item 1): an honest decision matches, one whose registered key was swapped (an operator pretending a forged
batch was the device's) names the device, and an HS256 device is noted as unchecked and weaker. The same
offline, from a bundle that carries the public keys. Real ingest pipeline, SQLite, content store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oracle.decisions.coldchain import ShipmentTerms, evaluate_shipment
from oracle.device_keys import public_pem
from oracle.reports import report_digest
from oracle.storage.blobs import FilesystemBlobStore
from oracle.verify.bundle import export_bundle, verify_bundle
from oracle.verify.device_signatures import DeviceAuth, device_auth, telemetry_messages
from oracle.verify.replay import AttestedReport, Verification, replay
from oracle.verify.sources import StoreSource
from tests.coldchain.helpers import Fleet, day_ago, temperatures
from tests.outbox.helpers import open_db, sqlite_url


@pytest.fixture
def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_db(sqlite_url(tmp_path)), FilesystemBlobStore(tmp_path / "blobs")


def _attested(report) -> AttestedReport:  # type: ignore[no-untyped-def]
    router = "0x" + "ab" * 20
    return AttestedReport(
        report=report,
        chain_id=31337,
        router=router,
        tx_hash="0x" + "00" * 32,
        block_number=1,
        report_hash=report_digest(report, chain_id=31337, router=router),
    )


def _signature_checks(result: Verification) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in result.checks if c.name.startswith("signatures ")}


def test_replay_verifies_each_devices_signatures_with_its_public_key(stores, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sessions, blobs = stores
    fleet = Fleet(sessions, blobs)
    start = day_ago()
    fleet.add("logger-es", "SHP-SIG", start_s=start, key=ec.generate_private_key(ec.SECP256R1()))
    fleet.add("logger-ed", "SHP-SIG", start_s=start, key=ed25519.Ed25519PrivateKey.generate())
    fleet.add("logger-hs", "SHP-SIG", start_s=start)
    temps = temperatures(6, excursion=(2, 2, 46.0))
    for device in ("logger-es", "logger-ed", "logger-hs"):
        assert fleet.publish(device, temps, start_s=start, batch=12) == len(temps)
    outcome = evaluate_shipment(
        sessions, blobs, shipment_id="SHP-SIG", terms=ShipmentTerms(profile="refrigerated")
    )
    assert outcome.report is not None
    attested = _attested(outcome.report)
    with sessions() as s:
        keys = device_auth(s)
    assert keys["logger-hs"] == DeviceAuth(alg="HS256")  # no key material for an HMAC device

    honest = replay(StoreSource(blobs), outcome.manifest_cid, attested, device_keys=keys)
    assert honest.ok, honest.first_mismatch
    checks = _signature_checks(honest)
    assert set(checks) == {"signatures logger-es", "signatures logger-ed"}
    # The decision's inputs are the devices' messages as sent; count them per device from the manifest.
    manifest = json.loads(blobs.get(outcome.manifest_cid))
    per_device: dict[str, int] = {}
    for cid in manifest["inputs"]:
        for device, _ in telemetry_messages(blobs.get(cid)) or []:
            per_device[device] = per_device.get(device, 0) + 1
    assert per_device["logger-es"] >= 1
    assert checks["signatures logger-es"] == (
        "MATCH",
        f"{per_device['logger-es']} message(s) verify under the device's ES256 public key(s)",
    )
    assert checks["signatures logger-ed"][0] == "MATCH"
    hs_note = f"logger-hs signs HS256: its {per_device['logger-hs']} message(s) were not checked"
    assert any(n.startswith(hs_note) and "weaker" in n for n in honest.notes)
    # Without keys the replay is as before: no signature checks.
    assert _signature_checks(replay(StoreSource(blobs), outcome.manifest_cid, attested)) == {}

    # An operator who swapped logger-es's registered key for one of their own cannot pass the replay.
    swapped = dict(keys)
    swapped["logger-es"] = DeviceAuth(
        alg="ES256", keys=((public_pem(ec.generate_private_key(ec.SECP256R1())).decode(), None),)
    )
    forged = replay(StoreSource(blobs), outcome.manifest_cid, attested, device_keys=swapped)
    assert not forged.ok
    status, detail = _signature_checks(forged)["signatures logger-es"]
    assert status == "MISMATCH"
    assert "bad_signature" in detail
    assert _signature_checks(forged)["signatures logger-ed"][0] == "MATCH"

    # Offline: the bundle carries the public keys (and only those), and the check runs without a database.
    bundle = export_bundle(
        StoreSource(blobs),
        manifest_cid=outcome.manifest_cid,
        attested=attested,
        directory=tmp_path / "bundle",
        device_keys=keys,
    )
    doc = json.loads((bundle / "bundle.json").read_text())
    assert set(doc["device_keys"]) == {"logger-es", "logger-ed", "logger-hs"}
    assert "PRIVATE" not in (bundle / "bundle.json").read_text()
    offline = verify_bundle(bundle)
    assert offline.ok, offline.first_mismatch
    assert set(_signature_checks(offline)) == {"signatures logger-es", "signatures logger-ed"}
    assert any("public keys are taken from bundle.json" in n for n in offline.notes)
    doc["device_keys"]["logger-ed"] = DeviceAuth(
        alg="EdDSA", keys=((public_pem(ed25519.Ed25519PrivateKey.generate()).decode(), None),)
    ).to_json()
    (bundle / "bundle.json").write_text(json.dumps(doc))
    tampered = verify_bundle(bundle)
    assert _signature_checks(tampered)["signatures logger-ed"][0] == "MISMATCH"
