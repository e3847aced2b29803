"""Make the 3-node development network of deploy/compose.network.yaml (its `network-init` service).

Runs once, inside the oracle image: `oracle network init` for 3 nodes with k = 2, member URLs set to the
compose service names (http://node1:8101 ...), the contracts deployed on the compose anvil with the
members' signers and k (the transmitters funded from anvil's first development account), and the files
split so that each container gets only its own:

    OUT/shared/          network.json, deployment.json, nodes/<id>/ (mount points): every node and signer
    OUT/<id>/            the node's directory: transmitter/, peer/, signer-token (to call its signer)
    OUT/<id>-signer/     the signer's directory: keystore.json, passphrase, token (only its signer mounts it)

A second run finds OUT/shared/deployment.json and leaves everything as it is. Development only: the
passphrases sit beside the keystores, and the deployer is anvil's well-known first account.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

NODES = 3
THRESHOLD = 2
BASE_PORT = 8101
OWNER = (10001, 10001)  # the image's oracle user


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    os.chown(path, *OWNER)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), *OWNER)


def make_network(out: Path, rpc_url: str) -> bool:
    """Write the network under ``out``; False when one is there already."""
    from oracle.chain.anvil import dev_accounts
    from oracle.chain.client import connect
    from oracle.network.init import deploy_network, init_network
    from oracle.network.membership import NETWORK_FILE
    from oracle.network.node import DEPLOYMENT_FILE, NODES_DIR

    shared = out / "shared"
    if (shared / DEPLOYMENT_FILE).exists():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "net"
        result = init_network(net, nodes=NODES, threshold=THRESHOLD, base_port=BASE_PORT, name="compose")
        network = json.loads((net / NETWORK_FILE).read_text())
        for i, member in enumerate(network["members"]):
            member["url"] = f"http://{member['id']}:{BASE_PORT + i}"
        (net / NETWORK_FILE).write_text(json.dumps(network, indent=2) + "\n")
        deploy_network(connect(rpc_url), net, deployer=dev_accounts(1)[0])

        shared.mkdir(parents=True, exist_ok=True)
        for name in (NETWORK_FILE, DEPLOYMENT_FILE):
            shutil.copy(net / name, shared / name)
        for node_id in result.network.ids:
            src = net / NODES_DIR / node_id
            (shared / NODES_DIR / node_id).mkdir(parents=True, exist_ok=True)
            node = out / node_id
            node.mkdir(mode=0o700, parents=True, exist_ok=True)
            for part in ("transmitter", "peer"):
                shutil.copytree(src / part, node / part, dirs_exist_ok=True)
            shutil.copy(src / "signer" / "token", node / "signer-token")
            signer = out / f"{node_id}-signer"
            signer.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in ("keystore.json", "passphrase", "token"):
                shutil.copy(src / "signer" / name, signer / name)
    for child in out.iterdir():
        _chown_tree(child)
    return True


def main() -> int:
    out = Path(os.environ.get("NETWORK_OUT", "/out"))
    rpc_url = os.environ["ORACLE_CHAIN_RPC_URL"]
    made = make_network(out, rpc_url)
    print("network made" if made else "network exists; nothing changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
