"""deploy/k8s/network: a 3-node network (k = 2), each node with its own volume and its own signer.

Read for the wiring (which pod mounts which key, which NetworkPolicy admits whom), and run where it
can be run here: the node pod's start script against a network made by `oracle network init`, whose
layout `oracle run --network DIR --node ID` must accept, and the signer pod's TCP relay against a
real HTTP server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from oracle.devstack.broker import free_port

NETWORK = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "network"
EXAMPLES = NETWORK.parent / "examples"
NODE_IDS = ["node1", "node2", "node3"]
NODE_LABEL = "oracle.network/node-id"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in _docs(NETWORK / "kustomization.yaml")[0]["resources"]:
        for doc in _docs(NETWORK / name):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = obj["spec"]["template"]["spec"]
    return pod


def _containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _pod(obj)["containers"]}


def _workloads(objects: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for (kind, _), o in objects.items() if kind in ("Deployment", "StatefulSet")]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_nodes_are_a_statefulset_with_their_own_volumes(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    nodes = objects[("StatefulSet", "oracle-node")]
    assert nodes["spec"]["replicas"] == len(NODE_IDS)
    service = objects[("Service", nodes["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    assert _matches(service["spec"]["selector"], nodes["spec"]["template"]["metadata"]["labels"])
    claims = {t["metadata"]["name"]: t for t in nodes["spec"]["volumeClaimTemplates"]}
    assert claims["node"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in _containers(nodes)["node"]["volumeMounts"]}
    assert mounts["node"] == "/var/lib/oracle/node"
    # The node's state is on its claim, not on a volume shared between the pods.
    assert not any("persistentVolumeClaim" in v for v in _pod(nodes)["volumes"])
    budget = objects[("PodDisruptionBudget", "oracle-node")]
    assert budget["spec"]["maxUnavailable"] == 1  # k = 2 of 3
    assert _matches(
        budget["spec"]["selector"]["matchLabels"], nodes["spec"]["template"]["metadata"]["labels"]
    )


@pytest.mark.parametrize("ordinal", range(len(NODE_IDS)))
def test_each_signer_is_its_own_workload_admitting_only_its_node(
    objects: dict[tuple[str, str], dict[str, Any]], ordinal: int
) -> None:
    node_id = NODE_IDS[ordinal]
    signer = objects[("Deployment", f"oracle-signer-{node_id}")]
    assert signer["spec"]["replicas"] == 1
    assert signer["spec"]["strategy"]["type"] == "Recreate"
    labels = signer["spec"]["template"]["metadata"]["labels"]
    assert labels[NODE_LABEL] == node_id
    containers = _containers(signer)
    args = containers["signer"]["args"]
    assert args[:2] == ["signer", "serve"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    relay_port = next(p for p in containers["forward"]["ports"] if p["name"] == "signer")["containerPort"]
    relay_env = {e["name"]: e["value"] for e in containers["forward"]["env"]}
    assert relay_env == {
        "FORWARD_LISTEN_PORT": str(relay_port),
        "FORWARD_TARGET_PORT": args[args.index("--port") + 1],
    }
    token = next(e for e in containers["signer"]["env"] if e["name"] == "ORACLE_SIGNER_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "oracle-network-secrets",
        "key": f"{node_id}-signer-token",
    }
    claim = next(v for v in _pod(signer)["volumes"] if "persistentVolumeClaim" in v)
    assert ("PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"]) in objects

    service = objects[("Service", f"oracle-signer-{node_id}")]
    assert _matches(service["spec"]["selector"], labels)
    assert service["spec"]["selector"][NODE_LABEL] == node_id
    assert service["spec"]["ports"] == [{"name": "signer", "port": relay_port, "targetPort": "signer"}]

    policy = objects[("NetworkPolicy", f"oracle-signer-{node_id}")]["spec"]
    assert _matches(policy["podSelector"]["matchLabels"], labels)
    # No other signer's pods are selected by this policy, so each signer has exactly its own.
    for other in NODE_IDS:
        if other != node_id:
            other_labels = objects[("Deployment", f"oracle-signer-{other}")]["spec"]["template"]["metadata"][
                "labels"
            ]
            assert not _matches(policy["podSelector"]["matchLabels"], other_labels)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["egress"] == []
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": relay_port}]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}, "no namespaceSelector or ipBlock: pods of this namespace only"
    nodes = objects[("StatefulSet", "oracle-node")]
    # The StatefulSet controller labels each pod with its name: <set>-<ordinal>.
    expected = {
        **nodes["spec"]["template"]["metadata"]["labels"],
        "statefulset.kubernetes.io/pod-name": f"oracle-node-{ordinal}",
    }
    assert peer["podSelector"]["matchLabels"] == expected


def test_each_signer_key_is_mounted_into_its_signer_only(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for node_id in NODE_IDS:
        secret = f"oracle-signer-{node_id}-keystore"
        for workload in _workloads(objects):
            volumes = {
                v["name"]
                for v in _pod(workload)["volumes"]
                if v.get("secret", {}).get("secretName") == secret
            }
            for name, container in _containers(workload).items():
                mounted = volumes & {m["name"] for m in container.get("volumeMounts", [])}
                if workload["metadata"]["name"] == f"oracle-signer-{node_id}" and name == "signer":
                    assert mounted
                    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] in mounted)
                else:
                    assert not mounted, (workload["metadata"]["name"], name, secret)


def test_containers_run_unprivileged(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for workload in _workloads(objects):
        pod = _pod(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert container["image"] == "parametric-oracle:0.1.0"


def test_every_referenced_config_and_secret_is_defined_or_an_example(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    examples = {(d["kind"], d["metadata"]["name"]): d for d in _docs(EXAMPLES / "network-secrets.yaml")}
    defined = {**objects, **examples}
    for workload in _workloads(objects):
        pod = _pod(workload)
        for volume in pod["volumes"]:
            if "secret" in volume:
                secret = defined[("Secret", volume["secret"]["secretName"])]
                for item in volume["secret"].get("items", []):
                    assert item["key"] in secret["stringData"]
            if "configMap" in volume:
                config = defined[("ConfigMap", volume["configMap"]["name"])]
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in config["data"]
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in defined
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in defined[("Secret", ref["name"])]["stringData"]
    # The per-node Secret keys the node start script reads.
    network_secrets = examples[("Secret", "oracle-network-secrets")]["stringData"]
    for node_id in NODE_IDS:
        assert {f"{node_id}-database-url", f"{node_id}-signer-token"} <= set(network_secrets)
    for doc in examples.values():
        values = doc.get("stringData", doc.get("data", {})).values()
        assert all("CHANGE_ME" in v for v in values), doc["metadata"]["name"]


def test_the_config_passes_the_production_checks(
    objects: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from oracle.config import load_settings

    for key, value in objects[("ConfigMap", "oracle-network-config")]["data"].items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("ORACLE_DATABASE_URL", "postgresql+psycopg://oracle_node1@db:5432/oracle_node1")
    monkeypatch.setenv("ORACLE_SIGNER_TOKEN", "x" * 32)
    monkeypatch.setenv("ORACLE_SIGNER_URL", "http://oracle-signer-node1:8712")
    assert load_settings(_env_file=None).env == "prod"


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What deploy/README.md describes: `oracle network init`, member URLs set to the pods' names."""
    from oracle.network.init import init_network
    from oracle.network.membership import NETWORK_FILE

    d = tmp_path_factory.mktemp("net")
    init_network(d, nodes=3, threshold=2, base_port=8101)
    network = json.loads((d / NETWORK_FILE).read_text())
    for i, member in enumerate(network["members"]):
        member["url"] = f"http://oracle-node-{i}.oracle-node:8101"
    (d / NETWORK_FILE).write_text(json.dumps(network))
    (d / "deployment.json").write_text(
        json.dumps({"chainId": 31337, "block": 1, "addresses": {"OracleRouter": "0x" + "11" * 20}})
    )
    return d


