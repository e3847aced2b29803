"""An MQTT client connects in a process that holds more than 1,024 descriptors.

paho-mqtt waits with select(), which cannot watch a descriptor numbered 1,024 or above; such a client
never sent CONNECT and its caller saw "no answer" (every MQTT test after the suite's process passed 1,024
descriptors failed that way). ingest/telemetry/mqtt_poll.py makes paho wait with poll().
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from oracle.devstack.broker import BrokerProcess

PROBE = textwrap.dedent(
    """
    import os, sys
    from oracle.broker_auth import MqttLogin, connect_mqtt
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    login = MqttLogin(sys.argv[2], sys.argv[3])
    if sys.argv[4] == "select":  # paho as shipped
        import ingest.telemetry.mqtt_poll as m
        m._installed = True
    client = connect_mqtt(sys.argv[1], "many-fds-" + sys.argv[4], login=login, timeout=5)
    fd = client.socket().fileno()
    assert fd >= 1024, fd
    info = client.publish("oracle/v1/receipts/many-fds", b"x", qos=1)
    info.wait_for_publish(timeout=5)
    print("connected on descriptor", fd)
    client.loop_stop()
    client.disconnect()
    """
)


def _probe(broker: BrokerProcess, mode: str) -> subprocess.CompletedProcess[str]:
    login = broker.worker_login
    return subprocess.run(
        [sys.executable, "-c", PROBE, broker.url, login.username, login.password, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def test_a_client_connects_on_a_descriptor_above_1024(mosquitto: BrokerProcess) -> None:
    done = _probe(mosquitto, "poll")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "connected on descriptor" in done.stdout


def test_without_the_poll_loop_paho_never_connects_there(mosquitto: BrokerProcess) -> None:
    """The fault is real: paho's own select() loop gives "no answer" on such a descriptor."""
    done = _probe(mosquitto, "select")
    assert done.returncode != 0
    assert "no answer" in done.stderr
