"""``oracle network init``: a local development network of N nodes with threshold k.

For each node it writes, under ``DIR/nodes/<id>``, a signer keystore (its passphrase beside it: this is
a development network; production signers take ``oracle signer keygen --passphrase-file``), a transmitter
keystore and a peer key, then the network file listing every member. Nothing here touches a chain: the
router is deployed with the members' signer addresses and k by whoever starts the network's chain
(:func:`deploy_network`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_utils.address import to_checksum_address

from oracle.errors import ConfigError
from oracle.network.membership import NETWORK_FILE, Member, Network, create_peer_key
from oracle.network.node import DEPLOYMENT_FILE, node_dir

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from oracle.chain.deploy import Deployment


@dataclass(frozen=True)
class InitResult:
    network: Network
    directory: Path
    transmitters: dict[str, str]


def init_network(
    directory: Path,
    *,
    nodes: int,
    threshold: int,
    host: str = "127.0.0.1",
    base_port: int = 8101,
    name: str = "dev",
    transmit_timeout_s: float = 3.0,
    ports: list[int] | None = None,
) -> InitResult:
    """Write keys, node directories and the network file; refuses a directory that has a network."""
    from oracle.signer.keys import KEYSTORE_FILE, PASSPHRASE_FILE, generate_keystore, new_passphrase

    if not 1 <= nodes <= 32:
        raise ConfigError("--nodes must be between 1 and 32")
    if (directory / NETWORK_FILE).exists():
        raise ConfigError(f"{directory / NETWORK_FILE} exists; refusing to replace a network's keys")
    ports = ports or [base_port + i for i in range(nodes)]
    if len(ports) != nodes:
        raise ConfigError("one port per node")
    ids = [f"node{i + 1}" for i in range(nodes)]
    # Validate k before writing any key.
    Network(
        name=name,
        threshold=threshold,
        members=tuple(
            Member(i, f"0x{n + 1:040x}", f"0x{n + 101:040x}", f"http://{host}:{p}")
            for n, (i, p) in enumerate(zip(ids, ports, strict=True))
        ),
        transmit_timeout_s=transmit_timeout_s,
    )
    directory.mkdir(parents=True, exist_ok=True)
    members: list[Member] = []
    transmitters: dict[str, str] = {}
    for node_id, port in zip(ids, ports, strict=True):
        d = node_dir(directory, node_id)
        d.mkdir(parents=True, exist_ok=True)
        signer_dir = d / "signer"
        if (signer_dir / KEYSTORE_FILE).exists():
            signer = "0x" + str(json.loads((signer_dir / KEYSTORE_FILE).read_text())["address"]).removeprefix(
                "0x"
            )
        else:
            signer = generate_keystore(
                signer_dir, passphrase=new_passphrase(), passphrase_file=signer_dir / PASSPHRASE_FILE
            ).address
        peer = create_peer_key(d, passphrase=secrets.token_urlsafe(24))
        transmitters[node_id] = _create_transmitter(d)
        members.append(
            Member(
                node_id,
                str(to_checksum_address(signer)),
                peer,
                f"http://{host}:{port}",
                transmitter=transmitters[node_id],
            )
        )
    network = Network(
        name=name, threshold=threshold, members=tuple(members), transmit_timeout_s=transmit_timeout_s
    )
    network.save(directory / NETWORK_FILE)
    return InitResult(network, directory, transmitters)


def _create_transmitter(d: Path) -> str:
    from eth_account import Account

    from oracle.devstack.localchain import _write_private

    t = d / "transmitter"
    t.mkdir(mode=0o700, parents=True, exist_ok=True)
    account = Account.create()
    passphrase = secrets.token_urlsafe(32)
    _write_private(t / "passphrase", passphrase + "\n")
    _write_private(
        t / "keystore.json",
        json.dumps(Account.encrypt(account.key, passphrase, kdf="pbkdf2", iterations=100_000)),
    )
    return str(to_checksum_address(account.address))


def transmitter_address(network_dir: Path, node_id: str) -> str:
    keystore = json.loads((node_dir(network_dir, node_id) / "transmitter" / "keystore.json").read_text())
    return str(to_checksum_address("0x" + str(keystore["address"]).removeprefix("0x")))


def deploy_network(
    w3: Web3,
    network_dir: Path,
    *,
    deployer: LocalAccount,
    funding_wei: int = 10 * 10**18,
    model_delay: int | None = None,
) -> Deployment:
    """Deploy the contracts with the members' signers and k, fund every transmitter, and write the
    shared deployment record."""
    from oracle.chain.deploy import DEFAULT_MODEL_DELAY, deploy_all
    from oracle.devstack.localchain import shipped_model_approvals, transact_value

    network = Network.load(network_dir)
    dep = deploy_all(
        w3,
        deployer=deployer,
        signers=[m.signer for m in network.members],
        threshold=network.threshold,
        models=shipped_model_approvals(),
        model_delay=DEFAULT_MODEL_DELAY if model_delay is None else model_delay,
    )
    for m in network.members:
        transact_value(w3, deployer, transmitter_address(network_dir, m.id), funding_wei)
    dep.save(network_dir / DEPLOYMENT_FILE)
    return dep
