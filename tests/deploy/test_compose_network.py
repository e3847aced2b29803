"""deploy/compose.network.yaml: 3 oracle nodes (k = 2) with their signers, one anvil, one mosquitto.

Docker is not available here, so the compose files are checked three ways: against the Compose
Specification's JSON schema (the copy vendored in check-jsonschema, pinned in requirements-dev.lock;
nothing is downloaded), for consistency between services (images, depends_on, volumes, who mounts which
key), and by running what the containers run: deploy/network-init.py against a real anvil, then each
node's and signer's start command on the files as their volumes would show them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILES = ["compose.yaml", "compose.network.yaml"]
NODE_IDS = ["node1", "node2", "node3"]


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("compose.network.yaml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _validator() -> Any:
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_the_compose_spec(name: str) -> None:
    errors = sorted(_validator().iter_errors(_load(name)), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_schema_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    """Guards the pass above: a misspelt key, a wrong depends_on condition, a wrong type and an unknown
    volume type are caught."""
    validator = _validator()
    breakages: list[Callable[[dict[str, Any]], None]] = [
        lambda d: d["services"]["node1"].update(imagee="x"),
        lambda d: d["services"]["node1-oracle"]["depends_on"]["anvil"].update(condition="service_ready"),
        lambda d: d["services"]["node1"].update(restart=3),
        lambda d: d["services"]["node1"].update(volumes=[{"type": "blah", "target": "/x"}]),
    ]
    for breakage in breakages:
        broken = json.loads(json.dumps(compose))
        breakage(broken)
        assert list(validator.iter_errors(broken)), breakage


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of every short-syntax volume entry."""
    out = []
    for entry in service.get("volumes", []):
        parts = str(entry).split(":")
        out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def test_three_nodes_each_with_its_own_signer(services: dict[str, dict[str, Any]]) -> None:
    assert {"anvil", "mosquitto", "network-init"} <= set(services)
    for i, node_id in enumerate(NODE_IDS):
        holder, signer, oracle = (
            services[node_id],
            services[f"{node_id}-signer"],
            services[f"{node_id}-oracle"],
        )
        assert signer["network_mode"] == oracle["network_mode"] == f"service:{node_id}"
        assert "ports" not in signer
        assert "ports" not in oracle
        assert holder["ports"] == [f"127.0.0.1:{8101 + i}:{8101 + i}"]
        assert f"--node {node_id}" in oracle["command"][0]
        assert "--network /var/lib/oracle/network" in oracle["command"][0]
        assert "oracle signer serve --host 127.0.0.1 --port 8711" in signer["command"][0]
        assert oracle["environment"]["ORACLE_SIGNER_URL"] == "http://127.0.0.1:8711"
        assert oracle["depends_on"][f"{node_id}-signer"]["condition"] == "service_healthy"
        assert f":{8101 + i}/healthz" in oracle["healthcheck"]["test"][-1]
    oracle_images = {s["image"] for s in services.values() if s.get("build", {}).get("target") == "runtime"}
    assert oracle_images == {"parametric-oracle:0.1.0"}


