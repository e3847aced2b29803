"""Broker credentials: how the oracle's MQTT clients log in, and how devices get theirs.

The broker (``deploy/mosquitto.conf``) refuses anonymous clients and decides who may do what with
mosquitto's dynamic-security plugin. Three kinds of broker user exist:

- **devices**: user name = device id, one role each (``device-<id>``) allowing exactly: publish on
  ``oracle/v1/telemetry/<id>``, subscribe to and receive ``oracle/v1/receipts/<id>``. Nothing else,
  so a device cannot publish as another device, read another device's receipts, or join the ingest
  workers' shared subscription and take a share of the readings.
- **ingest workers** (:data:`WORKER_USER`, role :data:`WORKER_ROLE`): subscribe to the telemetry
  topics, plain or through ``$share/<group>/...``, and publish receipts.
- **the admin** (:data:`ADMIN_USER`, role :data:`ADMIN_ROLE`): the dynamic-security control topic only.
  ``oracle devices add`` / ``revoke`` log in as it to create and delete device users
  (:class:`BrokerAdmin`); the broker applies each change at once (a deleted user's connection is
  closed), with no reload.

Why the plugin and not a password file with an ACL file: mosquitto 2.0's ACL file is checked when a
message is delivered, not when a client subscribes, so a device may still join
``$share/oracle-ingest/...``; the broker then hands it its share of the readings and drops them for
lack of read access, and the gaps are scored as a breach. The plugin refuses the SUBSCRIBE itself.

Passwords are 256-bit random strings drawn here. The broker keeps only a salted PBKDF2-SHA512 hash
(the plugin's JSON file); the oracle keeps none: a device's password is shown once, or written to a
file for the operator to hand over. Clients read their own password from a file
(``ORACLE_MQTT_PASSWORD_FILE``), never from the URL or the environment, and it is never logged.
Broker login is a second gate: device envelopes stay signed (ES256/EdDSA) and verified as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from oracle.errors import ConfigError, ToolError

WORKER_USER = "oracle-ingest"
"""The broker user the ingest workers log in as (``ORACLE_MQTT_USERNAME``)."""
ADMIN_USER = "oracle-admin"
"""The broker user that manages device users (``ORACLE_MQTT_ADMIN_USERNAME``)."""
WORKER_ROLE = "oracle-ingest"
ADMIN_ROLE = "oracle-admin"
RESERVED_USERS = frozenset({WORKER_USER, ADMIN_USER})
"""Not available as device ids: a device must never log in as a worker or the admin."""

TELEMETRY_PREFIX = "oracle/v1/telemetry/"
RECEIPT_PREFIX = "oracle/v1/receipts/"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC = CONTROL_TOPIC + "/response"

PBKDF2_ITERATIONS = 101
"""What ``mosquitto_ctrl``/``mosquitto_passwd`` use. The passwords are 256-bit random strings, so the
iteration count adds nothing against guessing; it only costs the broker time at each CONNECT."""
_MAX_PASSWORD_FILE = 4096


@dataclass(frozen=True)
class MqttLogin:
    """A broker user name and password; ``repr`` never shows the password."""

    username: str
    password: str = field(repr=False)


def new_password() -> str:
    """A fresh broker password: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def read_password_file(path: Path, setting: str) -> str:
    """The password in ``path`` (surrounding whitespace stripped).

    :raises ConfigError: naming ``setting``, when the file is missing, unreadable, empty or too large.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{setting}: cannot read {path}: {e.strerror}") from None
    if len(raw) > _MAX_PASSWORD_FILE:
        raise ConfigError(f"{setting}: {path} is too large for a password file")
    password = raw.decode("utf-8", errors="strict").strip() if raw else ""
    if not password:
        raise ConfigError(f"{setting}: {path} is empty")
    return password


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing any previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def worker_login(settings: Any) -> MqttLogin | None:
    """The login of this node's MQTT clients (``ORACLE_MQTT_USERNAME`` + ``_PASSWORD_FILE``), or None."""
    if not settings.mqtt_username:
        return None
    return MqttLogin(
        settings.mqtt_username, read_password_file(settings.mqtt_password_file, "ORACLE_MQTT_PASSWORD_FILE")
    )


