"""The durable worker over a real mosquitto: stored after commit, acknowledged, idempotent, and nothing
lost when the worker is SIGKILLed or the broker restarts mid-stream."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.telemetry.worker import IngestWorker, WorkerConfig
from oracle.devices import Kek
from oracle.devstack.broker import BrokerProcess
from oracle.storage.tables import Reject

from .conftest import Db, add_device, make_ingest, now_ms, open_db
from .mqtt_helpers import (
    WorkerProcess,
    background,
    envelopes,
    publish_all,
    publisher,
    run_worker,
    wait_until,
    worker_auth,
)

pytestmark = pytest.mark.mqtt


@pytest.mark.parametrize("writer_process", [True, False], ids=["writer-process", "in-thread"])
def test_end_to_end_stored_acked_idempotent_out_of_order(
    mosquitto: BrokerProcess, db: Db, kek: Kek, tmp_path: Path, writer_process: bool
) -> None:
    secret = add_device(db, kek, "e2e-1")
    cid = f"e2e-worker-{random.getrandbits(32)}"
    config = WorkerConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=cid,
        share_group=cid,
        writer_process=writer_process,
        **worker_auth(mosquitto),
    )
    worker = IngestWorker(make_ingest(db, kek, tmp_path), config)
    thread = run_worker(worker)
    t0 = now_ms() - 3_600_000
    msgs = envelopes("e2e-1", secret, start_seq=0, count=300, per_msg=3, t0=t0)
    # Out of order (reversed halves), and 20 envelopes published twice (a device re-sending).
    stream = msgs[50:] + msgs[:50][::-1] + msgs[:20]
    pub = publisher(mosquitto.host, mosquitto.port, f"{cid}-pub", login=mosquitto.device_login("e2e-1"))
    publish_all(pub, "e2e-1", [*stream, b"garbage"])
    wait_until(lambda: worker.stats.messages == len(stream) + 1, 30, "worker did not process every message")
    worker.stop()
    thread.join(10)
    assert db.count_readings("e2e-1") == 300
    assert db.distinct_keys() == 300
    assert (worker.stats.readings_accepted, worker.stats.duplicates, worker.stats.rejects) == (300, 60, 1)
    assert db.reject_reasons() == ["malformed"]
    # Everything was acknowledged: the same session resumed later receives nothing again.
    again = IngestWorker(make_ingest(db, kek, tmp_path), config)
    thread = run_worker(again)
    time.sleep(1.0)
    again.stop()
    thread.join(10)
    assert again.stats.messages == 0
    pub.disconnect()
    pub.loop_stop()


def test_broker_restart_mid_stream_loses_nothing(
    private_mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    broker = private_mosquitto
    secret = add_device(sqlite_db, kek, "restart-1")
    worker = IngestWorker(
        make_ingest(sqlite_db, kek, tmp_path),
        WorkerConfig(
            host=broker.host, port=broker.port, client_id="w-rs", share_group="", **worker_auth(broker)
        ),
    )
    thread = run_worker(worker)
    msgs = envelopes("restart-1", secret, start_seq=0, count=6000, per_msg=3, t0=now_ms() - 10**7)
    pub = publisher(broker.host, broker.port, "pub-rs", login=broker.device_login("restart-1"))
    sender = background(publish_all, pub, "restart-1", msgs, rate_per_s=1000)
    wait_until(lambda: sqlite_db.count_readings() > 1500, 30, "no progress before the restart")
    broker.restart()
    sender.join(120)
    assert not sender.errors  # type: ignore[attr-defined]
    wait_until(
        lambda: sqlite_db.count_readings() == 6000,
        20,
        f"lost across the restart: {sqlite_db.count_readings()} {worker.stats} {broker.log_tail(30)}",
    )
    worker.stop()
    thread.join(10)
    assert sqlite_db.distinct_keys() == 6000
    pub.disconnect()
    pub.loop_stop()


def test_on_commit_runs_in_the_worker_process_and_subclasses_commit_in_thread(
    mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    import os

    from ingest.telemetry import TelemetryIngest

    class Hooked(TelemetryIngest):
        def process(self, messages):  # type: ignore[no-untyped-def]
            return super().process(messages)

    config = WorkerConfig(host=mosquitto.host, port=mosquitto.port, client_id="unused")
    assert not IngestWorker(
        Hooked(sessions=sqlite_db.sessions, blobs=None, kek=kek), config
    ).uses_writer_process  # type: ignore[arg-type]
    secret = add_device(sqlite_db, kek, "hook-1")
    cid = f"hook-{random.getrandbits(32)}"
    seen: list[tuple[int, int, int]] = []
    worker = IngestWorker(
        make_ingest(sqlite_db, kek, tmp_path),
        WorkerConfig(
            host=mosquitto.host, port=mosquitto.port, client_id=cid, share_group=cid, **worker_auth(mosquitto)
        ),
        on_commit=lambda msgs, out: seen.append((os.getpid(), len(msgs), out.accepted)),
    )
    assert worker.uses_writer_process
    thread = run_worker(worker)
    pub = publisher(mosquitto.host, mosquitto.port, f"{cid}-pub", login=mosquitto.device_login("hook-1"))
    publish_all(
        pub, "hook-1", envelopes("hook-1", secret, start_seq=0, count=40, per_msg=4, t0=now_ms() - 10**6)
    )
    wait_until(lambda: worker.stats.messages == 10, 30, "worker did not process every message")
    assert worker.writer_pid not in (None, os.getpid())
    worker.stop()
    thread.join(10)
    assert {pid for pid, _, _ in seen} == {os.getpid()}
    assert (sum(n for _, n, _ in seen), sum(a for _, _, a in seen)) == (10, 40)
    pub.disconnect()
    pub.loop_stop()


def test_killed_writer_process_is_replaced_and_nothing_is_lost(
    mosquitto: BrokerProcess, sqlite_db: Db, kek: Kek, tmp_path: Path
) -> None:
    import os
    import signal

    secret = add_device(sqlite_db, kek, "wkill-1")
    cid = f"wkill-{random.getrandbits(32)}"
    worker = IngestWorker(
        make_ingest(sqlite_db, kek, tmp_path),
        WorkerConfig(
            host=mosquitto.host, port=mosquitto.port, client_id=cid, share_group=cid, **worker_auth(mosquitto)
        ),
    )
    thread = run_worker(worker)
    msgs = envelopes("wkill-1", secret, start_seq=0, count=6000, per_msg=3, t0=now_ms() - 10**7)
    pub = publisher(mosquitto.host, mosquitto.port, f"{cid}-pub", login=mosquitto.device_login("wkill-1"))
    sender = background(publish_all, pub, "wkill-1", msgs, rate_per_s=800)
    killed = []
    for threshold in (600, 3000):
        wait_until(lambda t=threshold: sqlite_db.count_readings() > t, 30, "no progress")  # type: ignore[misc]
        pid = worker.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    sender.join(60)
    assert not sender.errors  # type: ignore[attr-defined]
    wait_until(lambda: sqlite_db.count_readings() == 6000, 30, f"lost after writer kills: {worker.stats}")
    assert worker.writer_pid not in killed
    assert worker.stats.retries >= 1
    worker.stop()
    thread.join(10)
    assert sqlite_db.distinct_keys() == 6000
    assert sqlite_db.reject_reasons() == []
    pub.disconnect()
    pub.loop_stop()


@pytest.mark.slow
def test_sigkill_worker_ten_times_during_50k_readings(
    private_mosquitto: BrokerProcess, tmp_path: Path, kek: Kek, request: pytest.FixtureRequest
) -> None:
    broker = private_mosquitto
    url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
    db = open_db(url)
    devices = {f"kill-{i}": add_device(db, kek, f"kill-{i}") for i in range(5)}
    env = {
        "ORACLE_DATA_DIR": str(tmp_path / "data"),
        "ORACLE_DATABASE_URL": url,
        **broker.client_env(),
        "ORACLE_MQTT_CLIENT_ID": "kill-worker",
        "ORACLE_DEVICE_KEK": kek.key.hex(),
        "ORACLE_LOG_LEVEL": "INFO",
    }
    worker = WorkerProcess(env, tmp_path)
    request.addfinalizer(worker.close)
    worker.start()
    worker.wait_subscribed()  # the persistent session exists from now on: the broker queues for it
    t0 = now_ms() - 10**8
    per_device = 10_000
    pubs = [
        publisher(broker.host, broker.port, f"kill-pub-{d}", login=broker.device_login(d)) for d in devices
    ]
    senders = []
    for pub, (device, secret) in zip(pubs, devices.items(), strict=True):
        msgs = envelopes(device, secret, start_seq=0, count=per_device, per_msg=10, t0=t0)
        # 5 × 10 messages of 10 readings a second for 100 s: the stream outlasts the ten kill-restart
        # cycles (a restart, 500 new readings and up to 0.3 s each: 5-8 s on a slow 2-core machine,
        # where 40 s of stream at 25 a second ran out after the eighth kill).
        senders.append(background(publish_all, pub, device, msgs, rate_per_s=10))
    rng = random.Random(7)
    orphans = 0
    stored_at_kill: list[int] = []
    for _ in range(10):
        # Kill a worker that is really working: subscribed, and committing rows it did not have before.
        worker.wait_subscribed()
        before = db.count_readings()
        wait_until(
            lambda b=before: db.count_readings() >= b + 500,
            30,
            f"restart {worker.runs} stored nothing: {stored_at_kill} {before}",
        )  # type: ignore[misc]
        time.sleep(rng.uniform(0.0, 0.3))
        stored_at_kill.append(db.count_readings())
        orphans += worker.kill()  # each orphaned writer process must exit by itself
        worker.start()
    assert stored_at_kill == sorted(set(stored_at_kill)), stored_at_kill  # it rose between every two kills
    assert stored_at_kill[-1] < 50_000  # the last kill still fell mid-stream
    for s in senders:
        s.join(120)
        assert not s.errors  # type: ignore[attr-defined]
    wait_until(lambda: db.count_readings() >= 50_000, 90, f"stored {db.count_readings()} of 50000")
    # The last restarted worker must be up (its SIGTERM handler installed) before it is asked to stop:
    # the killed worker's orphaned writer can finish the last readings while the new one still starts.
    worker.wait_subscribed()
    time.sleep(0.5)
    assert worker.terminate() == 0
    assert db.count_readings() == 50_000
    assert db.distinct_keys() == 50_000
    with db.sessions() as s:
        assert list(s.scalars(select(Reject.reason))) == []
    assert worker.runs == 11
    assert orphans > 0  # the writer processes existed, so their exit was really checked
    for pub in pubs:
        pub.disconnect()
        pub.loop_stop()
