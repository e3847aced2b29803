"""Devices that sign with their own key (issue 13 item 1): the oracle stores only public keys.

Over the real mosquitto and the real API under uvicorn, on SQLite and PostgreSQL: ES256 and EdDSA
envelopes are stored; a signature by another key is refused and leaves only a bounded reject row (no
blob); a rotated key verifies up to its last seq and no further; a revoked device's later readings are
refused; HS256 still works and is shown as weaker; and an auditor re-verifies a stored reading from the
content store's bytes and the public key with ``cryptography`` alone.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import func, select

from ingest.telemetry.envelope import sign_envelope, sign_envelope_with_key
from ingest.telemetry.worker import IngestWorker, WorkerConfig
from oracle.api.app import create_app
from oracle.api.telemetry import router
from oracle.config import load_settings
from oracle.context import Context, open_context
from oracle.device_keys import public_pem
from oracle.devices import (
    list_devices,
    load_kek,
    register_device,
    register_device_key,
    revoke_device,
    rotate_device_key,
)
from oracle.devstack.broker import BrokerProcess
from oracle.errors import ValidationError
from oracle.storage.tables import DeviceKey, Observation, Reject, TelemetryReading

from .conftest import START, Db, Kek, make_ingest, now_ms, reading
from .mqtt_helpers import publish_all, publisher, run_worker, wait_until, worker_auth

ROOT = Path(__file__).resolve().parents[2]


def _es256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _eddsa() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _payload(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


def _auditor_verifies(public_key_pem: str, payload: bytes) -> bool:
    """An auditor's check, written from the spec with ``cryptography`` only: canonical JSON of body,
    ES256 as raw r‖s, EdDSA as Ed25519."""
    from cryptography.exceptions import InvalidSignature

    doc = json.loads(payload)
    message = json.dumps(doc["body"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    sig = bytes.fromhex(doc["sig"])
    key = serialization.load_pem_public_key(public_key_pem.encode())
    try:
        if doc["alg"] == "ES256":
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        else:
            if doc["alg"] != "EdDSA" or not isinstance(key, ed25519.Ed25519PublicKey):
                return False
            key.verify(sig, message)
    except InvalidSignature:
        return False
    return True


def _blob_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


# --- over the real broker ---------------------------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.parametrize("writer_process", [True, False], ids=["writer-process", "in-thread"])
def test_es256_and_eddsa_over_mqtt_stored_forgery_refused_auditor_verifies(
    mosquitto: BrokerProcess, db: Db, kek: Kek, tmp_path: Path, writer_process: bool
) -> None:
    es, ed, thief = _es256(), _eddsa(), _es256()
    register_device_key(
        db.sessions, device_id="k-es", public_key_pem=public_pem(es), shipment_id="SHP-K", valid_from=START
    )
    register_device_key(
        db.sessions, device_id="k-ed", public_key_pem=public_pem(ed), shipment_id="SHP-K", valid_from=START
    )
    cid = f"keys-worker-{random.getrandbits(32)}"
    config = WorkerConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=cid,
        share_group=cid,
        writer_process=writer_process,
        **worker_auth(mosquitto),
    )
    blob_dir = tmp_path / "blobs"
    worker = IngestWorker(make_ingest(db, kek, tmp_path), config)
    thread = run_worker(worker)
    t = now_ms() - 60_000
    good = [
        ("k-es", _payload(sign_envelope_with_key([reading(i, t + i) for i in range(1, 4)], es))),
        ("k-ed", _payload(sign_envelope_with_key([reading(i, t + i) for i in range(1, 4)], ed))),
    ]
    pubs = {
        d: publisher(mosquitto.host, mosquitto.port, f"{cid}-{d}", login=mosquitto.device_login(d))
        for d in ("k-es", "k-ed")
    }
    pub = pubs["k-es"]
    try:
        for device, payload in good:
            publish_all(pubs[device], device, [payload])
        wait_until(lambda: worker.stats.messages == 2, 30, "worker did not process the signed envelopes")
        assert db.count_readings("k-es") == 3
        assert db.count_readings("k-ed") == 3
        blobs_before = _blob_files(blob_dir)
        # A forged ES256 envelope: right device, right alg, another key (a big one, like the review's junk).
        forged = _payload(sign_envelope_with_key([reading(i, t + i) for i in range(4, 2000)], thief))
        assert len(forged) > 60_000
        publish_all(pub, "k-es", [forged])
        wait_until(lambda: worker.stats.messages == 3, 30, "worker did not process the forged envelope")
    finally:
        worker.stop()
        thread.join(10)
        for p in pubs.values():
            p.disconnect()
            p.loop_stop()
    assert db.count_readings("k-es") == 3
    assert _blob_files(blob_dir) == blobs_before  # nothing of the forgery reached the content store
    with db.sessions() as s:
        reject = s.scalars(select(Reject)).one()
        assert (reject.reason, reject.subject, reject.cid) == ("bad_signature", "k-es", None)
        assert len(reject.message) < 300
        # The auditor: the stored batch bytes and the device's public key, nothing of the oracle's code.
        cids = set(s.scalars(select(TelemetryReading.batch_cid)))
        keys = {k.device_id: k.public_key for k in s.scalars(select(DeviceKey))}
    from oracle.storage.blobs import FilesystemBlobStore

    store = FilesystemBlobStore(blob_dir)
    checked = 0
    for batch_cid in cids:
        for message in cbor2.loads(store.get(batch_cid)):
            device = message["device"]
            assert _auditor_verifies(keys[device], bytes(message["payload"]))
            assert not _auditor_verifies(
                keys["k-ed" if device == "k-es" else "k-es"], bytes(message["payload"])
            )
            checked += 1
    assert checked == 2
    assert not _auditor_verifies(keys["k-es"], forged)


# --- over the real API ------------------------------------------------------------------------------------


@dataclass
class Api:
    url: str
    ctx: Context

    def post(self, device_id: str, payload: dict[str, Any] | bytes) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else _payload(payload)
        return httpx.post(f"{self.url}/v1/telemetry/{device_id}", content=body, timeout=10)

    def forget(self) -> None:
        """Drop the pipeline's device cache (the service picks up key changes within its TTL)."""
        from oracle.api.telemetry import telemetry_ingest

        telemetry_ingest(self.ctx).forget()

    def stored(self) -> dict[str, int]:
        with self.ctx.sessions() as s:
            batches = s.scalar(
                select(func.count()).select_from(Observation).where(Observation.kind == "telemetry_batch")
            )
            readings = s.scalar(select(func.count()).select_from(TelemetryReading))
        return {
            "blobs": _blob_files(self.ctx.settings.blob_dir),
            "batches": batches or 0,
            "readings": readings or 0,
        }

    def reasons(self) -> list[str]:
        with self.ctx.sessions() as s:
            return list(s.scalars(select(Reject.reason).order_by(Reject.id)))


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[Api]:
    """The API app under uvicorn on a free loopback port."""
    ctx = open_context(load_settings(data_dir=tmp_path, database_url=database_url))
    app = create_app(ctx)
    app.include_router(router)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.02)
    yield Api(f"http://127.0.0.1:{port}", ctx)
    server.should_exit = True
    thread.join(5)
    sock.close()
    ctx.close()


