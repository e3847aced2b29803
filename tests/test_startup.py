"""`oracle run --single` start-up on settings that name a database, chain or broker that does not
answer: one line naming the setting and what was tried (password hidden), exit 1, no traceback, and
nothing started (issue 16 item 12)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

PASSWORD = "s3cret-pw"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is


def _postgres_is_up() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


def _run_single(tmp_path: Path, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env |= {"ORACLE_DATA_DIR": str(tmp_path / "data"), "ORACLE_API_PORT": str(_closed_port())}
    env |= settings
    return subprocess.run(
        [sys.executable, "-c", "from oracle.cli import main; main()", "run", "--single", "--no-demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _the_one_line(done: subprocess.CompletedProcess[str], setting: str) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {setting}"), lines[0]
    assert PASSWORD not in done.stderr + done.stdout
    assert "oracle is starting" not in done.stdout  # stopped before anything was started
    return lines[0]


@pytest.mark.skipif(not _postgres_is_up(), reason="needs PostgreSQL on 127.0.0.1:5432")
def test_a_missing_postgres_database_is_one_line(tmp_path: Path) -> None:
    name = f"oracle_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/{name}"
    line = _the_one_line(_run_single(tmp_path, {"ORACLE_DATABASE_URL": url}), "ORACLE_DATABASE_URL")
    assert f"postgresql+psycopg://postgres:***@127.0.0.1:5432/{name}" in line
    assert "does not exist" in line


def test_an_unreachable_postgres_server_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://oracle:{PASSWORD}@127.0.0.1:{_closed_port()}/oracle"
    line = _the_one_line(_run_single(tmp_path, {"ORACLE_DATABASE_URL": url}), "ORACLE_DATABASE_URL")
    assert "127.0.0.1" in line


def test_an_unreachable_chain_is_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"http://user:{PASSWORD}@127.0.0.1:{port}"
    line = _the_one_line(_run_single(tmp_path, {"ORACLE_CHAIN_RPC_URL": url}), "ORACLE_CHAIN_RPC_URL")
    assert f"http://user:***@127.0.0.1:{port}" in line


def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"mqtt://user:{PASSWORD}@127.0.0.1:{port}"
    line = _the_one_line(_run_single(tmp_path, {"ORACLE_MQTT_URL": url}), "ORACLE_MQTT_URL")
    assert f"mqtt://user:***@127.0.0.1:{port}" in line
    assert "refused" in line.lower()
