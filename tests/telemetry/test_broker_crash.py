"""Mosquitto SIGKILLed while devices keep publishing at QoS 1: no reading is lost.

What the broker guarantees (deploy/mosquitto.conf): Mosquitto 2.0 keeps queues in memory and writes a
snapshot every ``autosave_interval`` (60 s) and on a clean stop. A PUBACK therefore means "the broker has
it", not "it is on disk": killed outright, the broker forgets what it acknowledged since its last
snapshot. This test makes that happen for certain (the worker is offline, so the broker holds a queue of
acknowledged messages when it dies; the test asserts some were really lost), and shows that the oracle's
end-to-end receipts close the gap: a device keeps each payload until its receipt and re-sends the rest,
and every reading ends up stored exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest.telemetry.worker import IngestWorker, WorkerConfig, payload_digest
from oracle.devices import Kek
from oracle.devstack.broker import BrokerProcess

from .conftest import Db, add_device, make_ingest, now_ms
from .mqtt_helpers import ReceiptingDevice, background, envelopes, run_worker, wait_until, worker_auth

pytestmark = pytest.mark.mqtt

MESSAGES, PER_MESSAGE = 1500, 3


def test_broker_sigkill_loses_acknowledged_messages_and_receipts_recover_every_reading(
    private_mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    broker = private_mosquitto
    secret = add_device(sqlite_db, kek, "crash-1")
    config = WorkerConfig(
        host=broker.host, port=broker.port, client_id="w-crash", share_group="", **worker_auth(broker)
    )
    worker = IngestWorker(make_ingest(sqlite_db, kek, tmp_path), config)
    thread = run_worker(worker)
    device = ReceiptingDevice(broker.host, broker.port, "crash-1", login=broker.device_login("crash-1"))
    msgs = envelopes(
        "crash-1", secret, start_seq=0, count=MESSAGES * PER_MESSAGE, per_msg=PER_MESSAGE, t0=now_ms() - 10**7
    )
    half = MESSAGES // 2

    def send(payloads: list[bytes]) -> None:
        for p in payloads:
            device.send(p)
            time.sleep(1 / 500)

    # Phase 1: the worker is online; receipts come back.
    background(send, msgs[:half]).join(60)
    wait_until(lambda: sqlite_db.count_readings() == half * PER_MESSAGE, 30, "phase 1 not stored")
    # Phase 2: the worker stops (a deploy); the broker acknowledges and queues for its session.
    worker.stop()
    thread.join(15)
    background(send, msgs[half:]).join(60)
    wait_until(
        lambda: len(device.broker_acked()) == MESSAGES, 30, "the broker did not acknowledge every publish"
    )
    queued = {payload_digest(p) for p in msgs[half:]}
    assert not queued & set(device.receipts)  # nothing of phase 2 was committed yet

    broker.kill()  # SIGKILL: no snapshot of the queue
    time.sleep(0.5)
    broker.start()
    worker = IngestWorker(make_ingest(sqlite_db, kek, tmp_path), config)
    thread = run_worker(worker)
    time.sleep(3.0)  # whatever the broker still had is delivered now
    lost_by_broker = MESSAGES * PER_MESSAGE - sqlite_db.count_readings()
    assert lost_by_broker > 0, "the broker kept everything: the fault this test is about did not happen"

    deadline = time.monotonic() + 90
    resent = 0
    while device.pending and time.monotonic() < deadline:
        resent += device.resend_overdue(2.0)
        time.sleep(0.5)
    assert not device.pending, f"{len(device.pending)} payloads never receipted"
    wait_until(lambda: sqlite_db.count_readings() == MESSAGES * PER_MESSAGE, 30, "readings missing")
    worker.stop()
    thread.join(15)
    device.close()
    assert sqlite_db.distinct_keys() == MESSAGES * PER_MESSAGE
    assert set(device.receipts.values()) == {"stored"}
    assert len(device.receipts) == MESSAGES
    print(
        f"broker SIGKILL: broker lost {lost_by_broker} of {MESSAGES * PER_MESSAGE} acknowledged readings; "
        f"the device re-sent {resent} payloads; 0 readings lost end to end"
    )


def test_receipts_name_each_payload_stored_or_refused_with_its_reason(
    sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    from ingest.telemetry import IncomingMessage
    from ingest.telemetry.worker import receipts_by_device

    secret = add_device(sqlite_db, kek, "rc-1")
    good, again = envelopes("rc-1", secret, start_seq=0, count=2, per_msg=1, t0=now_ms() - 10**6)
    batch = [
        IncomingMessage("rc-1", good),
        IncomingMessage("rc-1", good),  # the same bytes again: a duplicate, still "stored"
        IncomingMessage("rc-1", again.replace(b'"sig": "', b'"sig": "00')),
        IncomingMessage("ghost", b"{}"),
    ]
    outcome = make_ingest(sqlite_db, kek, tmp_path).process(batch)
    receipts = receipts_by_device(batch, outcome)
    assert [r["status"] for r in receipts["rc-1"]] == ["stored", "stored", "refused"]
    assert receipts["rc-1"][0]["digest"] == payload_digest(good)
    assert receipts["rc-1"][2]["reason"] in ("bad_signature", "malformed")
    assert receipts["ghost"] == [
        {"digest": payload_digest(b"{}"), "status": "refused", "reason": "malformed"}
    ]