def _assert_problem(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == reason
    assert r.json()["status"] == status


def test_http_keys_accepted_forgery_401_unknown_404_nothing_stored(api: Api) -> None:
    es, ed = _es256(), _eddsa()
    for device, key in (("h-es", es), ("h-ed", ed)):
        register_device_key(
            api.ctx.sessions,
            device_id=device,
            public_key_pem=public_pem(key),
            shipment_id="S",
            valid_from=START,
        )
    t = now_ms()
    for device, key in (("h-es", es), ("h-ed", ed)):
        r = api.post(device, sign_envelope_with_key([reading(1, t), reading(2, t + 1)], key))
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2
    before = api.stored()
    body = [reading(3, t + 2)]
    other = _es256()
    _assert_problem(api.post("h-es", sign_envelope_with_key(body, other)), 401, "bad_signature")
    # The right key's signature over other content, and an Ed25519 signature claimed as ES256.
    tampered = sign_envelope_with_key(body, es)
    tampered["body"] = [reading(3, t + 2, 9.5)]
    _assert_problem(api.post("h-es", tampered), 401, "bad_signature")
    relabelled = {**sign_envelope_with_key(body, ed), "alg": "ES256"}
    _assert_problem(api.post("h-es", relabelled), 401, "bad_signature")
    # An HMAC envelope for a key device is refused, whatever the secret.
    _assert_problem(api.post("h-es", sign_envelope(body, b"\x07" * 32)), 401, "bad_signature")
    _assert_problem(api.post("nobody-here", sign_envelope_with_key(body, es)), 404, "unknown_device")
    assert api.stored() == before
    assert api.reasons() == ["bad_signature"] * 4 + ["unknown_device"]


def test_rotation_boundary_and_revocation_over_http(api: Api) -> None:
    old, new = _eddsa(), _es256()
    register_device_key(
        api.ctx.sessions, device_id="rot-1", public_key_pem=public_pem(old), shipment_id="S", valid_from=START
    )
    t = now_ms()
    assert api.post("rot-1", sign_envelope_with_key([reading(1, t)], old)).json()["accepted"] == 1
    rotate_device_key(
        api.ctx.sessions, device_id="rot-1", public_key_pem=public_pem(new), old_valid_through_seq=5
    )
    api.forget()
    # Old key: fine up to seq 5, refused at 6, also inside a batch that crosses the boundary.
    assert (
        api.post("rot-1", sign_envelope_with_key([reading(4, t + 4), reading(5, t + 5)], old)).status_code
        == 202
    )
    _assert_problem(api.post("rot-1", sign_envelope_with_key([reading(6, t + 6)], old)), 401, "stale_key")
    crossing = sign_envelope_with_key([reading(5, t + 5), reading(6, t + 6)], old)
    _assert_problem(api.post("rot-1", crossing), 401, "stale_key")
    # New key: fine past the boundary.
    r = api.post("rot-1", sign_envelope_with_key([reading(6, t + 6), reading(7, t + 7)], new))
    assert (r.status_code, r.json()["accepted"]) == (202, 2)
    assert api.stored()["readings"] == 5
    # Revocation: the last accepted seq is 7; seq 8 is refused with either key, a redelivery of 7 is not.
    assert revoke_device(api.ctx.sessions, "rot-1") == 7
    api.forget()
    _assert_problem(api.post("rot-1", sign_envelope_with_key([reading(8, t + 8)], new)), 403, "revoked_key")
    _assert_problem(api.post("rot-1", sign_envelope_with_key([reading(8, t + 8)], old)), 403, "revoked_key")
    again = api.post("rot-1", sign_envelope_with_key([reading(7, t + 7)], new))
    assert (again.status_code, again.json()["duplicates"]) == (202, 1)
    assert api.stored()["readings"] == 5
    assert api.reasons() == ["stale_key", "stale_key", "revoked_key", "revoked_key"]


def test_hs256_still_accepted_and_shown_weaker(api: Api) -> None:
    secret = register_device(
        api.ctx.sessions, load_kek(api.ctx.settings), device_id="legacy", shipment_id="S", valid_from=START
    )
    es = _es256()
    register_device_key(api.ctx.sessions, device_id="modern", public_key_pem=public_pem(es))
    t = now_ms()
    plain = sign_envelope([reading(1, t)], secret)  # no alg: HS256
    assert api.post("legacy", plain).json()["accepted"] == 1
    labelled = {**sign_envelope([reading(2, t + 1)], secret), "alg": "HS256"}
    assert api.post("legacy", labelled).json()["accepted"] == 1
    # An HS256 device cannot be talked into an asymmetric alg.
    _assert_problem(api.post("legacy", sign_envelope_with_key([reading(3, t)], es)), 401, "bad_signature")
    views = {d.device_id: d.auth_view for d in list_devices(api.ctx.sessions)}
    assert views["legacy"]["strength"] == "weaker"
    assert "oracle holds" in views["legacy"]["note"]
    assert views["modern"] == {"alg": "ES256", "strength": "device-held key"}


def test_register_refuses_other_curves_rsa_and_private_keys(db: Db) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValidationError, match="only P-256"):
        register_device_key(db.sessions, device_id="x1", public_key_pem=public_pem(p384))
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValidationError, match=r"RSA.*not accepted"):
        register_device_key(db.sessions, device_id="x2", public_key_pem=rsa_pem)
    private = _eddsa().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValidationError, match="PRIVATE key"):
        register_device_key(db.sessions, device_id="x3", public_key_pem=private)
    with pytest.raises(ValidationError, match="not a PEM public key"):
        register_device_key(db.sessions, device_id="x4", public_key_pem=b"-----BEGIN PUBLIC KEY-----\nAAAA\n")
    assert list_devices(db.sessions) == []


