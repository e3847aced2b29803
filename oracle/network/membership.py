"""Who is in the network: the network file, and a node's own identity key for peer messages.

The network file (``network.json``) lists every member with its node id, the address of its report
signer (what the router counts towards k), the address of its *peer key* (what signs its messages to
other nodes; it is not a money key and never signs reports) and the base URL of its API, where the peer
endpoints live under ``/v1/peer``. It also fixes k, the signatures a report needs, and how long the
next node in the transmission schedule waits before it takes over.

k must be a strict majority of the members: two quorums then always share a member, so an honest
member's signature is needed for any report, and two different reports for one epoch cannot both reach
k without a member signing both (the signer refuses that, see :mod:`oracle.signer.policy`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address

from oracle.errors import ConfigError

NETWORK_FILE = "network.json"
FORMAT_VERSION = 1
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
#: Most members a network may have (the router's MAX_SIGNERS).
MAX_MEMBERS = 32


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    signer: str
    peer_key: str
    url: str
    #: The account that pays gas for this node's transmissions (optional; shown, never trusted).
    transmitter: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"id": self.id, "signer": self.signer, "peer_key": self.peer_key, "url": self.url}
        if self.transmitter:
            out["transmitter"] = self.transmitter
        return out


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    threshold: int
    members: tuple[Member, ...]
    #: Seconds the next node in the transmission schedule waits for the one before it.
    transmit_timeout_s: float = 3.0
    #: Report policy, the same on every node so that all decide alike whether to sign: a *revised*
    #: drought report for a period the router already holds is signed only when its value moved by at
    #: least ``deviation`` (severity units) or ``heartbeat_s`` passed since the one on-chain. A subject
    #: with no accepted report for ``heartbeat_s`` is flagged in /metrics.
    deviation: float = 0.1
    heartbeat_s: int = 35 * 86_400

    def __post_init__(self) -> None:
        n = len(self.members)
        if not _ID.match(self.name):
            raise ConfigError(f"network name {self.name!r}: lower-case letters, digits and '-', at most 32")
        if not 1 <= n <= MAX_MEMBERS:
            raise ConfigError(f"a network has 1 to {MAX_MEMBERS} members, not {n}")
        if not n // 2 < self.threshold <= n:
            raise ConfigError(
                f"threshold {self.threshold} must be a strict majority of the {n} members "
                f"(between {n // 2 + 1} and {n})"
            )
        if not 0.1 <= self.transmit_timeout_s <= 600:
            raise ConfigError("transmit_timeout_s must be between 0.1 and 600 seconds")
        if not 0 <= self.deviation <= 5:
            raise ConfigError("deviation must be between 0 and 5 severity units")
        if not 60 <= self.heartbeat_s <= 400 * 86_400:
            raise ConfigError("heartbeat_s must be between a minute and 400 days")
        for field_name in ("id", "signer", "peer_key", "url"):
            values = [getattr(m, field_name).lower() for m in self.members]
            if len(set(values)) != n:
                raise ConfigError(f"two members share the same {field_name}")

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.members]

    def member(self, node_id: str) -> Member:
        for m in self.members:
            if m.id == node_id:
                return m
        raise ConfigError(f"{node_id!r} is not a member of network {self.name!r} ({', '.join(self.ids)})")

    def by_transmitter(self, address: str) -> Member | None:
        want = address.lower()
        return next((m for m in self.members if m.transmitter and m.transmitter.lower() == want), None)

    def by_signer(self, address: str) -> Member | None:
        want = address.lower()
        return next((m for m in self.members if m.signer.lower() == want), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "name": self.name,
            "threshold": self.threshold,
            "transmit_timeout_s": self.transmit_timeout_s,
            "report_policy": {"deviation": self.deviation, "heartbeat_s": self.heartbeat_s},
            "members": [m.to_json() for m in self.members],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, data: Any, *, source: str = "network file") -> Network:
        try:
            if data.get("version") != FORMAT_VERSION:
                raise ConfigError(f"{source}: version {data.get('version')!r}, expected {FORMAT_VERSION}")
            members = tuple(_member(m, source) for m in data["members"])
            return cls(
                name=str(data["name"]),
                threshold=int(data["threshold"]),
                members=members,
                transmit_timeout_s=float(data.get("transmit_timeout_s", 3.0)),
                deviation=float((data.get("report_policy") or {}).get("deviation", 0.1)),
                heartbeat_s=int((data.get("report_policy") or {}).get("heartbeat_s", 35 * 86_400)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{source} is malformed: {type(e).__name__}: {e}") from None

    @classmethod
    def load(cls, directory_or_file: Path) -> Network:
        path = directory_or_file
        if path.is_dir():
            path = path / NETWORK_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no network file at {path} (make one with `oracle network init`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read the network file {path}: {e}") from None
        return cls.from_json(data, source=str(path))


def _member(raw: Any, source: str) -> Member:
    node_id = str(raw["id"])
    if not _ID.match(node_id):
        raise ConfigError(f"{source}: node id {node_id!r}: lower-case letters, digits and '-', at most 32")
    addresses = {}
    for key in ("signer", "peer_key"):
        value = str(raw[key])
        if not is_hex_address(value):
            raise ConfigError(f"{source}: member {node_id}: {key} {value!r} is not an address")
        addresses[key] = str(to_checksum_address(value))
    url = str(raw["url"]).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: member {node_id}: url {url!r} is not http(s)")
    transmitter = str(raw.get("transmitter") or "")
    if transmitter and not is_hex_address(transmitter):
        raise ConfigError(f"{source}: member {node_id}: transmitter {transmitter!r} is not an address")
    return Member(
        id=node_id,
        signer=addresses["signer"],
        peer_key=addresses["peer_key"],
        url=url,
        transmitter=str(to_checksum_address(transmitter)) if transmitter else "",
    )


# ---------------------------------------------------------------------------------------------- identity

PEER_DIR = "peer"
_KEYSTORE = "keystore.json"
_PASSPHRASE_FILE_NAME = "passphrase"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class NodeIdentity:
    """This node's id and the key that signs its peer messages (never a report)."""

    node_id: str
    account: LocalAccount

    @property
    def address(self) -> str:
        return str(to_checksum_address(self.account.address))

    def __repr__(self) -> str:
        return f"NodeIdentity(node_id={self.node_id!r}, address={self.address})"


