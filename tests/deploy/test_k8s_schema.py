"""Every Kubernetes object under deploy/k8s validates against the Kubernetes API schemas, offline.

The schemas are the ones bundled in the kubernetes-validate package (pinned in requirements-dev.lock);
nothing is fetched while validating (the test cuts the network to prove it). Each kustomization is
rendered with `kubectl kustomize` where kubectl is installed (it is on this project's machines); its
objects must be exactly those of the files its `resources` list, which are validated either way.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    ValidationError,
)

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATIONS = [K8S, K8S / "network"]
# The oldest Kubernetes minor these manifests promise to work on, and the newest the validator bundles.
OLDEST = "1.29"
VERSIONS = [OLDEST, kubernetes_validate.utils.latest_version()]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def _resources(kustomization_dir: Path) -> list[dict[str, Any]]:
    kustomization = _docs(kustomization_dir / "kustomization.yaml")[0]
    objects: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        objects.extend(_docs(kustomization_dir / name))
    return objects


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must not download a schema: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _validate(obj: dict[str, Any]) -> None:
    for version in VERSIONS:
        # strict: unknown fields are errors too (a typo in a field name is not silently ignored).
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S.parent)))
def test_kustomization_lists_every_manifest_file(directory: Path) -> None:
    listed = set(_docs(directory / "kustomization.yaml")[0]["resources"])
    on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S.parent)))
def test_every_listed_object_validates(directory: Path) -> None:
    objects = _resources(directory)
    assert objects
    keys = [_key(o) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"
    for obj in objects:
        _validate(obj)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S.parent)))
def test_rendered_kustomization_validates(directory: Path) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d is not None]
    assert sorted(_key(o) for o in objects) == sorted(_key(o) for o in _resources(directory))
    common = _docs(directory / "kustomization.yaml")[0]["labels"][0]["pairs"]
    for obj in objects:
        assert common.items() <= obj["metadata"]["labels"].items(), _key(obj)
        _validate(obj)


def test_examples_validate() -> None:
    for path in sorted((K8S / "examples").glob("*.yaml")):
        for obj in _docs(path):
            _validate(obj)


def test_the_validator_rejects_broken_manifests() -> None:
    """Guards the passes above: the bundled schemas catch a wrong type, an unknown field (strict) and a
    missing required field, and an unknown kind is an error, not a skipped object."""
    statefulset = next(o for o in _resources(K8S / "network") if o["kind"] == "StatefulSet")
    assert kubernetes_validate.validate(statefulset, OLDEST, strict=True)

    wrong_type = yaml.safe_load(yaml.safe_dump(statefulset))
    wrong_type["spec"]["replicas"] = "three"
    unknown_field = yaml.safe_load(yaml.safe_dump(statefulset))
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    missing = yaml.safe_load(yaml.safe_dump(statefulset))
    del missing["spec"]["selector"]
    for broken in (wrong_type, unknown_field, missing):
        with pytest.raises(ValidationError):
            kubernetes_validate.validate(broken, OLDEST, strict=True)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate({**statefulset, "kind": "StatefulSett"}, OLDEST, strict=True)
