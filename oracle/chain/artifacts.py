"""Compiled contract artifacts from ``contracts/build`` (written by ``node contracts/compile.mjs``)."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.errors import NotFound

REPO_ROOT = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    """The artifact directory: ``ORACLE_CONTRACTS_BUILD_DIR`` or ``<repo>/contracts/build``."""
    override = os.environ.get("ORACLE_CONTRACTS_BUILD_DIR")
    return Path(override) if override else REPO_ROOT / "contracts" / "build"


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str

    @property
    def deployable(self) -> bool:
        return len(self.bytecode) > 2


@functools.cache
def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """Load one contract's artifact by contract name (e.g. ``"OracleRouter"``).

    Raises ``NotFound`` when the artifact is missing (run ``node contracts/compile.mjs``).
    """
    path = (directory or build_dir()) / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise NotFound(f"no compiled artifact {name!r} at {path}; run node contracts/compile.mjs") from e
    return Artifact(
        name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
    )


def artifact_names(directory: Path | None = None) -> list[str]:
    """Names of every compiled contract (from the manifest)."""
    path = (directory or build_dir()) / "manifest.json"
    try:
        names: list[str] = json.loads(path.read_text())["contracts"]
    except FileNotFoundError as e:
        raise NotFound(f"no artifact manifest at {path}; run node contracts/compile.mjs") from e
    return names
