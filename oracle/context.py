"""What a running oracle process holds: settings, the database, the content store, and where the
chain and broker are. Built once by an entry point and passed down; nothing here is global."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from oracle.config import Settings
from oracle.errors import ConfigError, StorageError
from oracle.storage import migrate
from oracle.storage.blobs import BlobStore, FilesystemBlobStore
from oracle.storage.db import check_database, make_engine, session_factory


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    #: Resolved at start-up: the configured URL or the local anvil/mosquitto the service started.
    chain_rpc_url: str = ""
    mqtt_url: str = ""
    deployment_file: Path | None = None
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.engine.dispose()


def database_setting(settings: Settings) -> str:
    """How the database was chosen, for error messages."""
    return (
        "ORACLE_DATABASE_URL"
        if settings.database_url
        else "ORACLE_DATABASE_URL (unset: SQLite in the data dir)"
    )


def check_database_setting(settings: Settings) -> None:
    """:raises ConfigError: naming the setting and the URL tried, when the database cannot be opened."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        check_database(settings.resolved_database_url)
    except StorageError as e:
        raise ConfigError(f"{database_setting(settings)}: {e}") from None


def open_context(settings: Settings, *, upgrade: bool = True) -> Context:
    """Create the data dir, bring the database schema to head and open the stores.

    :raises ConfigError: the configured database cannot be opened or upgraded (one line, password hidden).
    """
    check_database_setting(settings)
    url = settings.resolved_database_url
    if upgrade:
        try:
            migrate.upgrade(url)
        except StorageError as e:
            raise ConfigError(f"{database_setting(settings)}: {e}") from None
    engine = make_engine(url)
    return Context(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        blobs=FilesystemBlobStore(settings.blob_dir),
        chain_rpc_url=settings.chain_rpc_url,
        mqtt_url=settings.mqtt_url,
        deployment_file=settings.deployment_file,
    )
