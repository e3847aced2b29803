"""Committed contract artifacts must match contracts/src: a forgotten rebuild fails here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from oracle.chain.artifacts import REPO_ROOT, artifact_names, load_artifact

BUILD = REPO_ROOT / "contracts" / "build"


def sources_hash(src: Path) -> str:
    """The manifest's sourcesHash, computed independently of compile.mjs (same definition)."""
    h = hashlib.sha256()
    for path in sorted(src.rglob("*.sol"), key=lambda p: p.relative_to(src).as_posix()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        h.update(f"{path.relative_to(src).as_posix()}\n{digest}\n".encode())
    return h.hexdigest()


def node_compile(
    contracts_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None, "node is required to compile the contracts"
    return subprocess.run(
        [node, str(contracts_dir / "compile.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_manifest_matches_the_sources() -> None:
    manifest = json.loads((BUILD / "manifest.json").read_text())
    assert manifest["sourcesHash"] == sources_hash(REPO_ROOT / "contracts" / "src"), (
        "contracts/src changed without rebuilding: run `node contracts/compile.mjs`, commit contracts/build"
    )
    assert manifest["compiler"].startswith("0.8.19+")
    assert manifest["settings"]["optimizer"] == {"enabled": True, "runs": 10000}


def test_check_mode_accepts_the_committed_build() -> None:
    result = node_compile(REPO_ROOT / "contracts", "--check")
    assert result.returncode == 0, result.stderr


def test_every_deployed_contract_has_an_artifact() -> None:
    names = set(artifact_names())
    wanted = {
        "OracleRouter",
        "DroughtInsurancePool",
        "ColdChainEscrow",
        "DroughtIndexFeed",
        "TestStablecoin",
        "Operator",
        "LinkToken",
        "RevertingSubscriber",
        "GasHogSubscriber",
        "RecordingSubscriber",
        "FeedReader",
    }
    assert wanted <= names
    for name in wanted:
        assert load_artifact(name).deployable, name
    assert not load_artifact("IReportSubscriber").deployable


def test_check_mode_reports_an_edited_source_as_stale(tmp_path: Path) -> None:
    # A copy of the repository layout: contracts/ plus the real node_modules, so compile.mjs resolves solc.
    shutil.copytree(REPO_ROOT / "contracts", tmp_path / "contracts")
    shutil.copy(REPO_ROOT / "package.json", tmp_path / "package.json")
    (tmp_path / "node_modules").symlink_to(REPO_ROOT / "node_modules")
    copy = tmp_path / "contracts"
    assert node_compile(copy, "--check").returncode == 0

    router = copy / "src" / "OracleRouter.sol"
    router.write_text(router.read_text().replace("MAX_SUBSCRIBERS = 8", "MAX_SUBSCRIBERS = 9"))
    result = node_compile(copy, "--check")
    assert result.returncode == 1
    assert "stale" in result.stderr
    assert "OracleRouter.sol" in result.stderr
    manifest = json.loads((copy / "build" / "manifest.json").read_text())
    assert manifest["sourcesHash"] != sources_hash(copy / "src")


def test_recompiling_reproduces_the_committed_bytecode(tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = node_compile(REPO_ROOT / "contracts", env={"ORACLE_CONTRACTS_BUILD_DIR": str(out)})
    assert result.returncode == 0, result.stderr
    committed = sorted(p.name for p in BUILD.glob("*.json"))
    assert sorted(p.name for p in out.glob("*.json")) == committed
    for name in committed:
        assert (out / name).read_bytes() == (BUILD / name).read_bytes(), f"{name} differs from a fresh build"