def create_peer_key(node_dir: Path, *, passphrase: str) -> str:
    """Write a new peer keystore (and, for a development network, its passphrase) under ``node_dir``;
    returns its address. Refuses to overwrite one."""
    d = node_dir / PEER_DIR
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (d / _KEYSTORE).exists():
        raise ConfigError(f"{d / _KEYSTORE} exists; refusing to replace a node's identity")
    account = Account.create()
    # A peer key authenticates messages, it moves no money: a light KDF keeps a node's start fast.
    keystore = Account.encrypt(account.key, passphrase, kdf="pbkdf2", iterations=100_000)
    _write_private(d / _PASSPHRASE_FILE_NAME, passphrase + "\n")
    _write_private(d / _KEYSTORE, json.dumps(keystore))
    return str(to_checksum_address(account.address))


def load_identity(node_dir: Path, node_id: str) -> NodeIdentity:
    d = node_dir / PEER_DIR
    try:
        keystore = json.loads((d / _KEYSTORE).read_text())
        key = Account.decrypt(keystore, (d / _PASSPHRASE_FILE_NAME).read_text().strip())
    except FileNotFoundError as e:
        raise ConfigError(f"node {node_id} has no peer key in {d}: {e.filename}") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot open the peer key in {d}: {type(e).__name__}") from None
    return NodeIdentity(node_id, Account.from_key(key))


def _write_private(path: Path, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
