"""deploy/compose.yaml and deploy/oracle.env.example: parsed and checked for what the stack relies on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from oracle.devstack.broker import BrokerProcess

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEY_VOLUME = "signer-keys"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _volume_sources(service: dict[str, Any]) -> list[str]:
    return [str(v).split(":", 1)[0] for v in service.get("volumes", [])]


def test_every_component_is_there(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert {"postgres", "mosquitto", "anvil", "api", "worker", "signer"} <= set(services)
    assert services["api"]["command"] == ["run", "--no-demo"]
    assert services["worker"]["command"] == ["ingest", "telemetry"]
    assert services["signer"]["command"][:2] == ["signer", "serve"]
    assert services["postgres"]["image"].startswith("postgres:15.")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2.")


def test_only_the_signer_mounts_the_key_volume(compose: dict[str, Any]) -> None:
    mounting = [name for name, svc in _services(compose).items() if KEY_VOLUME in _volume_sources(svc)]
    assert mounting == ["signer"]
    assert KEY_VOLUME in compose["volumes"]


def test_signer_is_reachable_only_on_the_api_loopback(compose: dict[str, Any]) -> None:
    services = _services(compose)
    signer, api = services["signer"], services["api"]
    assert signer["network_mode"] == api["network_mode"] == "service:api-pod"
    assert "ports" not in signer
    assert signer["command"][signer["command"].index("--host") + 1] == "127.0.0.1"


def test_broker_runs_the_deployed_config(compose: dict[str, Any]) -> None:
    mounts = _services(compose)["mosquitto"]["volumes"]
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert any(str(m).endswith(":/mosquitto/data") for m in mounts), "persistence needs a volume"
    assert "mosquitto-dynsec:/mosquitto/dynsec" in mounts  # where deploy/mosquitto.conf points the plugin
    assert (
        "plugin_opt_config_file /mosquitto/dynsec/dynamic-security.json"
        in (DEPLOY / "mosquitto.conf").read_text()
    )


def test_the_oracle_logs_in_to_the_broker_with_files_broker_init_writes(compose: dict[str, Any]) -> None:
    services = _services(compose)
    init = services["broker-init"]
    assert init["command"][:3] == ["devices", "broker-init", "/out/dynsec"]
    assert "mosquitto-dynsec:/out/dynsec" in init["volumes"]
    assert "mqtt-credentials:/out/credentials" in init["volumes"]
    assert services["mosquitto"]["depends_on"]["broker-init"]["condition"] == "service_completed_successfully"
    lines = [ln for ln in (DEPLOY / "oracle.env.example").read_text().splitlines() if ln and ln[0] != "#"]
    env = dict(ln.split("=", 1) for ln in lines)
    assert env["ORACLE_MQTT_PASSWORD_FILE"] == "/run/mqtt/oracle-ingest"
    assert env["ORACLE_MQTT_ADMIN_PASSWORD_FILE"] == "/run/mqtt/oracle-admin"
    for name in ("api", "worker"):
        assert "mqtt-credentials:/run/mqtt:ro" in services[name]["volumes"], name
    # Only the init service, the broker-facing oracle services and nobody else see the passwords.
    mounting = {n for n, svc in services.items() if "mqtt-credentials" in _volume_sources(svc)}
    assert mounting == {"broker-init", "api", "worker"}


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        for dep in ("postgres", "mosquitto"):
            assert deps[dep]["condition"] == "service_healthy", (name, dep)
    assert services["api"]["depends_on"]["anvil"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["signer"]["condition"] == "service_healthy"
    for name in ("postgres", "mosquitto", "anvil", "api", "signer"):
        check = services[name]["healthcheck"]
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    # every service that a depends_on condition waits on must have a check, or compose waits forever
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            if cond["condition"] == "service_healthy":
                assert not services[dep].get("healthcheck", {}).get("disable"), (name, dep)


def test_env_example_has_every_setting_and_no_secret() -> None:
    lines = [ln for ln in (DEPLOY / "oracle.env.example").read_text().splitlines() if ln and ln[0] != "#"]
    env = dict(ln.split("=", 1) for ln in lines)
    for key in ("ORACLE_DATABASE_URL", "ORACLE_MQTT_URL", "ORACLE_CHAIN_RPC_URL", "ORACLE_SIGNER_URL"):
        assert env[key], key
    for key in ("POSTGRES_PASSWORD", "ORACLE_SIGNER_TOKEN", "ORACLE_CHAINLINK_BRIDGE_TOKEN"):
        assert "CHANGE_ME" in env[key], f"{key} must be a placeholder"
    assert "ORACLE_SIGNER_PRIVATE_KEY" not in env
    assert "oracle.env" in (DEPLOY / ".gitignore").read_text().split()


def test_env_example_is_accepted_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from oracle.config import load_settings

    lines = [ln for ln in (DEPLOY / "oracle.env.example").read_text().splitlines() if ln and ln[0] != "#"]
    for key, value in (ln.split("=", 1) for ln in lines):
        monkeypatch.setenv(key, value)
    settings = load_settings(_env_file=None)
    assert settings.mqtt_url == "mqtt://mosquitto:1883"
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    # the same file with ORACLE_ENV=prod passes the production safety checks too
    monkeypatch.setenv("ORACLE_ENV", "prod")
    assert load_settings(_env_file=None).env == "prod"


def test_broker_health_check_works_against_the_real_broker(
    compose: dict[str, Any], mosquitto: BrokerProcess
) -> None:
    """Run compose's mosquitto health check command against a broker running deploy/mosquitto.conf: it
    passes (the broker answers, and refuses the anonymous client), and fails on a port nobody serves."""
    from oracle.devstack.broker import free_port

    test = list(_services(compose)["mosquitto"]["healthcheck"]["test"])
    assert test[0] == "CMD-SHELL"
    script = test[1].replace("$$", "$")  # compose unescapes $$
    assert "-p 1883" in script
    alive = subprocess.run(
        ["sh", "-c", script.replace("-p 1883", f"-p {mosquitto.port}")],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert alive.returncode == 0, alive.stderr
    dead = subprocess.run(
        ["sh", "-c", script.replace("-p 1883", f"-p {free_port()}")],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert dead.returncode != 0


def test_anvil_health_check_works_against_a_real_anvil(compose: dict[str, Any]) -> None:
    """Run compose's anvil health check (node + JSON-RPC) against the pinned anvil, then a dead port."""
    from oracle.chain.anvil import start_anvil
    from oracle.devstack.broker import free_port

    test = list(_services(compose)["anvil"]["healthcheck"]["test"])
    assert test[:3] == ["CMD", "node", "-e"]
    script = test[3]
    assert "127.0.0.1:8545" in script
    with start_anvil() as anvil:
        alive = subprocess.run(
            ["node", "-e", script.replace(":8545", f":{anvil.port}")], capture_output=True, timeout=30
        )
    dead = subprocess.run(
        ["node", "-e", script.replace(":8545", f":{free_port()}")], capture_output=True, timeout=30
    )
    assert alive.returncode == 0, alive.stderr
    assert dead.returncode != 0