# --- the CLI ----------------------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oracle.commands.telemetry", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_add_rotate_revoke_by_public_key(tmp_path: Path) -> None:
    env = {**os.environ, "ORACLE_DATA_DIR": str(tmp_path)}
    first, second = _es256(), _eddsa()
    (tmp_path / "first.pem").write_bytes(public_pem(first))
    (tmp_path / "second.pem").write_bytes(public_pem(second))
    (tmp_path / "p384.pem").write_bytes(public_pem(ec.generate_private_key(ec.SECP384R1())))
    added = _cli(
        ["devices", "add", "cli-1", "--public-key", str(tmp_path / "first.pem"), "--shipment", "S1"], env
    )
    assert added.returncode == 0, added.stderr
    assert "ES256 key" in added.stdout
    refused = _cli(["devices", "add", "cli-2", "--public-key", str(tmp_path / "p384.pem")], env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: ECDSA key on curve secp384r1: only P-256 (secp256r1, ES256) is accepted"
    ]
    rotated = _cli(
        [
            "devices",
            "rotate",
            "cli-1",
            "--public-key",
            str(tmp_path / "second.pem"),
            "--old-valid-through-seq",
            "41",
        ],
        env,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "EdDSA key" in rotated.stdout
    assert _cli(["devices", "revoke", "cli-1"], env).stdout.startswith("device cli-1 revoked after seq -1")
    listed = json.loads(_cli(["devices", "list", "--json"], env).stdout)
    assert [d["device_id"] for d in listed] == ["cli-1"]
    (device,) = listed
    assert device["auth"] == {"alg": "EdDSA", "strength": "device-held key"}
    assert [(k["alg"], k["valid_through_seq"]) for k in device["keys"]] == [("EdDSA", None), ("ES256", 41)]
    assert (device["status"], device["revoked_after_seq"], device["kek_id"]) == ("revoked", -1, None)
    assert device["bindings"][0]["shipment_id"] == "S1"
    # No KEK was ever needed for a key device: nothing secret to seal.
    assert not (tmp_path / "keys" / "device-kek").exists()


def test_the_guides_python_examples_produce_envelopes_the_oracle_accepts(
    db: Db, kek: Kek, tmp_path: Path
) -> None:
    """The copy-paste examples in ingest/telemetry/README.md, run as written, against the real pipeline."""
    import re

    guide = (ROOT / "ingest" / "telemetry" / "README.md").read_text()
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "sign_es256" in b]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the example writes logger-42.pub.pem
    try:
        scope: dict[str, Any] = {}
        exec(example, scope)  # noqa: S102 - our own documentation
    finally:
        os.chdir(cwd)
    register_device_key(
        db.sessions,
        device_id="guide-es",
        public_key_pem=(tmp_path / "logger-42.pub.pem").read_bytes(),
        shipment_id="S",
        valid_from=START,
    )
    ed = _eddsa()
    register_device_key(
        db.sessions, device_id="guide-ed", public_key_pem=public_pem(ed), shipment_id="S", valid_from=START
    )
    t = now_ms()
    es_payload = json.dumps(scope["sign_es256"]([reading(1, t)], scope["key"])).encode()
    ed_payload = json.dumps(scope["sign_eddsa"]([reading(1, t)], ed)).encode()
    from ingest.telemetry.pipeline import IncomingMessage

    out = make_ingest(db, kek, tmp_path).process(
        [IncomingMessage("guide-es", es_payload), IncomingMessage("guide-ed", ed_payload)]
    )
    assert [m.accepted for m in out.messages] == [1, 1]


