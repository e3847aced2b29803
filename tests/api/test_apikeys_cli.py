"""``oracle apikeys create|list|revoke``: the key is printed once, stored hashed, and works on the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oracle.api.app import create_app
from oracle.commands.apikeys import app
from oracle.config import Settings
from oracle.context import open_context
from tests.api.conftest import TEST_LIMITS


def test_create_list_revoke(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORACLE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ORACLE_DATABASE_URL", database_url)
    runner = CliRunner()
    made = runner.invoke(app, ["create", "--role", "operator", "--name", "ops-script"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("ok_")
    assert len(key.splitlines()) == 1
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0
    assert "ops-script" in listed.stdout
    assert "operator" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout
    bad = runner.invoke(app, ["create", "--role", "root"])
    assert bad.exit_code != 0
    assert "viewer, operator, admin" in str(bad.exception)

    ctx = open_context(Settings(data_dir=tmp_path / "data", database_url=database_url, _env_file=None))  # type: ignore[call-arg]
    try:
        with TestClient(create_app(ctx, limits=TEST_LIMITS)) as client:
            assert client.get("/v1/outbox", headers={"X-API-Key": key}).status_code == 200
            revoked = runner.invoke(app, ["revoke", key])
            assert revoked.exit_code == 0, revoked.output
            assert client.get("/v1/outbox", headers={"X-API-Key": key}).status_code == 401
        with ctx.sessions() as s:
            from sqlalchemy import select

            from oracle.storage.api_tables import AuditEntry

            summaries = [e.summary for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert len(summaries) == 2
        assert summaries[0].startswith("created operator key")
        assert summaries[1].startswith("revoked key")
    finally:
        ctx.close()
