"""Acknowledge only after commit, pinned: a worker SIGKILLed while its commit is blocked inside the
database loses nothing, because the broker still holds every unacknowledged message for its session.

The commit is held mid-transaction for certain, not by timing: the test takes an exclusive lock on the
readings table in PostgreSQL and waits until ``pg_stat_activity`` shows the worker's statement waiting
on that lock, then kills the worker. A worker that acknowledged before committing would have given the
messages away and the restarted worker could never store them: this test then fails (checked by moving
the acknowledgement in ``IngestWorker._write_batch`` ahead of ``_commit``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from oracle.devices import Kek
from oracle.devstack.broker import BrokerProcess

from .conftest import add_device, now_ms, open_db
from .mqtt_helpers import SERVICE, STANDALONE, WorkerProcess, envelopes, publish_all, publisher

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres]

MESSAGES, PER_MESSAGE = 40, 5


def _waiting_on_lock(engine: Engine, timeout: float) -> int:
    """Wait until another backend waits on a lock for telemetry_readings; return how many do. Each poll
    is its own transaction: pg_stat_activity is a snapshot taken once per transaction."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND pid <> pg_backend_pid() AND query ILIKE '%telemetry_readings%'"
                )
            ).scalar_one()
        if n:
            return int(n)
        time.sleep(0.05)
    raise AssertionError("the worker never reached its commit")


@pytest.mark.parametrize(
    "command", [STANDALONE, SERVICE], ids=["standalone-writer-process", "service-in-thread"]
)
def test_sigkill_in_the_middle_of_a_commit_loses_nothing(
    mosquitto: BrokerProcess,
    postgres_url: str,
    kek: Kek,
    tmp_path: Path,
    command: tuple[str, ...],
    request: pytest.FixtureRequest,
) -> None:
    db = open_db(postgres_url)
    device = f"mid-{random.getrandbits(32):08x}"
    secret = add_device(db, kek, device)
    cid = f"mid-commit-{random.getrandbits(32):08x}"
    env = {
        "ORACLE_DATA_DIR": str(tmp_path / "data"),
        "ORACLE_DATABASE_URL": postgres_url,
        **mosquitto.client_env(),
        "ORACLE_MQTT_CLIENT_ID": cid,
        "ORACLE_MQTT_SHARE_GROUP": cid,
        "ORACLE_DEVICE_KEK": kek.key.hex(),
        "ORACLE_LOG_LEVEL": "INFO",
    }
    worker = WorkerProcess(env, tmp_path, command)
    request.addfinalizer(worker.close)
    worker.start()
    worker.wait_subscribed()
    pub = publisher(mosquitto.host, mosquitto.port, f"{cid}-pub", login=mosquitto.device_login(device))
    msgs = envelopes(
        device, secret, start_seq=0, count=MESSAGES * PER_MESSAGE, per_msg=PER_MESSAGE, t0=now_ms() - 10**7
    )
    with db.engine.connect() as lock:
        held = lock.begin()
        lock.execute(text("LOCK TABLE telemetry_readings IN ACCESS EXCLUSIVE MODE"))
        publish_all(pub, device, msgs)  # the broker acknowledged every publish: they are its to keep
        assert _waiting_on_lock(db.engine, 30) >= 1
        # The worker and its writer process die together, as in a host crash: a writer process left
        # alive would finish the commit once the lock goes and hide an early acknowledgement.
        for pid in worker.kill_only():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        held.rollback()
    assert db.count_readings(device) == 0  # the killed transaction left nothing behind
    worker.start()
    worker.wait_subscribed()
    deadline = time.monotonic() + 30
    while db.count_readings(device) < MESSAGES * PER_MESSAGE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker.terminate() == 0
    assert db.count_readings(device) == MESSAGES * PER_MESSAGE, "acknowledged before commit: readings lost"
    assert db.distinct_keys() >= MESSAGES * PER_MESSAGE
    pub.disconnect()
    pub.loop_stop()
    db.engine.dispose()
