"""Alarms end to end on real parts: an escrow on anvil names the shipment's profile; a device publishes
ES256-signed readings to the real mosquitto; the ingest worker commits them and its after-commit hook
raises an alarm; the webhook (a real HTTP server) receives it; an operator acknowledges it through the
API; readings back in band clear it, and the webhook hears that too."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from ingest.telemetry.envelope import sign_envelope_with_key
from ingest.telemetry.pipeline import TelemetryIngest
from ingest.telemetry.worker import IngestWorker, WorkerConfig
from oracle.alarms.live import attach
from oracle.alarms.webhooks import (
    SIGNATURE_HEADER,
    WebhookDispatcher,
    add_webhook,
    load_secret,
    verify_signature,
)
from oracle.api.app import create_app
from oracle.api.keys import Role, create_key
from oracle.api.limits import ApiLimits
from oracle.chain.listener import ChainListener
from oracle.context import Context
from oracle.device_keys import public_pem
from oracle.devices import load_kek, register_device_key
from oracle.devstack.broker import BrokerProcess
from tests.coldchain.helpers import open_escrow
from tests.coldchain.test_alarms_webhooks import Receiver, free_port
from tests.fixtures.chain import ChainKit
from tests.fixtures.context import dev_context
from tests.telemetry.mqtt_helpers import publish_all, publisher, worker_auth

SHIPMENT = "SHP-ALARM-E2E"  # the reference; the name carries the buyer
DEVICE = "logger-alarm-e2e"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = dev_context(tmp_path)
    yield context
    context.close()


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.chain
def test_reading_over_the_boundary_alarms_webhook_acknowledge_and_clear(
    ctx: Context, chain: ChainKit, mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    shipment = open_escrow(chain, SHIPMENT, profile="refrigerated")  # 0x<buyer>:SHP-ALARM-E2E
    ChainListener(ctx.sessions, chain.w3, chain.deployment, confirmations=0).poll()
    key = ec.generate_private_key(ec.SECP256R1())
    start = int(time.time()) - 6 * 3600
    import datetime as dt

    register_device_key(
        ctx.sessions,
        device_id=DEVICE,
        public_key_pem=public_pem(key),
        shipment_id=shipment,
        valid_from=dt.datetime.fromtimestamp(start - 60, dt.UTC),
    )
    port = free_port()
    add_webhook(ctx.sessions, ctx.settings.data_dir, name="ops", url=f"http://127.0.0.1:{port}/hook")
    receiver = Receiver(port)
    dispatcher = WebhookDispatcher(ctx.sessions, ctx.settings.data_dir, interval_s=0.2)
    dispatcher.start()

    ingest = TelemetryIngest(sessions=ctx.sessions, blobs=ctx.blobs, kek=load_kek(ctx.settings))
    attach(ingest, ctx.sessions)  # what the service does: the profile comes from the escrow on anvil
    config = WorkerConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id="w-alarms",
        share_group="w-alarms",
        **worker_auth(mosquitto),
    )
    worker = IngestWorker(ingest, config)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    pub = publisher(mosquitto.host, mosquitto.port, "pub-alarms", login=mosquitto.device_login(DEVICE))

    with ctx.sessions() as s:
        operator = create_key(s, role=Role.OPERATOR, name="night-shift").secret_key
        s.commit()
    api = TestClient(create_app(ctx, limits=ApiLimits(rate_per_s=1000, burst=1000)))
    auth = {"X-API-Key": operator}

    def send(first_seq: int, temps: list[float]) -> None:
        body = [
            {"seq": first_seq + i, "ts": (start + (first_seq + i) * 600) * 1000, "temp_c": t}
            for i, t in enumerate(temps)
        ]
        publish_all(pub, DEVICE, [json.dumps(sign_envelope_with_key(body, key)).encode()])

    def hot_alarm() -> dict[str, object] | None:
        items = api.get("/v1/alarms", params={"shipment": shipment}, headers=auth).json()["items"]
        return next((a for a in items if a["rule"] == "hot_immediate"), None)

    try:
        time.sleep(0.5)  # let the worker subscribe
        send(0, [5.0, 5.1, 4.9])
        send(3, [31.0])  # over the 25 °C boundary: alarm at once
        alarm = wait_for("the hot alarm", hot_alarm)
        assert isinstance(alarm, dict)
        assert alarm["state"] == "raised"
        assert alarm["raised_at_s"] == start + 3 * 600
        assert alarm["severity"] == "critical"
        secret = load_secret(ctx.settings.data_dir, "ops")

        def hooked(event_type: str) -> bool:
            return any(
                json.loads(b)["type"] == event_type and json.loads(b)["alarm"]["rule"] == "hot_immediate"
                for _, b in receiver.received
            )

        wait_for("the raised webhook", lambda: hooked("alarm.raised"))
        for headers, body in receiver.received:
            assert verify_signature(secret, body, headers[SIGNATURE_HEADER])

        # Viewers may look but not acknowledge.
        with ctx.sessions() as s:
            viewer = create_key(s, role=Role.VIEWER, name="viewer").secret_key
            s.commit()
        denied = api.post(f"/v1/alarms/{alarm['id']}/acknowledge", headers={"X-API-Key": viewer})
        assert denied.status_code == 403
        acked = api.post(f"/v1/alarms/{alarm['id']}/acknowledge", headers=auth).json()
        assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "night-shift")
        assert acked["acknowledged_at"]
        wait_for("the acknowledged webhook", lambda: hooked("alarm.acknowledged"))

        send(4, [5.2, 5.0])  # back in band
        cleared = wait_for("the clear", lambda: (a := hot_alarm()) and a["state"] == "cleared" and a)
        assert isinstance(cleared, dict)
        assert cleared["cleared_by"] == "system"
        assert cleared["cleared_at_s"] == start + 4 * 600
        assert cleared["acknowledged_by"] == "night-shift"  # the trail keeps who acknowledged
        wait_for("the cleared webhook", lambda: hooked("alarm.cleared"))
        trail = api.get(f"/v1/alarms/{alarm['id']}", headers=auth).json()["trail"]
        assert [(e["action"], e["actor"]) for e in trail] == [
            ("raised", "system"),
            ("acknowledged", "night-shift"),
            ("cleared", "system"),
        ]
    finally:
        stop.set()
        worker.stop()
        thread.join(10)
        pub.loop_stop()
        pub.disconnect()
        dispatcher.stop()
        receiver.stop()