def _start_script(objects: dict[tuple[str, str], dict[str, Any]], root: Path) -> str:
    """The node container's script with its absolute paths moved under ``root`` and the final exec
    replaced by printing what it would run with."""
    node = _containers(objects[("StatefulSet", "oracle-node")])["node"]
    assert node["command"] == ["sh", "-c"]
    script: str = node["args"][0]
    exec_line = 'exec oracle run --no-demo --network "$net" --node "$id"'
    assert exec_line in script
    script = script.replace(
        exec_line,
        'printf "%s\\n" "$net" "$id" "$ORACLE_SIGNER_URL" "$ORACLE_DATABASE_URL" "$ORACLE_SIGNER_TOKEN"',
    )
    script = script.replace("sleep 20", "sleep 0.2")
    for prefix in ("/var/lib/oracle", "/etc/oracle", "/run/secrets"):
        script = script.replace(prefix, str(root) + prefix)
    return script


@pytest.mark.parametrize("ordinal", range(len(NODE_IDS)))
def test_node_start_script_lays_out_what_oracle_run_network_accepts(
    objects: dict[tuple[str, str], dict[str, Any]], network_dir: Path, tmp_path: Path, ordinal: int
) -> None:
    from oracle.config import Settings
    from oracle.network.node import node_settings

    node_id = NODE_IDS[ordinal]
    mounts = {
        m["name"]: m["mountPath"]
        for m in _containers(objects[("StatefulSet", "oracle-node")])["node"]["volumeMounts"]
    }

    def at(name: str) -> Path:
        return tmp_path / str(mounts[name]).lstrip("/")

    for name in ("node", "network-dir", "network-file", "node-secrets", "tmp"):
        at(name).mkdir(parents=True)
    shutil.copy(network_dir / "network.json", at("network-file"))
    shutil.copy(network_dir / "deployment.json", at("network-file"))
    for other in NODE_IDS:
        (at("node-secrets") / f"{other}-database-url").write_text(f"postgresql+psycopg://{other}@db/{other}")
        (at("node-secrets") / f"{other}-signer-token").write_text(f"token-of-{other}-" + "x" * 16)
    script = _start_script(objects, tmp_path)
    env = {"PATH": os.environ["PATH"], "POD_NAME": f"oracle-node-{ordinal}"}

    # Without its keys on the volume the pod waits (it does not crash-loop), naming what is missing.
    with pytest.raises(subprocess.TimeoutExpired) as waiting:
        subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=1.5)
    assert f"{node_id}: waiting for transmitter/keystore.json" in str(waiting.value.stdout)

    # The keys copied onto the volume as deploy/README.md says: the node's own, not its signer's.
    for part in ("transmitter", "peer"):
        shutil.copytree(network_dir / "nodes" / node_id / part, at("node") / part)
    done = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    net, printed_id, signer_url, database_url, token = done.stdout.splitlines()
    assert printed_id == node_id
    assert signer_url == f"http://oracle-signer-{node_id}:8712"
    service = objects[("Service", f"oracle-signer-{node_id}")]
    assert signer_url.endswith(f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}")
    assert database_url == f"postgresql+psycopg://{node_id}@db/{node_id}"
    assert token == f"token-of-{node_id}-" + "x" * 16
    assert not (at("node") / "signer").exists(), "the signer key never reaches the node's volume"

    settings = node_settings(
        Settings(_env_file=None, api_host="0.0.0.0", chain_rpc_url="http://x", mqtt_url="mqtt://y"),
        Path(net),
        node_id,
    )
    assert settings.data_dir.resolve() == at("node").resolve()
    assert settings.api_port == 8101
    # node_settings copied the shared deployment record onto the node's volume.
    assert json.loads((at("node") / "deployment.json").read_text())["chainId"] == 31337


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_signer_relay_carries_requests_to_the_loopback_signer(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """The `forward` container's program, run as written, relays HTTP both ways, including a body
    larger than one read, and several requests on one connection."""
    forward = _containers(objects[("Deployment", "oracle-signer-node1")])["forward"]
    assert forward["command"] == ["python", "-c"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listen = free_port()
    env = {
        **os.environ,
        "FORWARD_LISTEN_HOST": "127.0.0.1",
        "FORWARD_LISTEN_PORT": str(listen),
        "FORWARD_TARGET_PORT": str(server.server_address[1]),
    }
    relay = subprocess.Popen([sys.executable, "-c", forward["args"][0]], env=env, stderr=subprocess.PIPE)
    try:
        body = os.urandom(300_000)
        for _ in range(50):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(f"http://127.0.0.1:{listen}/v1/sign", data=body), timeout=5
                ) as answer:
                    assert answer.read() == body
                break
            except urllib.error.URLError:
                assert relay.poll() is None, relay.stderr.read() if relay.stderr else ""
                threading.Event().wait(0.1)
        else:
            pytest.fail("the relay never answered")
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
        for i in range(3):
            conn.request("POST", "/v1/sign", body=f"request {i}".encode())
            assert conn.getresponse().read() == f"request {i}".encode()
        conn.close()
    finally:
        relay.terminate()
        relay.wait(10)
        server.shutdown()