def test_each_key_volume_is_mounted_by_its_owner_only(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in services.items():
        for source, _target, _ro in _volume_mounts(service):
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared
    for node_id in NODE_IDS:
        for volume, owner in (
            (f"{node_id}-signer-keys", f"{node_id}-signer"),
            (f"{node_id}-data", f"{node_id}-oracle"),
        ):
            mounting = sorted(
                n for n, s in services.items() if any(src == volume for src, _, _ in _volume_mounts(s))
            )
            assert mounting == sorted([owner, "network-init"]), volume
    # The shared volume is read-only everywhere but in network-init.
    for name, service in services.items():
        for source, _target, ro in _volume_mounts(service):
            if source == "network-shared" and name != "network-init":
                assert ro, name


def test_start_order_and_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                check = services[dep].get("healthcheck", {})
                assert not check.get("disable"), (name, dep)
                assert check["test"][0] in ("CMD", "CMD-SHELL"), (name, dep)
            elif cond["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", dep
    assert services["network-init"]["depends_on"]["anvil"]["condition"] == "service_healthy"


# -------------------------------------------------------------------------------- run what they run


@pytest.fixture(scope="module")
def made(services: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """deploy/network-init.py run as the network-init service runs it, against a real anvil."""
    from oracle.chain.anvil import start_anvil

    init = services["network-init"]
    assert init["entrypoint"] == ["python", "/opt/network-init.py"]
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, **init["environment"], "NETWORK_OUT": str(out)}
    with start_anvil() as anvil:
        env["ORACLE_CHAIN_RPC_URL"] = anvil.url
        first = subprocess.run(
            [sys.executable, str(DEPLOY / "network-init.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.returncode == 0, first.stderr
        snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        again = subprocess.run(
            [sys.executable, str(DEPLOY / "network-init.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        assert "nothing changed" in again.stderr
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
        code = len(_router_code(anvil.url, out))
    # Volume name -> its content, from network-init's mounts (volume:/out/<dir>).
    volumes = {
        src: out / Path(target).relative_to("/out")
        for src, target, _ in _volume_mounts(init)
        if not src.startswith(".")
    }
    # broker-init as the service runs it: the broker's users, the nodes' broker passwords.
    broker_init = services["broker-init"]
    argv = [a.replace("/out", str(out)) if a.startswith("/out") else a for a in broker_init["command"]]
    made_broker = subprocess.run(
        [sys.executable, "-m", "oracle.commands.telemetry", *argv], capture_output=True, text=True, timeout=60
    )
    assert made_broker.returncode == 0, made_broker.stderr
    volumes.update(
        {src: out / Path(target).relative_to("/out") for src, target, _ in _volume_mounts(broker_init)}
    )
    return {"out": out, "volumes": volumes, "router_code": code}


def _router_code(rpc_url: str, out: Path) -> bytes:
    from oracle.chain.client import connect

    router = json.loads((out / "shared" / "deployment.json").read_text())["addresses"]["OracleRouter"]
    return bytes(connect(rpc_url).eth.get_code(router))


def _container_root(service: dict[str, Any], volumes: dict[str, Path], root: Path) -> Path:
    """The service's volumes laid out under ``root`` as the container sees them (copies, nested mounts
    over their parents)."""
    for source, target, _ro in sorted(_volume_mounts(service), key=lambda m: len(m[1])):
        dest = root / target.lstrip("/")
        if dest.exists():
            shutil.rmtree(dest)
        src = DEPLOY / source if source.startswith(".") else volumes[source]
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    return root


def _run_command(service: dict[str, Any], root: Path, exec_prefix: str, show: list[str]) -> list[str]:
    """The service's `sh -c` command under ``root``, its final exec replaced by printing ``show``."""
    assert service["entrypoint"] == ["sh", "-c"]
    script = service["command"][0].replace("$$", "$")  # compose unescapes $$
    assert exec_prefix in script
    script = script[: script.index(exec_prefix)] + "printf '%s\\n' " + " ".join(f'"${v}"' for v in show)
    script = script.replace("/var/lib/oracle", str(root / "var/lib/oracle"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.update({k: str(v) for k, v in service.get("environment", {}).items()})
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_network_init_makes_a_deployed_network(made: dict[str, Any]) -> None:
    from oracle.network.membership import Network

    shared = made["volumes"]["network-shared"]
    network = Network.load(shared)
    assert network.threshold == 2
    assert network.ids == NODE_IDS
    for i, member in enumerate(network.members):
        assert member.url == f"http://{member.id}:{8101 + i}"  # the holder service's name and port
    assert made["router_code"] > 0


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_each_signer_starts_with_its_own_key_and_the_router(
    services: dict[str, dict[str, Any]], made: dict[str, Any], node_id: str, tmp_path: Path
) -> None:
    from oracle.config import Settings
    from oracle.network.membership import Network
    from oracle.signer.keys import load_signing_key

    signer = services[f"{node_id}-signer"]
    root = _container_root(signer, made["volumes"], tmp_path)
    router, chain_id = _run_command(
        signer, root, "exec oracle signer serve", ["ORACLE_SIGNER_ROUTER", "ORACLE_SIGNER_CHAIN_ID"]
    )
    deployment = json.loads((made["volumes"]["network-shared"] / "deployment.json").read_text())
    assert router == deployment["addresses"]["OracleRouter"]
    assert int(chain_id) == deployment["chainId"]
    signer_dir = root / "var/lib/oracle/signer"
    key = load_signing_key(Settings(_env_file=None), signer_dir=signer_dir)
    member = Network.load(made["volumes"]["network-shared"]).member(node_id)
    assert key.address.lower() == member.signer.lower()


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_each_node_starts_on_its_own_directory(
    services: dict[str, dict[str, Any]], made: dict[str, Any], node_id: str, tmp_path: Path
) -> None:
    from oracle.config import Settings
    from oracle.network.membership import load_identity
    from oracle.network.node import node_settings

    oracle = services[f"{node_id}-oracle"]
    root = _container_root(oracle, made["volumes"], tmp_path)
    [token] = _run_command(oracle, root, "exec oracle run", ["ORACLE_SIGNER_TOKEN"])
    assert token == (made["volumes"][f"{node_id}-signer-keys"] / "token").read_text().strip()
    net = root / "var/lib/oracle/network"
    node_dir = net / "nodes" / node_id
    # The node's volume holds no signing key, and no other node's directory has content.
    assert sorted(p.parent.name for p in node_dir.rglob("keystore.json")) == ["peer", "transmitter"]
    assert not (node_dir / "signer").exists()
    assert all(not any((net / "nodes" / other).iterdir()) for other in NODE_IDS if other != node_id)
    env = oracle["environment"]
    settings = node_settings(
        Settings(
            _env_file=None,
            api_host=env["ORACLE_API_HOST"],
            chain_rpc_url=env["ORACLE_CHAIN_RPC_URL"],
            mqtt_url=env["ORACLE_MQTT_URL"],
        ),
        net,
        node_id,
    )
    assert settings.data_dir == node_dir
    # The node's ingest worker logs in to the broker with the password broker-init wrote.
    assert env["ORACLE_MQTT_USERNAME"] == "oracle-ingest"
    password_file = root / env["ORACLE_MQTT_PASSWORD_FILE"].lstrip("/")
    assert len(password_file.read_text().strip()) >= 40
    assert settings.api_port == int(services[node_id]["ports"][0].rsplit(":", 1)[1])
    identity = load_identity(settings.data_dir, node_id)
    member = next(m for m in json.loads((net / "network.json").read_text())["members"] if m["id"] == node_id)
    assert identity.address.lower() == member["peer_key"].lower()
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", member["transmitter"])