def admin_login(settings: Any) -> MqttLogin | None:
    """The broker admin's login (``ORACLE_MQTT_ADMIN_USERNAME`` + ``_PASSWORD_FILE``), or None."""
    if not settings.mqtt_admin_username:
        return None
    return MqttLogin(
        settings.mqtt_admin_username,
        read_password_file(settings.mqtt_admin_password_file, "ORACLE_MQTT_ADMIN_PASSWORD_FILE"),
    )


def apply_login(client: Any, login: MqttLogin | None, *, tls: bool, ca_file: Path | None = None) -> None:
    """Give a paho client its user name and password, and TLS (verified against ``ca_file``, or the
    system's CAs when None) for ``mqtts://``."""
    if login is not None:
        client.username_pw_set(login.username, login.password)
    if tls:
        if ca_file is not None and not ca_file.is_file():
            raise ConfigError(f"ORACLE_MQTT_CA_FILE: no such file {ca_file}")
        client.tls_set(ca_certs=str(ca_file) if ca_file is not None else None)


def connect_mqtt(
    url: str,
    client_id: str,
    *,
    login: MqttLogin | None,
    ca_file: Path | None = None,
    timeout: float = 10.0,
) -> Any:
    """A connected MQTT v5 paho client (network loop running) for ``mqtt://`` or ``mqtts://`` ``url``.

    :raises ToolError: the broker refused the login or did not answer within ``timeout`` seconds.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from ingest.telemetry.mqtt_poll import install

    install()  # paho's select() would never connect a socket numbered 1,024 or above
    u = urlsplit(url)
    tls = u.scheme == "mqtts"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    apply_login(client, login, tls=tls, ca_file=ca_file)
    connected = threading.Event()
    outcome: list[Any] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome.append(reason)
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883))
    except OSError as e:
        raise ToolError(f"MQTT broker at {u.hostname}:{u.port}: {e.strerror or e}") from None
    client.loop_start()
    if not connected.wait(timeout) or outcome[0].is_failure:
        client.loop_stop()
        client.disconnect()
        why = outcome[0] if outcome else "no answer"
        raise ToolError(f"MQTT broker at {u.hostname}:{u.port} refused {client_id}: {why}")
    return client


# --- dynamic security ---------------------------------------------------------------------------------


def device_role(device_id: str) -> str:
    return f"device-{device_id}"


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """Exactly what a device may do: publish its telemetry, read its receipts."""
    return [
        {"acltype": "publishClientSend", "topic": TELEMETRY_PREFIX + device_id, "allow": True},
        {"acltype": "subscribeLiteral", "topic": RECEIPT_PREFIX + device_id, "allow": True},
        {"acltype": "publishClientReceive", "topic": RECEIPT_PREFIX + device_id, "allow": True},
    ]


def worker_acls() -> list[dict[str, Any]]:
    """What an ingest worker may do: subscribe (plain or shared) to telemetry, publish receipts."""
    return [
        {"acltype": "subscribePattern", "topic": TELEMETRY_PREFIX + "+", "allow": True},
        {"acltype": "subscribePattern", "topic": "$share/+/" + TELEMETRY_PREFIX + "+", "allow": True},
        {"acltype": "publishClientReceive", "topic": TELEMETRY_PREFIX + "+", "allow": True},
        {"acltype": "publishClientSend", "topic": RECEIPT_PREFIX + "+", "allow": True},
    ]


def admin_acls() -> list[dict[str, Any]]:
    return [
        {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "$CONTROL/dynamic-security/#", "allow": True},
        {"acltype": "subscribePattern", "topic": "$CONTROL/dynamic-security/#", "allow": True},
    ]


def hashed_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's stored form of ``password``: base64 PBKDF2-HMAC-SHA512 hash, salt, iterations."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


def initial_dynsec_config(*, admin_password: str, worker_password: str) -> dict[str, Any]:
    """The plugin's first configuration file: the admin and the ingest worker users, their roles, and
    defaults that deny every publish and subscribe nobody was given. Devices are added at run time."""
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": ADMIN_USER,
                "textname": "oracle: manages device credentials",
                **hashed_password(admin_password),
                "roles": [{"rolename": ADMIN_ROLE}],
            },
            {
                "username": WORKER_USER,
                "textname": "oracle: ingest workers",
                **hashed_password(worker_password),
                "roles": [{"rolename": WORKER_ROLE}],
            },
        ],
        "groups": [],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls()},
            {"rolename": WORKER_ROLE, "acls": worker_acls()},
        ],
    }


class BrokerAdmin:
    """Creates and deletes device users through the dynamic-security plugin's control topic.

    Use as a context manager; each call sends one batch of commands and waits for the broker's answer.
    """

    def __init__(
        self, url: str, login: MqttLogin, *, ca_file: Path | None = None, timeout: float = 10.0
    ) -> None:
        self.timeout = timeout
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._arrived = threading.Condition()
        self._client = connect_mqtt(
            url, f"oracle-admin-{uuid.uuid4().hex[:12]}", login=login, ca_file=ca_file, timeout=timeout
        )
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_a: subscribed.set()
        self._client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(timeout):
            self.close()
            raise ToolError("MQTT broker did not confirm the admin's subscription to its control topic")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._arrived:
            for r in responses:
                key = str(r.get("correlationData", ""))
                self._answers.setdefault(key, []).append(r)
            self._arrived.notify_all()

    def call(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Send ``commands``; return the broker's response to each (with ``error`` when it failed)."""
        token = uuid.uuid4().hex
        batch = [{**c, "correlationData": f"{token}-{i}"} for i, c in enumerate(commands)]
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
        keys = [c["correlationData"] for c in batch]
        with self._arrived:
            if not self._arrived.wait_for(lambda: all(k in self._answers for k in keys), self.timeout):
                raise ToolError("MQTT broker did not answer the dynamic-security commands in time")
            return [self._answers.pop(k)[0] for k in keys]

    def issue_device(self, device_id: str) -> str:
        """Create (or re-key) the device's broker user with its own role; return the new password."""
        if device_id in RESERVED_USERS:
            raise ConfigError(f"{device_id!r} is the broker user of the oracle itself, not a device id")
        password = new_password()
        role = device_role(device_id)
        answers = self.call(
            {"command": "createRole", "rolename": role},
            *({"command": "addRoleACL", "rolename": role, **acl} for acl in device_acls(device_id)),
            {
                "command": "createClient",
                "username": device_id,
                "password": password,
                "textname": f"device {device_id}",
                "roles": [{"rolename": role}],
            },
        )
        if answers[-1].get("error") == "Client already exists":
            # A device re-added (a new logger in the same slot, a lost password): a new password, the
            # old one stops working, and the device's role is attached again.
            answers = self.call(
                {"command": "setClientPassword", "username": device_id, "password": password},
                {"command": "addClientRole", "username": device_id, "rolename": role},
            )
            answers = answers[:1]
        for a in answers:
            error = a.get("error")
            if error and "already" not in error:
                raise ToolError(f"MQTT broker refused {a.get('command')} for device {device_id}: {error}")
        return password

    def revoke_device(self, device_id: str) -> bool:
        """Delete the device's broker user (its connections are closed at once) and its role; True when
        the user existed."""
        answers = self.call(
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": device_role(device_id)},
        )
        error = answers[0].get("error")
        if error and "not found" not in error.lower():
            raise ToolError(f"MQTT broker refused deleteClient for device {device_id}: {error}")
        return not error

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def __enter__(self) -> BrokerAdmin:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
