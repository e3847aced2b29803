"""The deployed broker config, run by a real mosquitto (oracle.devstack.broker) with paho-mqtt 2 clients."""

from __future__ import annotations

import itertools
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.telemetry.worker import TOPIC_PREFIX, telemetry_topic
from oracle.broker_auth import MqttLogin
from oracle.devstack.broker import DEFAULT_CONF, BrokerProcess, derive_config, find_mosquitto, start_mosquitto
from oracle.errors import ConfigError, ToolError

pytestmark = pytest.mark.mqtt

# More than the default max_queued_messages (1000) plus the in-flight window (100): with the default
# limit a disconnected subscriber would lose at least 1900 of these.
MISSED = 3000
_ids = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}-{next(_ids)}"


def _topic(name: str) -> str:
    """A device's telemetry topic: what devices may publish and workers may subscribe to."""
    return telemetry_topic(_unique(name))


@dataclass
class Session:
    """A paho v5 client running its network loop in a thread, recording what arrives."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    session_present: bool = False
    connack_props: Properties | None = None
    received: queue.Queue[bytes] = field(default_factory=queue.Queue)

    def drain(self, *, expect: int, quiet: float = 1.5, limit: float = 60.0) -> list[bytes]:
        """Collect messages until ``expect`` arrived, or nothing came for ``quiet`` s, or ``limit`` s."""
        got: list[bytes] = []
        deadline = time.monotonic() + limit
        while len(got) < expect and time.monotonic() < deadline:
            try:
                got.append(self.received.get(timeout=quiet))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _connect(
    broker: BrokerProcess,
    client_id: str,
    *,
    persistent: bool,
    topic: str | None = None,
    login: MqttLogin | None = None,
) -> Session:
    """A session logged in as ``login``, by default the ingest workers' user (the broker refuses
    anonymous clients; workers may subscribe to every device's telemetry topic)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    login = login if login is not None else broker.worker_login
    client.username_pw_set(login.username, login.password)
    # paho allows changing the window only before connecting; 100 matches the broker's
    client.max_inflight_messages_set(100)
    s = Session(client)

    def on_connect(c: mqtt.Client, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        assert not rc.is_failure, f"CONNACK refused: {rc}"
        s.session_present = bool(flags.session_present)
        s.connack_props = props
        if topic is not None:
            c.subscribe(topic, qos=1)
        s.connected.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        assert all(not code.is_failure for code in codes), codes
        s.subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        s.received.put(msg.payload)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    if persistent:
        # A v5 session outlives the connection only with a non-zero expiry interval (seconds).
        props.SessionExpiryInterval = 3600
    client.connect(broker.host, broker.port, clean_start=not persistent, properties=props)
    client.loop_start()
    assert s.connected.wait(10), f"no CONNACK from {broker.url}: {broker.log_tail()}"
    if topic is not None:
        assert s.subscribed.wait(10), "no SUBACK"
    return s


def _publish(broker: BrokerProcess, topic: str, payloads: Iterator[bytes] | list[bytes]) -> int:
    """Publish QoS 1 as the topic's device and return once the broker acknowledged every message."""
    device = topic.removeprefix(TOPIC_PREFIX)
    pub = _connect(broker, _unique("pub"), persistent=False, login=broker.device_login(device))
    infos = [pub.client.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(timeout=30)
        assert info.is_published(), "broker did not acknowledge a QoS 1 publish"
    pub.close()
    return len(infos)


def _payloads(n: int, start: int = 0) -> list[bytes]:
    return [f"reading-{i}".encode() for i in range(start, start + n)]


def test_qos1_round_trip(mosquitto: BrokerProcess) -> None:
    topic = _topic("roundtrip")
    sub = _connect(mosquitto, _unique("sub"), persistent=False, topic=topic)
    try:
        _publish(mosquitto, topic, _payloads(50))
        got = sub.drain(expect=50)
    finally:
        sub.close()
    assert sorted(got) == sorted(_payloads(50))
    # mosquitto keeps per-subscriber order for QoS 1 within one topic
    assert got == _payloads(50)


def test_broker_announces_the_deployed_limits(mosquitto: BrokerProcess) -> None:
    """The CONNACK of an MQTT v5 session carries the limits from deploy/mosquitto.conf."""
    s = _connect(mosquitto, _unique("limits"), persistent=False)
    s.close()
    assert s.connack_props is not None
    assert s.connack_props.ReceiveMaximum == 100  # max_inflight_messages
    assert s.connack_props.MaximumPacketSize == 262144  # max_packet_size


def test_offline_persistent_session_keeps_more_than_the_default_queue(mosquitto: BrokerProcess) -> None:
    topic = _topic("offline")
    client_id = _unique("worker")
    sub = _connect(mosquitto, client_id, persistent=True, topic=topic)
    sub.close()

    _publish(mosquitto, topic, _payloads(MISSED))

    back = _connect(mosquitto, client_id, persistent=True)
    try:
        assert back.session_present, "the broker forgot the persistent session"
        got = back.drain(expect=MISSED)
    finally:
        back.close()
    assert set(got) == set(_payloads(MISSED)), f"lost {MISSED - len(set(got))} of {MISSED} queued messages"


def test_default_queue_limit_drops_messages(tmp_path: Path) -> None:
    """Control for the test above: the same config without max_queued_messages loses readings."""
    conf = tmp_path / "default-queue.conf"
    conf.write_text(
        "\n".join(ln for ln in DEFAULT_CONF.read_text().splitlines() if not ln.startswith("max_queued"))
    )
    topic, client_id = telemetry_topic("control"), "worker-control"
    with start_mosquitto(data_dir=tmp_path / "broker", conf=conf) as broker:
        _connect(broker, client_id, persistent=True, topic=topic).close()
        _publish(broker, topic, _payloads(MISSED))
        back = _connect(broker, client_id, persistent=True)
        got = back.drain(expect=MISSED)
        back.close()
    assert 1000 <= len(set(got)) < MISSED, len(got)


def test_restart_keeps_queued_messages_and_sessions(private_mosquitto: BrokerProcess) -> None:
    broker = private_mosquitto
    topic, client_id = telemetry_topic("restart"), "worker-restart"
    _connect(broker, client_id, persistent=True, topic=topic).close()
    _publish(broker, topic, _payloads(1500))

    # SIGTERM: mosquitto saves its database on the way out; same port and data dir on the way back
    broker.restart()

    _publish(broker, topic, _payloads(1500, start=1500))
    back = _connect(broker, client_id, persistent=True)
    try:
        assert back.session_present, "the session did not survive the restart"
        got = back.drain(expect=3000)
    finally:
        back.close()
    assert set(got) == set(_payloads(3000))
    assert (broker.data_dir / "mosquitto.db").stat().st_size > 0


# --- the launcher itself -------------------------------------------------------------------


def _options(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_derived_config_keeps_every_deployed_setting(tmp_path: Path) -> None:
    base = DEFAULT_CONF.read_text()
    derived = derive_config(base, port=12345, data_dir=tmp_path)
    owned = ("listener", "persistence_location", "user", "pid_file", "log_dest", "plugin")
    kept = [o for o in _options(base) if not o.startswith(owned)]
    assert [o for o in _options(derived) if not o.startswith(owned)] == kept
    assert "listener 12345 127.0.0.1" in _options(derived)
    assert f"persistence_location {tmp_path.resolve()}/" in _options(derived)
    assert "max_queued_messages 1000000" in kept


def test_derived_config_refuses_two_listeners(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="2 listeners"):
        derive_config("listener 1883\nlistener 8883\n", port=1, data_dir=tmp_path)


def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="apt-get install mosquitto"):
        find_mosquitto(search_path=str(tmp_path), fallback=tmp_path / "mosquitto")
    assert find_mosquitto().name == "mosquitto"


def test_missing_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read mosquitto config"):
        start_mosquitto(data_dir=tmp_path, conf=tmp_path / "nope.conf")


def test_broken_config_reports_the_broker_log(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 1883\nmax_queued_messagez 10\n")
    with pytest.raises(ToolError, match=r"exited with status.*max_queued_messagez"):
        start_mosquitto(data_dir=tmp_path / "b", conf=conf).stop()


def test_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ToolError, match="already in use"):
            start_mosquitto(data_dir=tmp_path, port=port)


def test_stop_then_start_again_on_the_same_port(tmp_path: Path) -> None:
    broker = start_mosquitto(data_dir=tmp_path)
    port = broker.port
    broker.kill()
    assert not broker.running
    broker.start()
    try:
        assert broker.running
        assert broker.port == port
        assert broker.url == f"mqtt://127.0.0.1:{port}"
    finally:
        broker.stop()
    assert not broker.running
