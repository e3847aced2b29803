"""Shared fixtures. Real components (PostgreSQL, anvil, mosquitto) come from tests/fixtures/*."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.chain", "tests.fixtures.mqtt"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Runs a test once on SQLite (WAL file in a temp dir) and once on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'oracle.sqlite3'}"
    else:
        yield request.getfixturevalue("postgres_url")
