"""The layers DESIGN.md draws: the pure core (models/) imports nothing of the service or of ingest."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_models_import_nothing_of_the_service() -> None:
    files = sorted((ROOT / "models").rglob("*.py"))
    assert len(files) > 20
    offending = {
        str(f.relative_to(ROOT)): sorted(n for n in _imports(f) if n.split(".")[0] in ("oracle", "ingest"))
        for f in files
    }
    assert {f: names for f, names in offending.items() if names} == {}


def test_the_service_sees_the_same_error_classes_as_the_core() -> None:
    import models.errors
    import oracle.errors

    assert oracle.errors.ValidationError is models.errors.ValidationError
    assert issubclass(oracle.errors.ConfigError, models.errors.OracleError)


def _modules_importing(package_dir: str) -> dict[str, set[str]]:
    return {str(f.relative_to(ROOT)): _imports(f) for f in sorted((ROOT / package_dir).rglob("*.py"))}


def test_commands_call_down_into_the_service_never_back_up() -> None:
    """cli → commands → service/scheduler, never back: the circle among oracle/cli.py, oracle/service.py,
    oracle/commands/ and oracle/scheduler/ stays broken (function-level imports count too)."""
    graph = _modules_importing("oracle")

    def offenders(sources: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
        return {
            f: sorted(n for n in names if n.startswith(forbidden))
            for f, names in graph.items()
            if f.startswith(sources) and any(n.startswith(forbidden) for n in names)
        }

    assert offenders("oracle/commands/", ("oracle.cli",)) == {}
    assert offenders("oracle/scheduler/", ("oracle.cli", "oracle.commands", "oracle.service")) == {}
    assert offenders("oracle/service.py", ("oracle.cli", "oracle.commands")) == {}
    assert offenders("oracle/api/", ("oracle.cli", "oracle.commands", "oracle.service")) == {}
