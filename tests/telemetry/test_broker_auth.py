"""Broker authentication and authorisation, against the real mosquitto started from deploy/mosquitto.conf.

The broker refuses anonymous clients and wrong passwords; a device may publish only on its own telemetry
topic and read only its own receipts; only the ingest workers may subscribe to the telemetry topics (so
no device can join their shared subscription and take a share of the readings); only they may publish
receipts; a device whose broker user is deleted is disconnected and refused from then on.
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.telemetry import sign_envelope
from ingest.telemetry.worker import IngestWorker, WorkerConfig, receipt_topic, telemetry_topic
from oracle.broker_auth import MqttLogin
from oracle.devices import Kek
from oracle.devstack.broker import DYNSEC_FILE, BrokerProcess

from .conftest import Db, add_device, make_ingest, now_ms, reading
from .mqtt_helpers import run_worker, wait_until, worker_auth

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).resolve().parents[2]

NOT_AUTHORIZED = 135  # MQTT v5 reason code (CONNACK, SUBACK, PUBACK)
ACCEPTED = {0, 16}  # PUBACK: success / no matching subscribers (accepted all the same)
REFUSED = {134, NOT_AUTHORIZED}  # CONNACK: bad user name or password / not authorised (mosquitto 2.0: 135)


@dataclass
class Probe:
    """A paho v5 client that records the reason codes the broker answers with."""

    client: mqtt.Client
    connack: list[int] = field(default_factory=list)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    pubacks: dict[int, int] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def _note(self, fn: Any) -> None:
        with self.changed:
            fn()
            self.changed.notify_all()

    def wait(self, what: Any, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(what, timeout), "no answer from the broker"

    def subscribe(self, topic: str) -> int:
        _rc, mid = self.client.subscribe(topic, qos=1)
        self.wait(lambda: mid in self.subacks)
        return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes) -> int:
        mid = self.client.publish(topic, payload, qos=1).mid
        self.wait(lambda: mid in self.pubacks)
        return self.pubacks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def probe(broker: BrokerProcess, login: MqttLogin | None, *, client_id: str | None = None) -> Probe:
    """Connect (anonymously when ``login`` is None) and wait for the CONNACK."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"auth-{random.getrandbits(40):010x}",
        protocol=mqtt.MQTTv5,
    )
    client.reconnect_delay_set(30, 60)  # a refused client must not retry during the test
    if login is not None:
        client.username_pw_set(login.username, login.password)
    p = Probe(client)
    client.on_connect = lambda _c, _u, _f, rc, _p: p._note(lambda: p.connack.append(int(rc.value)))
    client.on_subscribe = lambda _c, _u, mid, rcs, _p: p._note(
        lambda: p.subacks.__setitem__(mid, [int(r.value) for r in rcs])
    )
    client.on_publish = lambda _c, _u, mid, rc, _p: p._note(lambda: p.pubacks.__setitem__(mid, int(rc.value)))
    client.on_message = lambda _c, _u, m: p._note(lambda: p.received.append((m.topic, bytes(m.payload))))
    client.on_disconnect = lambda *_a: p.disconnected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    p.wait(lambda: bool(p.connack))
    return p


def _device(prefix: str) -> str:
    return f"{prefix}-{random.getrandbits(32):08x}"


def test_anonymous_and_wrong_password_are_refused(mosquitto: BrokerProcess) -> None:
    anonymous = probe(mosquitto, None)
    anonymous.close()
    assert anonymous.connack == [NOT_AUTHORIZED]
    device = _device("auth-pw")
    good = mosquitto.device_login(device)
    other_last = "A" if good.password[-1] != "A" else "B"
    wrong = probe(mosquitto, MqttLogin(device, good.password[:-1] + other_last))
    wrong.close()
    assert len(wrong.connack) == 1
    assert wrong.connack[0] in REFUSED
    unknown = probe(mosquitto, MqttLogin(_device("nobody"), good.password))
    unknown.close()
    assert len(unknown.connack) == 1
    assert unknown.connack[0] in REFUSED
    right = probe(mosquitto, good)
    right.close()
    assert right.connack == [0]


