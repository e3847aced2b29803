"""Alembic, driven from code: ``oracle db upgrade`` and the service's start-up call :func:`upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from oracle.errors import StorageError
from oracle.storage.db import error_reason, redacted

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Percent signs in passwords would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision``. :raises StorageError: the database failed (why, on
    one line, with the URL's password hidden)."""
    try:
        command.upgrade(alembic_config(url), revision)
    except SQLAlchemyError as e:
        raise StorageError(
            f"cannot bring the database {redacted(url)} to {revision}: {error_reason(e)}"
        ) from None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
