"""`oracle run` with ORACLE_RUN_INGEST_WORKER=false consumes no telemetry itself: its broker has no
subscriber on the telemetry topics until a standalone `oracle ingest telemetry` connects.

The probe is MQTT v5's PUBACK reason code: mosquitto answers a QoS 1 publish that matches no
subscription (shared subscriptions included) with 16, "No matching subscribers", and with 0 otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from oracle.broker_auth import ADMIN_USER, BrokerAdmin, MqttLogin
from oracle.config import load_settings
from oracle.devstack.broker import client_env, client_login

NO_MATCHING_SUBSCRIBERS = 16
CLI = [sys.executable, "-c", "from oracle.cli import main; main()"]


def test_the_setting_reads_false_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORACLE_RUN_INGEST_WORKER", raising=False)
    assert load_settings().run_ingest_worker is True
    monkeypatch.setenv("ORACLE_RUN_INGEST_WORKER", "false")
    assert load_settings().run_ingest_worker is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _puback_code(host: str, port: int, login: MqttLogin) -> int:
    """Reason code of the PUBACK for one QoS 1 telemetry publish (a device nobody registered, with a
    broker login of its own: the broker refuses anonymous clients)."""
    codes: list[int] = []
    acked = threading.Event()

    def on_publish(_c: object, _u: object, _mid: int, reason: ReasonCode, _props: object) -> None:
        codes.append(int(reason.value))
        acked.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-no-ingest", protocol=mqtt.MQTTv5)
    client.username_pw_set(login.username, login.password)
    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    try:
        client.publish("oracle/v1/telemetry/PROBE-1", b"{}", qos=1)
        assert acked.wait(10), "no PUBACK within 10 s"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.chain
@pytest.mark.mqtt
def test_run_without_ingest_worker_has_no_mqtt_consumer(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {
        "ORACLE_DATA_DIR": str(tmp_path / "data"),
        "ORACLE_API_PORT": str(port),
        "ORACLE_RUN_INGEST_WORKER": "false",
    }
    run_log = tmp_path / "run.log"
    with run_log.open("w") as out:
        service = subprocess.Popen(
            [*CLI, "run", "--single", "--no-demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert service.poll() is None, run_log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no /healthz within 120 s"
            time.sleep(0.25)
        text = run_log.read_text()
        broker = next(line.split()[-1] for line in text.splitlines() if line.strip().startswith("broker"))
        host, broker_port = broker.removeprefix("mqtt://").split(":")
        assert "no MQTT ingest worker in this process" in text
        time.sleep(2.0)  # a worker thread, had one been started, would have subscribed by now
        # The service's broker keeps its logins in <data dir>/mqtt/credentials: the probe gets a device
        # login from its admin, the standalone worker below logs in as the workers' user.
        broker_env = client_env(tmp_path / "data" / "mqtt", broker)
        with BrokerAdmin(broker, client_login(tmp_path / "data" / "mqtt", ADMIN_USER)) as admin:
            probe = MqttLogin("PROBE-1", admin.issue_device("PROBE-1"))
        assert _puback_code(host, int(broker_port), probe) == NO_MATCHING_SUBSCRIBERS

        # The probe does see a consumer: a standalone worker on the same broker and database.
        with (tmp_path / "worker.log").open("w") as out:
            worker = subprocess.Popen(
                [*CLI, "ingest", "telemetry"],
                env=env | broker_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while _puback_code(host, int(broker_port), probe) == NO_MATCHING_SUBSCRIBERS:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the standalone worker did not subscribe within 60 s"
            time.sleep(0.25)
    finally:
        if worker is not None:
            _stop(worker)
        _stop(service)
    assert service.returncode == 0, run_log.read_text()