def test_a_device_publishes_only_its_own_topic_and_the_worker_stores_only_that(
    mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    a, b = _device("auth-a"), _device("auth-b")
    add_device(sqlite_db, kek, a)
    secret_b = add_device(sqlite_db, kek, b)
    cid = f"auth-worker-{random.getrandbits(32)}"
    worker = IngestWorker(
        make_ingest(sqlite_db, kek, tmp_path),
        WorkerConfig(
            host=mosquitto.host, port=mosquitto.port, client_id=cid, share_group=cid, **worker_auth(mosquitto)
        ),
    )
    thread = run_worker(worker)
    dev_a = probe(mosquitto, mosquitto.device_login(a))
    dev_b = probe(mosquitto, mosquitto.device_login(b))
    try:
        t = now_ms() - 60_000
        # Even a correctly signed envelope of B (say A stole B's key) is refused on B's topic when A sends it.
        forged = json.dumps(sign_envelope([reading(1, t)], secret_b)).encode()
        assert dev_a.publish(telemetry_topic(b), forged) == NOT_AUTHORIZED
        # Nor may a device publish receipts (only the workers do), to another device or to itself.
        assert dev_a.publish(receipt_topic(b), b'{"receipts": []}') == NOT_AUTHORIZED
        assert dev_a.publish(receipt_topic(a), b'{"receipts": []}') == NOT_AUTHORIZED
        time.sleep(1.0)
        assert worker.stats.messages == 0
        assert sqlite_db.count_readings(b) == 0
        # B itself, on its own topic, is stored, and B (only B) gets the receipt.
        assert dev_b.subscribe(receipt_topic(b)) == 1
        own = json.dumps(sign_envelope([reading(2, t + 1)], secret_b)).encode()
        assert dev_b.publish(telemetry_topic(b), own) == 0
        wait_until(lambda: sqlite_db.count_readings(b) == 1, 20, "B's own reading was not stored")
        wait_until(lambda: bool(dev_b.received), 20, "B got no receipt")
        assert [json.loads(p)["receipts"][0]["status"] for _, p in dev_b.received] == ["stored"]
        assert worker.stats.messages == 1
    finally:
        dev_a.close()
        dev_b.close()
        worker.stop()
        thread.join(10)


def test_a_device_cannot_join_the_ingest_group_or_read_other_receipts(
    mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    a, b = _device("auth-thief"), _device("auth-victim")
    secret_b = add_device(sqlite_db, kek, b)
    group = f"auth-group-{random.getrandbits(32)}"
    worker = IngestWorker(
        make_ingest(sqlite_db, kek, tmp_path),
        WorkerConfig(
            host=mosquitto.host,
            port=mosquitto.port,
            client_id=group,
            share_group=group,
            **worker_auth(mosquitto),
        ),
    )
    thread = run_worker(worker)
    thief = probe(mosquitto, mosquitto.device_login(a))
    dev_b = probe(mosquitto, mosquitto.device_login(b))
    try:
        assert thief.subscribe(f"$share/{group}/oracle/v1/telemetry/+") == NOT_AUTHORIZED
        assert thief.subscribe("$share/oracle-ingest/oracle/v1/telemetry/+") == NOT_AUTHORIZED
        assert thief.subscribe("oracle/v1/telemetry/+") == NOT_AUTHORIZED
        assert thief.subscribe(telemetry_topic(b)) == NOT_AUTHORIZED
        assert thief.subscribe(receipt_topic(b)) == NOT_AUTHORIZED
        assert thief.subscribe("oracle/v1/receipts/+") == NOT_AUTHORIZED
        assert thief.subscribe("#") == NOT_AUTHORIZED
        assert thief.subscribe(receipt_topic(a)) == 1  # its own receipts: granted (QoS 1)
        # Had the thief's share subscription been granted, the broker would route about half of these to
        # it and drop them (gaps scored as a breach): every one must reach the worker and be stored.
        t = now_ms() - 60_000
        for seq in range(1, 21):
            payload = json.dumps(sign_envelope([reading(seq, t + seq)], secret_b)).encode()
            assert dev_b.publish(telemetry_topic(b), payload) == 0
        wait_until(
            lambda: sqlite_db.count_readings(b) == 20, 20, f"stored {sqlite_db.count_readings(b)} of 20"
        )
        time.sleep(0.5)
        assert thief.received == []
    finally:
        thief.close()
        dev_b.close()
        worker.stop()
        thread.join(10)


def test_a_revoked_device_is_disconnected_and_refused(mosquitto: BrokerProcess) -> None:
    device = _device("auth-revoked")
    login = mosquitto.device_login(device)
    connected = probe(mosquitto, login)
    assert connected.connack == [0]
    assert connected.publish(telemetry_topic(device), b"{}") in ACCEPTED
    assert mosquitto.revoke_device(device)
    # The broker applies the deletion at once: the open connection is closed...
    assert connected.disconnected.wait(10), "the revoked device stayed connected"
    connected.close()
    # ...and the same password is refused from then on.
    again = probe(mosquitto, login)
    again.close()
    assert len(again.connack) == 1
    assert again.connack[0] in REFUSED
    assert not mosquitto.revoke_device(device)  # revoking twice is a no-op


def test_the_worker_login_cannot_be_used_without_its_password(mosquitto: BrokerProcess) -> None:
    worker = mosquitto.worker_login
    stolen_name = probe(mosquitto, MqttLogin(worker.username, "not-the-password"))
    stolen_name.close()
    assert len(stolen_name.connack) == 1
    assert stolen_name.connack[0] in REFUSED
    # A device user cannot be created under the worker's name (it would inherit nothing, but must not
    # replace the worker's password either).
    with mosquitto.admin() as admin, pytest.raises(Exception, match="broker user of the oracle"):
        admin.issue_device(worker.username)
    real = probe(mosquitto, worker)
    real.close()
    assert real.connack == [0]


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


def test_cli_add_issues_a_broker_login_once_and_revoke_deletes_it(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """`oracle devices add --broker-credential` as an operator runs it against the real broker."""
    env = {**os.environ, "ORACLE_DATA_DIR": str(tmp_path / "data"), **mosquitto.client_env()}
    device = _device("cli-broker")
    (tmp_path / "dev.pem").write_bytes(_pem())
    out = tmp_path / "handover" / f"{device}.json"
    added = _cli(
        [
            "devices",
            "add",
            device,
            "--public-key",
            str(tmp_path / "dev.pem"),
            "--broker-credential",
            str(out),
        ],
        env,
    )
    assert added.returncode == 0, added.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    credential = json.loads(out.read_text())
    assert (credential["url"], credential["username"]) == (mosquitto.url, device)
    password = credential["password"]
    assert password not in added.stdout + added.stderr
    # The oracle keeps nothing of it, and the broker only a salted hash.
    for f in (tmp_path / "data").rglob("*"):
        assert not f.is_file() or password.encode() not in f.read_bytes(), f
    dynsec = (mosquitto.data_dir / DYNSEC_FILE).read_text()
    assert device in dynsec
    assert password not in dynsec
    # A second add of the same file would overwrite a credential not yet handed over: refused.
    again = _cli(["devices", "broker-credential", device, "--broker-credential", str(out)], env)
    assert again.returncode == 1
    assert "exists" in again.stderr

    login = MqttLogin(device, password)
    connected = probe(mosquitto, login)
    assert connected.connack == [0]
    assert connected.publish(telemetry_topic(device), b"{}") in ACCEPTED
    revoked = _cli(["devices", "revoke", device], env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"broker user {device} deleted" in revoked.stdout
    assert connected.disconnected.wait(10), "the revoked device stayed connected"
    connected.close()
    refused = probe(mosquitto, login)
    refused.close()
    assert refused.connack[0] in REFUSED


def test_cli_without_a_broker_admin_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env["ORACLE_DATA_DIR"] = str(tmp_path / "data")
    (tmp_path / "dev.pem").write_bytes(_pem())
    refused = _cli(
        [
            "devices",
            "add",
            "no-admin-1",
            "--public-key",
            str(tmp_path / "dev.pem"),
            "--broker-credential",
            str(tmp_path / "x.json"),
        ],
        env,
    )
    assert refused.returncode == 1
    assert "ORACLE_MQTT_ADMIN_USERNAME" in refused.stderr
    assert not (tmp_path / "x.json").exists()
    reserved = _cli(["devices", "add", "oracle-ingest", "--public-key", str(tmp_path / "dev.pem")], env)
    assert reserved.returncode == 1
    assert "reserved for the oracle's own broker user" in reserved.stderr


def _pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from oracle.device_keys import public_pem

    return public_pem(Ed25519PrivateKey.generate())


def test_broker_init_writes_the_first_users_once_and_the_broker_takes_them(tmp_path: Path) -> None:
    """`oracle devices broker-init DIR` (what compose runs before the broker): the broker started on that
    file lets the worker log in with the password written for it; a second run changes nothing."""
    from oracle.devstack.broker import start_mosquitto

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    broker_dir, creds = tmp_path / "dynsec", tmp_path / "creds"
    first = _cli(["devices", "broker-init", str(broker_dir), "--credentials", str(creds)], env)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE((creds / "oracle-ingest").stat().st_mode) == 0o600
    assert stat.S_IMODE((broker_dir / DYNSEC_FILE).stat().st_mode) == 0o600
    written = (broker_dir / DYNSEC_FILE).read_bytes()
    worker_password = (creds / "oracle-ingest").read_text().strip()
    assert worker_password.encode() not in written  # a salted hash only
    second = _cli(["devices", "broker-init", str(broker_dir), "--credentials", str(creds)], env)
    assert second.returncode == 0, second.stderr
    assert "left as it is" in second.stdout
    assert (broker_dir / DYNSEC_FILE).read_bytes() == written
    with start_mosquitto(data_dir=broker_dir) as broker:
        worker = probe(broker, MqttLogin("oracle-ingest", worker_password))
        try:
            assert worker.connack == [0]
            assert worker.subscribe("$share/oracle-ingest/oracle/v1/telemetry/+") == 1
        finally:
            worker.close()


def test_tls_listener_works_with_the_ca_and_refuses_without_it(
    sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    """A real TLS connection: the launcher's TLS listener (throwaway CA made at run time). The ingest worker,
    configured only by settings (mqtts:// URL, ORACLE_MQTT_CA_FILE), stores what a device sends over TLS;
    a client without the CA fails the handshake; plain MQTT on the TLS port gets nowhere."""
    from urllib.parse import urlparse

    from ingest.telemetry.worker import worker_config
    from oracle.broker_auth import connect_mqtt
    from oracle.config import Settings
    from oracle.devstack.broker import start_mosquitto
    from oracle.errors import ToolError

    secret = add_device(sqlite_db, kek, "tls-1")
    with start_mosquitto(data_dir=tmp_path / "broker", tls=True) as broker:
        assert broker.tls_url.startswith("mqtts://127.0.0.1:")
        settings = Settings(_env_file=None, data_dir=tmp_path / "data", **broker.client_settings(tls=True))  # type: ignore[arg-type]
        u = urlparse(settings.mqtt_url)
        config = worker_config(settings, host=u.hostname, port=u.port, client_id="w-tls", group="", tls=True)
        assert (config.tls, config.ca_file, config.username) == (True, broker.ca_file, "oracle-ingest")
        worker = IngestWorker(make_ingest(sqlite_db, kek, tmp_path), config)
        thread = run_worker(worker)  # subscribed: it logged in over TLS
        device = connect_mqtt(
            broker.tls_url, "tls-dev", login=broker.device_login("tls-1"), ca_file=broker.ca_file
        )
        try:
            payload = json.dumps(sign_envelope([reading(1, now_ms() - 1000)], secret)).encode()
            device.publish(telemetry_topic("tls-1"), payload, qos=1).wait_for_publish(10)
            wait_until(
                lambda: sqlite_db.count_readings("tls-1") == 1, 20, "the reading sent over TLS was not stored"
            )
        finally:
            device.loop_stop()
            device.disconnect()
            worker.stop()
            thread.join(10)
        with pytest.raises(ToolError, match="certificate verify failed"):
            connect_mqtt(broker.tls_url, "tls-no-ca", login=broker.device_login("tls-1"))  # system CAs only
        plain = probe_port(broker.host, broker.tls_port, broker.device_login("tls-1"))
        assert plain == [], "a plain MQTT CONNECT on the TLS port must get no CONNACK"


def probe_port(host: str, port: int | None, login: MqttLogin) -> list[int]:
    """CONNACK codes a plain (non-TLS) client gets from ``port`` within 3 s."""
    assert port is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-plain", protocol=mqtt.MQTTv5)
    client.username_pw_set(login.username, login.password)
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: codes.append(int(rc.value))
    client.connect(host, port)
    client.loop_start()
    time.sleep(3)
    client.loop_stop()
    client.disconnect()
    return codes


def test_a_worker_without_the_login_never_subscribes_and_says_why(
    mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ingest worker started without ORACLE_MQTT_USERNAME is refused; its log names the settings to set."""
    caplog.set_level("ERROR", logger="ingest.telemetry.worker")
    worker = IngestWorker(
        make_ingest(sqlite_db, kek, tmp_path),
        WorkerConfig(host=mosquitto.host, port=mosquitto.port, client_id="w-anon", share_group="w-anon"),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: "ORACLE_MQTT_USERNAME" in caplog.text, 10, "no refusal logged")
        assert not worker.subscribed.is_set()
        assert "as an anonymous client" in caplog.text
    finally:
        worker.stop()
        thread.join(10)


def test_cli_finds_the_broker_oracle_run_started_for_its_data_directory(tmp_path: Path) -> None:
    """`oracle run --single` on embedded defaults starts its own mosquitto; `oracle devices add
    --broker-credential` in another shell, on the same data directory and with no ORACLE_MQTT_* set,
    issues the device's login on that broker (it used to find no broker and refuse)."""
    from oracle.broker_auth import connect_mqtt
    from oracle.config import Settings
    from oracle.service import local_broker

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env["ORACLE_DATA_DIR"] = str(data)
    (tmp_path / "dev.pem").write_bytes(_pem())
    device = _device("single-node")
    out = tmp_path / f"{device}.json"
    add = ["devices", "add", device, "--public-key", str(tmp_path / "dev.pem"), "--broker-credential"]
    with local_broker(Settings(_env_file=None, data_dir=data)) as broker_settings:  # type: ignore[call-arg]
        added = _cli([*add, str(out)], env)
        assert added.returncode == 0, added.stderr
        credential = json.loads(out.read_text())
        assert credential["url"] == broker_settings["mqtt_url"]
        assert credential["username"] == device
        device_client = connect_mqtt(
            credential["url"], f"{device}-probe", login=MqttLogin(device, credential["password"])
        )
        try:
            info = device_client.publish(telemetry_topic(device), b"{}", qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
        finally:
            device_client.loop_stop()
            device_client.disconnect()
    # The broker stopped with the run: its URL file is gone and the CLI says what to configure.
    assert not (data / "mqtt" / "url").exists()
    refused = _cli(
        [
            "devices",
            "add",
            _device("after-stop"),
            "--public-key",
            str(tmp_path / "dev.pem"),
            "--broker-credential",
            str(tmp_path / "late.json"),
        ],
        env,
    )
    assert refused.returncode == 1
    assert "oracle run" in refused.stderr
