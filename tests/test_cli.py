"""The oracle command: help everywhere, one clear line for user errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.testing

from oracle import __version__
from oracle.cli import LAZY_COMMANDS, app, load_command


def _oracle(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "from oracle.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name in LAZY_COMMANDS:
        paths.append([name])
        for sub_name, sub in getattr(load_command(name), "commands", {}).items():
            walk_from = [name, sub_name]
            paths.append(walk_from)
            for leaf in getattr(sub, "commands", {}):
                paths.append([*walk_from, leaf])

    def walk(cmd: object, path: list[str]) -> None:
        paths.append(path)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(root, [])
    return paths


def test_version() -> None:
    r = _oracle("version")
    assert r.returncode == 0
    assert r.stdout == __version__ + "\n"


#: What `oracle --help` and `oracle version` must not pay for (issue 16 item 11: 3.6 s of start-up).
HEAVY_MODULES = (
    "web3",
    "sqlalchemy",
    "alembic",
    "rasterio",
    "lightgbm",
    "numpy",
    "pandas",
    "fastapi",
    "uvicorn",
    "paho",
    "eth_account",
    "pydantic_settings",
)


@pytest.mark.parametrize("args", [["version"], ["--help"], []])
def test_help_and_version_import_no_heavy_module(args: list[str]) -> None:
    """Deterministic stand-in for the timing goal (bench/cli.py measures it): the command groups are
    loaded only when invoked, so listing them or printing the version imports none of their modules."""
    probe = (
        "import sys\n"
        "from oracle.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"loaded = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
        "print('LOADED', ','.join(loaded), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("LOADED")]
    assert line == ["LOADED "], r.stderr


def test_help_lists_every_command_group_with_its_own_help() -> None:
    r = _oracle("--help")
    assert r.returncode == 0, r.stderr
    builtin = ["version", "run", "db", "chain", "outbox", "report"]
    listed = {ln.strip("│ ").split(" ")[0] for ln in r.stdout.splitlines()}
    for name in [*builtin, *LAZY_COMMANDS]:
        assert name in listed, (name, r.stdout)
    # The one-line help shown without importing a group is the group's own.
    for name, lazy in LAZY_COMMANDS.items():
        loaded = load_command(name)
        assert (loaded.short_help or loaded.help or "").strip() == lazy.help, name


def test_lazy_group_runs_its_commands() -> None:
    r = _oracle("indices", "--help")
    assert r.returncode == 0, r.stderr
    assert "spi" in r.stdout
    assert "mkt" in r.stdout
    r = _oracle("no-such-group")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_every_command_has_help() -> None:
    paths = _all_command_paths()
    assert ["run"] in paths
    assert ["db", "upgrade"] in paths
    assert ["chain", "up"] in paths
    assert ["signer", "serve"] in paths
    runner = typer.testing.CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_bad_configuration_is_one_clear_line(tmp_path: Path) -> None:
    r = _oracle(
        "db", "upgrade", env={"ORACLE_DATABASE_URL": "mysql://nope", "ORACLE_DATA_DIR": str(tmp_path)}
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "ORACLE_DATABASE_URL" in lines[0]
    assert "postgresql+psycopg" in lines[0]


def test_prod_refuses_unsafe_settings(tmp_path: Path) -> None:
    r = _oracle(
        "db",
        "upgrade",
        env={
            "ORACLE_ENV": "prod",
            "ORACLE_DATA_DIR": str(tmp_path),
            "ORACLE_DATABASE_URL": "postgresql+psycopg://o@db.example/oracle",
            "ORACLE_CHAIN_RPC_URL": "http://rpc.example:8545",
            "ORACLE_MQTT_URL": "mqtts://broker.example:8883",
            "ORACLE_SIGNER_PRIVATE_KEY": "0x" + "11" * 32,
        },
    )
    assert r.returncode == 1
    assert "ORACLE_SIGNER_PRIVATE_KEY" in r.stderr
    assert "ORACLE_CHAIN_RPC_URL" in r.stderr
    assert "11" * 32 not in r.stderr + r.stdout  # the key itself is never echoed
    assert "Traceback" not in r.stderr


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ORACLE_DATABASE_URL=mysql://from-dotenv\n")
    r = _oracle("db", "upgrade", cwd=tmp_path)
    assert r.returncode == 1
    assert "ORACLE_DATABASE_URL" in r.stderr


def test_db_upgrade_on_sqlite_and_postgres(database_url: str, tmp_path: Path) -> None:
    r = _oracle("db", "upgrade", env={"ORACLE_DATABASE_URL": database_url, "ORACLE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "database at head" in r.stdout
    from sqlalchemy import inspect

    from oracle.storage.db import make_engine

    engine = make_engine(database_url)
    assert "outbox" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.parametrize("args", [["no-such-command"], ["db", "upgrade", "--bogus"]])
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    r = _oracle(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_zonal_averages_a_raster_without_unit_metadata_and_says_so(tmp_path: Path) -> None:
    """A zonal mean needs no units (issue 16 item 8): a file without them is averaged as stored, with a
    note on stderr; ingest still refuses such a file."""
    import json

    import numpy as np
    from affine import Affine

    from ingest.raster import read_raster
    from oracle.errors import ValidationError
    from tests.fixtures.rasters import region_feature_collection, write_geotiff

    raster = write_geotiff(
        tmp_path / "chirps.tif",
        np.full((20, 20), 12.5, dtype=np.float32),
        transform=Affine(0.05, 0, 36.0, 0, -0.05, 0.0),
        units=None,
    )
    from shapely.geometry import box

    regions = tmp_path / "regions.geojson"
    regions.write_text(json.dumps(region_feature_collection({"r1": box(36.1, -0.9, 36.9, -0.1)})))
    done = _oracle("zonal", "--raster", str(raster), "--regions", str(regions))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["region_id,mean,valid_fraction", "r1,12.500000,1.000000"]
    assert "no unit metadata" in done.stderr
    with pytest.raises(ValidationError) as refused:
        read_raster(raster.read_bytes(), variable="precip")
    assert refused.value.reason == "unknown_units"


def test_the_fast_entry_point_lists_exactly_the_apps_commands_with_their_help() -> None:
    """`oracle --help` and `oracle version` are answered by oracle.entry without Typer; its command index
    must be the Typer app's, in order, each with the first sentence of the command's own help."""
    import click

    from oracle.entry import COMMANDS, first_sentence

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    listed = []
    for name in root.list_commands(ctx):  # type: ignore[attr-defined]
        command = root.get_command(ctx, name)  # type: ignore[attr-defined]
        listed.append((name, first_sentence(command.help or "")))
    assert list(COMMANDS) == listed


@pytest.mark.parametrize("args", [["version"], ["--help"], []])
def test_the_installed_oracle_answers_help_and_version_without_typer(args: list[str]) -> None:
    probe = (
        "import sys\n"
        f"sys.argv = ['oracle', *{args!r}]\n"
        "from oracle.entry import main\n"
        "main()\n"
        "print('LOADED', ','.join(sorted(m for m in ('typer', 'click', 'rich') if m in sys.modules)),"
        " file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("LOADED")] == ["LOADED "]
    if args == ["version"]:
        assert r.stdout == __version__ + "\n"
    else:
        assert r.stdout.startswith("Usage: oracle [OPTIONS] COMMAND [ARGS]...\n")
        assert "  watch " in r.stdout
        assert "  products " in r.stdout


def test_the_installed_oracle_hands_every_other_command_to_typer() -> None:
    probe = "import sys\nsys.argv = ['oracle', 'db', '--help']\nfrom oracle.entry import main\nmain()\n"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "upgrade" in r.stdout