def test_a_tampered_key_row_refuses_the_device_without_a_crash(
    db: Db, kek: Kek, tmp_path: Path, api: Api
) -> None:
    """A stored public key that no longer parses (a corrupted or hand-edited row) stores nothing: the
    pipeline records why, the HTTP route answers 503 and the service keeps running."""
    from sqlalchemy import update

    from ingest.telemetry.pipeline import IncomingMessage

    key = _eddsa()  # the API and the pipeline below share one database
    register_device_key(
        db.sessions, device_id="bent", public_key_pem=public_pem(key), shipment_id="S", valid_from=START
    )
    with db.sessions() as s:
        s.execute(
            update(DeviceKey).where(DeviceKey.device_id == "bent").values(public_key="-----BEGIN nonsense")
        )
        s.commit()
    payload = _payload(sign_envelope_with_key([reading(1, now_ms())], key))
    out = make_ingest(db, kek, tmp_path).process([IncomingMessage("bent", payload)])
    assert out.accepted == 0
    assert out.cid == ""  # nothing went into the content store
    (refusal,) = out.messages[0].rejects
    assert (refusal.reason.value, refusal.message.startswith("credentials unusable")) == (
        "unknown_device",
        True,
    )
    r = api.post("bent", payload)
    assert (r.status_code, r.json()["reason"]) == (503, "credentials_unusable")
    assert api.stored()["readings"] == 0
    assert "nonsense" not in r.text
