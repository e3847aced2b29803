"""Publishing signed readings to a real broker, and running the ingest worker as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ingest.telemetry import sign_envelope
from ingest.telemetry.worker import payload_digest, receipt_topic, telemetry_topic
from oracle.broker_auth import MqttLogin
from oracle.devstack.broker import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]


def worker_auth(broker: BrokerProcess) -> dict[str, Any]:
    """``WorkerConfig`` keyword arguments: the broker's ingest-worker login."""
    login = broker.worker_login
    return {"username": login.username, "password": login.password}


def publisher(host: str, port: int, client_id: str, *, login: MqttLogin | None = None) -> mqtt.Client:
    """A QoS 1 publisher with a persistent session of its own: unacknowledged publishes survive a
    reconnect (paho re-sends them). ``login``: the device's broker login (``broker.device_login(id)``);
    the broker refuses anonymous clients and lets a device publish on its own topic only."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if login is not None:
        c.username_pw_set(login.username, login.password)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(0.2, 1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    c.connect(host, port, clean_start=False, properties=props)
    c.loop_start()
    return c


def envelopes(
    device: str, secret: bytes, *, start_seq: int, count: int, per_msg: int, t0: int
) -> list[bytes]:
    out = []
    for first in range(start_seq, start_seq + count, per_msg):
        body = [
            {"seq": s, "ts": t0 + s * 1000, "temp_c": round(2.0 + (s % 60) / 10, 1)}
            for s in range(first, min(first + per_msg, start_seq + count))
        ]
        out.append(json.dumps(sign_envelope(body, secret)).encode())
    return out


def publish_all(
    client: mqtt.Client, device: str, payloads: list[bytes], *, rate_per_s: float | None = None
) -> None:
    """Publish at QoS 1 and wait until the broker acknowledged every message; re-publish a message whose
    publish call failed (broker down): a duplicate is harmless, the worker is idempotent."""
    infos: list[Any] = []
    started = time.monotonic()
    for i, p in enumerate(payloads):
        while True:
            info = client.publish(telemetry_topic(device), p, qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                infos.append(info)
                break
            time.sleep(0.05)
        if rate_per_s:
            ahead = started + (i + 1) / rate_per_s - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    deadline = time.monotonic() + 120
    for info in infos:
        while not info.is_published():
            assert time.monotonic() < deadline, "broker never acknowledged the publishes"
            time.sleep(0.01)


#: The standalone worker (``oracle ingest telemetry``: commits in a forked writer process).
STANDALONE = ("oracle.commands.telemetry", "ingest", "telemetry")
#: The worker as ``oracle run`` starts it (in a thread, committing in that thread).
SERVICE = ("tests.telemetry.service_worker",)


class WorkerProcess:
    """An ingest worker process (``STANDALONE`` by default, or ``SERVICE``) with the given environment."""

    def __init__(self, env: dict[str, str], log_dir: Path, command: tuple[str, ...] = STANDALONE) -> None:
        self.command = command
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None

    def start(self) -> None:
        self.runs += 1
        self.log = self.log_dir / f"worker-{self.runs}.log"
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.command],
                cwd=ROOT,
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
            )

    def wait_subscribed(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.log is not None
            if b"subscribed to" in self.log.read_bytes():
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError("worker did not subscribe in time")

    def kill(self) -> int:
        """SIGKILL the worker, then require its orphaned writer process to exit by itself (pipe EOF).
        Returns how many such child processes there were."""
        return self.wait_orphans(self.kill_only())

    def kill_only(self) -> list[int]:
        """SIGKILL the worker; return its child processes (they may still be finishing a commit)."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait(10)
        return children

    def crash(self) -> None:
        """A host crash: freeze the writer process(es) first, then the worker, then SIGKILL all of them, so
        a commit under way is cut off where it stood (a writer outliving its worker could finish it)."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        for pid in [*children, self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        for pid in [*children, self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait_orphans(self, children: list[int]) -> int:
        """Require the orphaned writer processes to exit by themselves within 10 s; return their number."""
        deadline = time.monotonic() + 10
        while any(_running(c) for c in children):
            assert time.monotonic() < deadline, f"writer process(es) {children} outlived the killed worker"
            time.sleep(0.05)
        return len(children)

    def close(self) -> None:
        """Kill the worker and its writer process if they still run (a failed test leaves none behind)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in self.kill_only():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)


def background(fn: Any, *args: Any, **kw: Any) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args, **kw)
        except BaseException as e:
            errors.append(e)
            raise

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ReceiptingDevice:
    """A logger as the device makers' guide describes it: it publishes at QoS 1, keeps every payload
    until the oracle's receipt for it arrives on ``oracle/v1/receipts/{device}``, and re-sends whatever
    has waited too long. :meth:`broker_acked` gives the digests the broker PUBACKed."""

    def __init__(self, host: str, port: int, device: str, *, login: MqttLogin | None = None) -> None:
        self.device = device
        self.pending: dict[str, tuple[bytes, float]] = {}
        self.receipts: dict[str, str] = {}
        self._mids: dict[int, str] = {}
        self._pubacked: set[int] = set()
        self._lock = threading.Lock()
        self.client = publisher(host, port, f"{device}-dev", login=login)
        self.client.on_message = self._on_receipt
        self.client.on_publish = lambda _c, _u, mid, *_: self._pubacked.add(mid)
        self.client.on_connect = lambda c, *_: c.subscribe(receipt_topic(device), qos=1)
        self.client.subscribe(receipt_topic(device), qos=1)

    def _on_receipt(self, _c: Any, _u: Any, msg: Any) -> None:
        for r in json.loads(msg.payload)["receipts"]:
            with self._lock:
                self.receipts[r["digest"]] = r["status"]
                self.pending.pop(r["digest"], None)

    def send(self, payload: bytes) -> None:
        digest = payload_digest(payload)
        with self._lock:
            if digest in self.receipts:
                return
            self.pending[digest] = (payload, time.monotonic())
        while True:
            info = self.client.publish(telemetry_topic(self.device), payload, qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._mids[info.mid] = digest
                return
            time.sleep(0.05)

    def broker_acked(self) -> set[str]:
        return {digest for mid, digest in list(self._mids.items()) if mid in self._pubacked}

    def resend_overdue(self, older_than_s: float) -> int:
        """Re-send every payload still without a receipt after ``older_than_s``; returns how many."""
        now = time.monotonic()
        with self._lock:
            overdue = [p for p, sent in self.pending.values() if now - sent > older_than_s]
        for payload in overdue:
            self.send(payload)
        return len(overdue)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_worker(worker: Any) -> threading.Thread:
    """Run an in-process IngestWorker in a thread and wait until it has subscribed."""
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    assert worker.subscribed.wait(15), "worker did not subscribe"
    return t


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
