"""Two ingest workers share one ``$share`` subscription on the real PostgreSQL; one is SIGKILLed mid-stream.

Two ``oracle ingest telemetry`` processes (each with its forked writer process) subscribe with their own
client ids to the same share group; four devices publish a stream of signed readings, keep every payload
until its receipt arrives and re-send what waits more than a second (the device makers' guide). Every
fifth payload is sent twice in a row, so the share group hands the two copies to both workers at once.

The kill lands mid-commit and mid-stream, measured rather than assumed: the victim's writer process is
frozen (SIGSTOP) at a moment ``pg_stat_activity`` shows its session inside a transaction on the readings,
then the writer and the worker are SIGKILLed together, as in a host crash. Right after, a probe resumes
the victim's session (its client id, clean start off) and counts the messages the broker re-sends with
the DUP flag: delivered to the victim, never acknowledged. The probe then ends that session, as an
operator retiring the dead worker would, so those messages exist only on the devices, and only their
re-sends, taken by the surviving worker, can store them.

Every reading must be stored exactly once: the (device, seq) keys in the readings are exactly the
published ones, one row each, and the batches' records show readings that came twice. Seen failing when
broken on purpose: receipts published before the commit (readings missing: the crashed batch had been
receipted), and the key trigger of migration 0007 storing a taken key again (76 readings stored twice: the
two workers raced on the same copies). Acknowledging before the commit alone does not fail it: the
devices' re-sends cover what the broker dropped, which is what receipts are for.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import text

from ingest.telemetry.worker import TOPIC_FILTER
from oracle.devices import Kek
from oracle.devstack.broker import BrokerProcess

from .conftest import add_device, now_ms, open_db
from .mqtt_helpers import ReceiptingDevice, WorkerProcess, _children, background, envelopes, wait_until

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]

DEVICES, MESSAGES, PER_MESSAGE = 4, 300, 4  # per device: 1,200 readings; 4,800 in all
RATE_PER_DEVICE = 120.0  # messages per second
RESEND_AFTER_S = 1.0


class SessionProbe:
    """Resumes a client's persistent session, drops its subscription, and counts what the broker still
    had for it: messages re-sent with the DUP flag were delivered before and never acknowledged."""

    def __init__(self, broker: BrokerProcess, client_id: str, subscription: str) -> None:
        self.redelivered = 0
        self.queued = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        login = broker.worker_login  # it resumes a worker's session: only workers may hold that subscription
        self.client.username_pw_set(login.username, login.password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.unsubscribe(subscription)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.dup:
            self.redelivered += 1
        else:
            self.queued += 1

    def end_session(self) -> None:
        """Disconnect with session expiry 0: the broker forgets the session and what it still held."""
        props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()


def _stored(engine: Any, devices: list[str]) -> tuple[int, int, set[tuple[str, int]]]:
    """(rows, rows in the key table, distinct (device, seq)) of ``devices``' readings."""
    with engine.connect() as conn:
        params = {"d": devices}
        rows = conn.execute(
            text("SELECT device_id, seq FROM telemetry_readings WHERE device_id = ANY(:d)"), params
        ).all()
        keys = conn.execute(
            text("SELECT count(*) FROM telemetry_reading_keys WHERE device_id = ANY(:d)"), params
        ).scalar_one()
    return len(rows), int(keys), {(d, s) for d, s in rows}


def _freeze_mid_commit(worker: WorkerProcess, engine: Any, application_name: str) -> str:
    """SIGSTOP the worker's writer process at a moment its database transaction holds a batch (its
    session is inside a transaction whose last statement inserted readings), so the SIGKILL that follows
    cuts a commit off for certain. Returns that statement's first words."""
    assert worker.proc is not None
    (writer,) = _children(worker.proc.pid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        os.kill(writer, signal.SIGSTOP)
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT state, query FROM pg_stat_activity WHERE application_name = :a "
                    "AND xact_start IS NOT NULL AND (query ILIKE 'COPY telemetry_readings %' "
                    "OR query ILIKE 'INSERT INTO telemetry_readings %')"
                ),
                {"a": application_name},
            ).first()
        if row is not None and row[0] in ("active", "idle in transaction"):
            return " ".join(str(row[1]).split()[:4])
        os.kill(writer, signal.SIGCONT)
        time.sleep(random.uniform(0.001, 0.02))
    raise AssertionError("the worker's writer was never caught inside a transaction")


