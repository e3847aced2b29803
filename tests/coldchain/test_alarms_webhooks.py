"""Alarm webhooks against a real HTTP server on 127.0.0.1: signed bodies, an idempotency key per event,
retries with backoff from the durable queue, and a receiver that was down gets everything later."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from oracle.alarms.live import LiveAlarms
from oracle.alarms.webhooks import (
    SIGNATURE_HEADER,
    WebhookDispatcher,
    add_webhook,
    load_secret,
    secret_path,
    verify_signature,
)
from oracle.errors import ValidationError
from oracle.storage.alarm_tables import AlarmRow, WebhookDelivery
from tests.outbox.helpers import open_db


class Receiver:
    """A real HTTP server that records every POST; ``status`` is what it answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 200
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return open_db(database_url)


@pytest.fixture
def port() -> int:
    return free_port()


def _raise_some(sessions: sessionmaker[Session]) -> int:
    """Two shipments cross the hot boundary for 10 minutes and come back."""
    live = LiveAlarms(sessions, profile_of=lambda _s, _x: "refrigerated")
    t0 = 1_767_000_000
    readings = []
    for shipment in ("SHP-W1", "SHP-W2"):
        temps = [5.0, 5.0, 30.0, 5.0]
        readings += [(shipment, (t0 + i * 600) * 1000, x) for i, x in enumerate(temps)]
    return live.on_committed(readings)


def test_a_webhook_that_was_down_gets_every_transition_later_signed_and_keyed(
    sessions: sessionmaker[Session], port: int, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    add_webhook(sessions, data_dir, name="ops", url=f"http://127.0.0.1:{port}/alarms")
    secret_file = secret_path(data_dir, "ops")
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    changes = _raise_some(sessions)
    # Per shipment: hot_immediate and the 10-minute dock rule, each raised and cleared.
    assert changes == 8
    clock = Clock()
    dispatcher = WebhookDispatcher(sessions, data_dir, timeout_s=2.0, clock=clock)
    try:
        # Nobody listens yet: every attempt fails, nothing is lost, retries are spaced out.
        assert dispatcher.pump() == 0
        assert dispatcher.pump() == 0  # not due again yet: backoff
        with sessions() as s:
            rows = s.scalars(select(WebhookDelivery)).all()
            assert {r.state for r in rows} == {"pending"}
            assert {r.attempts for r in rows} == {1}
            assert all(r.next_attempt_at.replace(tzinfo=dt.UTC) > clock.now for r in rows)
        receiver = Receiver(port)
        try:
            # Up, but failing (503): still retried.
            receiver.status = 503
            clock.now += dt.timedelta(seconds=1.5)
            assert dispatcher.pump() == 0
            failing = len(receiver.received)
            assert failing == 8
            receiver.status = 200
            clock.now += dt.timedelta(seconds=2.5)
            assert dispatcher.pump() == 8
            assert dispatcher.pump() == 0  # delivered rows are never sent again
        finally:
            receiver.stop()
    finally:
        dispatcher.stop()
    secret = load_secret(data_dir, "ops")
    delivered = receiver.received[failing:]
    keys = []
    for headers, body in delivered:
        assert verify_signature(secret, body, headers[SIGNATURE_HEADER])
        assert not verify_signature(b"another secret", body, headers[SIGNATURE_HEADER])
        event = json.loads(body)
        assert event["event_id"] == headers["Idempotency-Key"]
        keys.append(event["event_id"])
        assert event["type"] in ("alarm.raised", "alarm.cleared")
    # Each retry re-sent the same bytes under the same key, so a receiver dedupes on it.
    assert {h["Idempotency-Key"]: b for h, b in receiver.received[:failing]} == {
        h["Idempotency-Key"]: b for h, b in delivered
    }
    with sessions() as s:
        alarms = s.scalars(select(AlarmRow)).all()
    expected = {
        f"{a.shipment_id}/{a.rule}/{a.raised_at_s}/{action}"
        for a in alarms
        for action in ("raised", "cleared")
    }
    assert sorted(keys) == sorted(expected)


def test_the_secret_is_never_in_a_log_or_the_database(
    sessions: sessionmaker[Session], port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    data_dir = tmp_path / "data"
    add_webhook(sessions, data_dir, name="quiet", url=f"http://127.0.0.1:{port}/x")
    _raise_some(sessions)
    dispatcher = WebhookDispatcher(sessions, data_dir, timeout_s=1.0)
    try:
        dispatcher.pump()
    finally:
        dispatcher.stop()
    secret = load_secret(data_dir, "quiet").decode()
    assert secret not in caplog.text
    with sessions() as s:
        bodies = " ".join(r.body for r in s.scalars(select(WebhookDelivery)))
    assert secret not in bodies
    with pytest.raises(ValidationError, match="exists"):
        add_webhook(sessions, data_dir, name="quiet", url="http://127.0.0.1:1/y")
    with pytest.raises(ValidationError):
        add_webhook(sessions, data_dir, name="../etc", url="http://127.0.0.1:1/y")
    assert os.listdir(data_dir / "alarm-webhooks") == ["quiet.secret"]


def test_two_dispatchers_on_one_database_send_each_event_once(
    sessions: sessionmaker[Session], port: int, tmp_path: Path
) -> None:
    """Several nodes' dispatchers share the queue: each claims rows with a lease, so a healthy receiver
    gets every event exactly once (the idempotency key still covers a crash mid-send)."""
    data_dir = tmp_path / "data"
    add_webhook(sessions, data_dir, name="ops", url=f"http://127.0.0.1:{port}/alarms")
    live = LiveAlarms(sessions, profile_of=lambda _s, _x: "refrigerated")
    t0 = 1_767_000_000
    readings = [
        (f"SHP-M{k:02d}", (t0 + i * 600) * 1000, x)
        for k in range(15)
        for i, x in enumerate([5.0, 5.0, 30.0, 5.0])
    ]
    events = live.on_committed(readings)
    assert events == 60
    receiver = Receiver(port)
    dispatchers = [WebhookDispatcher(sessions, data_dir, timeout_s=5.0, batch=4) for _ in range(2)]
    sent = [0, 0]

    def run(i: int) -> None:
        for _ in range(200):
            sent[i] += dispatchers[i].pump()
            if sum(sent) >= events:
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for d in dispatchers:
            d.stop()
        receiver.stop()
    keys = [h["Idempotency-Key"] for h, _ in receiver.received]
    assert len(keys) == events
    assert len(set(keys)) == events
    assert min(sent) > 0  # both took part
