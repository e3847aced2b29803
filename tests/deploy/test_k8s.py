"""deploy/k8s: every manifest parses and wires probes, secrets and replicas as the design needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = _docs(K8S / "kustomization.yaml")[0]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in _docs(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), (name, doc)
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"duplicate {key}"
            found[key] = doc
    return found


def _containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


def test_every_yaml_file_is_listed_or_an_example(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    listed = set(_docs(K8S / "kustomization.yaml")[0]["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert ("Secret", "oracle-secrets") not in objects, "real secrets are created out of band"


def test_api_probes(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    api = _containers(objects[("Deployment", "oracle-api")])["api"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["args"] == ["run", "--no-demo"]
    service = objects[("Service", "oracle-api")]
    assert (
        service["spec"]["selector"]
        == objects[("Deployment", "oracle-api")]["spec"]["selector"]["matchLabels"]
    )


def test_keystore_secret_is_mounted_into_the_signer_only(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pod = objects[("Deployment", "oracle-api")]["spec"]["template"]["spec"]
    secret_volumes = {
        v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "oracle-signer-keystore"
    }
    assert len(secret_volumes) == 1
    for obj in objects.values():
        if "template" not in obj.get("spec", {}):
            continue
        for name, container in _containers(obj).items():
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            if obj["metadata"]["name"] == "oracle-api" and name == "signer":
                assert secret_volumes <= mounts
                assert all(
                    m.get("readOnly") for m in container["volumeMounts"] if m["name"] in secret_volumes
                )
            else:
                assert not secret_volumes & mounts, (obj["metadata"]["name"], name)
    signer = _containers(objects[("Deployment", "oracle-api")])["signer"]
    assert signer["args"][signer["args"].index("--host") + 1] == "127.0.0.1"
    assert objects[("Deployment", "oracle-api")]["spec"]["strategy"]["type"] == "Recreate"


def test_two_workers_share_the_subscription_with_stable_ids(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    worker = objects[("StatefulSet", "oracle-worker")]
    assert worker["spec"]["replicas"] == 2
    assert ("Service", worker["spec"]["serviceName"]) in objects
    env = {e["name"]: e for e in _containers(worker)["worker"]["env"]}
    assert env["ORACLE_MQTT_CLIENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["ORACLE_MQTT_SHARE_GROUP"]["value"]


def test_containers_run_unprivileged(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for obj in objects.values():
        if "template" not in obj.get("spec", {}):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ":" in container["image"]
            assert not container["image"].endswith(":latest")


def test_config_map_is_accepted_by_the_settings(
    objects: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from oracle.config import load_settings

    for key, value in objects[("ConfigMap", "oracle-config")]["data"].items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("ORACLE_DATABASE_URL", "postgresql+psycopg://oracle@db:5432/oracle")
    monkeypatch.setenv("ORACLE_SIGNER_TOKEN", "x" * 32)
    settings = load_settings(_env_file=None)
    assert settings.env == "prod"  # passes the production safety checks


def test_example_secrets_hold_only_placeholders() -> None:
    for doc in _docs(K8S / "examples" / "secrets.yaml"):
        assert doc["kind"] == "Secret"
        for value in doc["stringData"].values():
            assert "CHANGE_ME" in value


def test_the_oracle_logs_in_to_the_broker_from_mounted_secrets(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """The broker refuses anonymous clients: the worker and the API log in as oracle-ingest with the
    password file of the `oracle-mqtt` Secret and verify the broker's TLS with its CA; only the API's
    oracle container gets the admin password that issues device logins."""
    config = objects[("ConfigMap", "oracle-config")]["data"]
    assert config["ORACLE_MQTT_URL"].startswith("mqtts://")
    assert config["ORACLE_MQTT_USERNAME"] == "oracle-ingest"
    assert config["ORACLE_MQTT_PASSWORD_FILE"] == "/run/mqtt/password"
    assert config["ORACLE_MQTT_CA_FILE"] == "/run/mqtt/ca.crt"
    example = {d["metadata"]["name"]: d for d in _docs(K8S / "examples" / "secrets.yaml")}
    assert {"password", "ca.crt"} <= set(example["oracle-mqtt"]["stringData"])
    mounted: dict[str, set[str]] = {}
    for obj in objects.values():
        if "template" not in obj.get("spec", {}):
            continue
        pod = obj["spec"]["template"]["spec"]
        by_volume = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
        for name, container in _containers(obj).items():
            for m in container.get("volumeMounts", []):
                secret = by_volume.get(m["name"])
                if secret in ("oracle-mqtt", "oracle-mqtt-admin"):
                    assert m.get("readOnly"), (name, m)
                    mounted.setdefault(secret, set()).add(
                        f"{obj['metadata']['name']}/{name}:{m['mountPath']}"
                    )
    assert mounted["oracle-mqtt"] == {"oracle-api/api:/run/mqtt", "oracle-worker/worker:/run/mqtt"}
    assert mounted["oracle-mqtt-admin"] == {"oracle-api/api:/run/mqtt-admin"}
    api_env = {
        e["name"]: e.get("value") for e in _containers(objects[("Deployment", "oracle-api")])["api"]["env"]
    }
    assert api_env["ORACLE_MQTT_ADMIN_PASSWORD_FILE"] == "/run/mqtt-admin/password"


def test_every_oracle_variable_is_a_setting(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    """An ORACLE_* variable the settings do not know is silently ignored (a misspelt share group once
    left the workers on the default group): every name a container sets must be a setting."""
    from oracle.config import Settings

    known = {f"ORACLE_{name.upper()}" for name in Settings.model_fields}
    named = {
        e["name"]
        for obj in objects.values()
        if "template" in obj.get("spec", {})
        for c in obj["spec"]["template"]["spec"].get("containers", [])
        + obj["spec"]["template"]["spec"].get("initContainers", [])
        for e in c.get("env", [])
        if e["name"].startswith("ORACLE_")
    }
    assert named, "no container sets an ORACLE_* variable"
    assert named <= known, sorted(named - known)