def test_a_worker_sigkilled_mid_stream_loses_nothing_and_stores_nothing_twice(
    mosquitto: BrokerProcess, postgres_url: str, kek: Kek, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = open_db(postgres_url)
    request.addfinalizer(db.engine.dispose)
    tag = f"{random.getrandbits(32):08x}"
    group = f"two-{tag}"
    names = [f"two-{tag}-{i}" for i in range(DEVICES)]
    secrets = {n: add_device(db, kek, n) for n in names}
    workers = []
    for i in range(2):
        env = {
            "ORACLE_DATA_DIR": str(tmp_path / f"data-{i}"),
            "ORACLE_DATABASE_URL": f"{postgres_url}?application_name={group}-w{i}",
            **mosquitto.client_env(),
            "ORACLE_MQTT_CLIENT_ID": f"{group}-w{i}",
            "ORACLE_MQTT_SHARE_GROUP": group,
            "ORACLE_DEVICE_KEK": kek.key.hex(),
            "ORACLE_LOG_LEVEL": "INFO",
        }
        log_dir = tmp_path / f"w{i}"
        log_dir.mkdir()
        w = WorkerProcess(env, log_dir)
        request.addfinalizer(w.close)
        w.start()
        workers.append(w)
    for w in workers:
        w.wait_subscribed()

    t0 = now_ms() - 10**7
    payloads = {
        n: envelopes(n, secrets[n], start_seq=0, count=MESSAGES * PER_MESSAGE, per_msg=PER_MESSAGE, t0=t0)
        for n in names
    }
    devices = {
        n: ReceiptingDevice(mosquitto.host, mosquitto.port, n, login=mosquitto.device_login(n)) for n in names
    }
    for d in devices.values():
        request.addfinalizer(d.close)
    total = DEVICES * MESSAGES * PER_MESSAGE
    for n in names:  # warm-up: the first payload of each device, so the workers have loaded every key
        devices[n].send(payloads[n][0])
    wait_until(lambda: not any(d.pending for d in devices.values()), 30, "warm-up not receipted")
    sent = dict.fromkeys(names, 1)
    lock = threading.Lock()
    resending = threading.Event()
    resent = [0]

    killed = threading.Event()
    request.addfinalizer(killed.set)  # a failure before the kill must not leave the streams waiting 120 s
    held_back = MESSAGES // 4  # the last quarter goes out after the kill, however slow the machine is

    def stream(name: str) -> None:
        started = time.monotonic()
        for i, p in enumerate(payloads[name][1:]):
            if i == MESSAGES - 1 - held_back and not killed.wait(120):
                raise AssertionError("no kill within 120 s")
            devices[name].send(p)
            if i % 5 == 0:  # sent twice in a row: the share group hands the copies to both workers at once
                devices[name].send(p)
            with lock:
                sent[name] += 1
            ahead = started + (i + 1) / RATE_PER_DEVICE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def resend() -> None:
        # Impatient devices: a payload without receipt after 1 s goes again.
        while not resending.wait(0.3):
            resent[0] += sum(d.resend_overdue(RESEND_AFTER_S) for d in devices.values())

    threads = [background(stream, n) for n in names]
    resender = background(resend)
    # Kill once a quarter of the readings is stored (the share group alternates, so both workers have
    # committed) and while the devices are still publishing.
    wait_until(lambda: _stored(db.engine, names)[0] >= total // 4, 30, "too little stored")
    stored_before, _, _ = _stored(db.engine, names)
    victim = workers[0]
    in_transaction = _freeze_mid_commit(victim, db.engine, f"{group}-w0")
    victim.crash()
    with lock:
        sent_at_kill = sum(sent.values())
    killed.set()

    probe = SessionProbe(mosquitto, f"{group}-w0", f"$share/{group}/{TOPIC_FILTER}")
    time.sleep(2.0)
    probe.end_session()
    # The devices were still publishing (their last quarter waits for ``killed``, so that holds by
    # construction); what shows the kill landed mid-stream is what the victim held unacknowledged:
    assert probe.redelivered > 0, "the killed worker held no unacknowledged message: not mid-stream"

    for t in threads:
        t.join(60)
        assert not getattr(t, "errors", None)
    wait_until(lambda: not any(d.pending for d in devices.values()), 90, "payloads never receipted")
    resending.set()
    resender.join(10)
    wait_until(lambda: _stored(db.engine, names)[0] >= total, 30, "readings missing")
    time.sleep(1.0)  # anything stored twice would show now
    rows, keys, distinct = _stored(db.engine, names)
    with db.engine.connect() as conn:  # every committed batch records how many messages it had
        delivered, accepted = conn.execute(
            text(
                "SELECT sum((meta->>'messages')::int), sum((meta->>'accepted')::int) FROM observations "
                "WHERE kind = 'telemetry_batch'"
            )
        ).one()
    deduplicated = int(delivered) * PER_MESSAGE - int(accepted)
    expected = {(n, s) for n in names for s in range(MESSAGES * PER_MESSAGE)}
    assert distinct == expected, f"{len(expected - distinct)} readings lost"
    assert rows == total, f"{rows - total} readings stored twice"
    assert keys == total
    assert {s for d in devices.values() for s in d.receipts.values()} == {"stored"}
    assert deduplicated > 0, "no reading came twice: the duplicate path was not exercised"
    assert workers[1].terminate() == 0
    print(
        f"two workers, one SIGKILLed after {sent_at_kill} of {DEVICES * MESSAGES} messages "
        f"({stored_before} readings stored by then; its writer frozen in '{in_transaction}...'): "
        f"it held {probe.redelivered} delivered, unacknowledged "
        f"messages (+{probe.queued} queued); devices re-sent {resent[0]}; {deduplicated} readings came "
        f"again and were not stored twice; {total} readings stored once each"
    )
