"""One member of a network, as ``oracle run --node ID --network DIR`` runs it.

A node's directory is ``DIR/nodes/ID``: its own database, content store, signer keystore (the signer
runs as its own child process; the key never enters the node), transmitter key and peer key. What the
members share lives in ``DIR``: the network file, the contract deployment record, and, for a local
development network, where its anvil and broker answer (``DIR/chain/rpc_url``, ``DIR/mqtt_url``) and
how its nodes log in to that broker (``DIR/mqtt_login.json``: user names and password *files*, never a
password).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

from oracle.config import Settings
from oracle.errors import ConfigError
from oracle.network.membership import Network

NODES_DIR = "nodes"
DEPLOYMENT_FILE = "deployment.json"
RPC_URL_FILE = Path("chain") / "rpc_url"
MQTT_URL_FILE = "mqtt_url"
#: ``{"mqtt_username": ..., "mqtt_password_file": ..., "mqtt_admin_username": ...,
#: "mqtt_admin_password_file": ...}``: the shared development broker's worker and admin logins.
MQTT_LOGIN_FILE = "mqtt_login.json"
_LOGIN_KEYS = ("mqtt_username", "mqtt_password_file", "mqtt_admin_username", "mqtt_admin_password_file")


def write_mqtt_login(network_dir: Path, broker_settings: dict[str, object]) -> None:
    """Record where the network's nodes find their broker logins (from ``BrokerProcess.client_settings``)."""
    login = {k: str(broker_settings[k]) for k in _LOGIN_KEYS}
    (network_dir / MQTT_LOGIN_FILE).write_text(json.dumps(login, indent=2) + "\n")


def _read_mqtt_login(network_dir: Path) -> dict[str, object]:
    path = network_dir / MQTT_LOGIN_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) for k in _LOGIN_KEYS):
        raise ConfigError(f"{path} must map {', '.join(_LOGIN_KEYS)} to strings")
    return {k: Path(data[k]) if k.endswith("_file") else data[k] for k in _LOGIN_KEYS}


#: Optional, in a node's directory: ``{"node2": "http://10.0.0.2:8102", ...}``, how this node reaches
#: those peers when not at the network file's URLs (the URLs peers advertise stay the network file's).
PEER_URLS_FILE = "peers.json"


def peer_urls(node_directory: Path) -> dict[str, str]:
    path = node_directory / PEER_URLS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
        for k, v in data.items()
    ):
        raise ConfigError(f"{path} must map node ids to http(s) URLs")
    return {str(k): str(v) for k, v in data.items()}


def node_dir(network_dir: Path, node_id: str) -> Path:
    return network_dir / NODES_DIR / node_id


def node_settings(base: Settings, network_dir: Path, node_id: str) -> Settings:
    """``base`` with this member's data directory, API address, MQTT identity, chain and broker."""
    network = Network.load(network_dir)
    member = network.member(node_id)
    d = node_dir(network_dir, node_id)
    if not d.is_dir():
        raise ConfigError(f"no node directory {d}; was the network made with `oracle network init`?")
    url = urlparse(member.url)
    updates: dict[str, object] = {
        "data_dir": d,
        "api_port": url.port or (443 if url.scheme == "https" else 80),
        # Every node ingests the whole stream itself: its own client id and its own subscription group.
        "mqtt_client_id": f"oracle-{network.name}-{node_id}"[:64],
        "mqtt_share_group": f"{network.name}-{node_id}"[:64],
    }
    if url.hostname and base.api_host == "127.0.0.1":
        updates["api_host"] = url.hostname
    if not base.chain_rpc_url:
        updates["chain_rpc_url"] = _read_shared(
            network_dir / RPC_URL_FILE, "chain RPC URL", "ORACLE_CHAIN_RPC_URL"
        )
    if not base.mqtt_url:
        updates["mqtt_url"] = _read_shared(network_dir / MQTT_URL_FILE, "MQTT broker URL", "ORACLE_MQTT_URL")
        if not base.mqtt_username:
            updates.update(_read_mqtt_login(network_dir))
    shared = network_dir / DEPLOYMENT_FILE
    if not shared.exists():
        raise ConfigError(f"the network has no contract deployment record at {shared}")
    own = d / DEPLOYMENT_FILE
    if not own.exists() or json.loads(own.read_text()) != json.loads(shared.read_text()):
        shutil.copyfile(shared, own)
    return base.model_copy(update=updates)


def _read_shared(path: Path, what: str, setting: str) -> str:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no {what}: set {setting} or start the network's chain and broker ({path})"
        ) from None
    if not value:
        raise ConfigError(f"{path} is empty; set {setting}")
    return value
