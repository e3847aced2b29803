"""What a running oracle process holds: settings, the database, the content store, and where the
chain and broker are. Built once by an entry point and passed down; nothing here is global."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from oracle.config import Settings
from oracle.storage import migrate
from oracle.storage.blobs import BlobStore, FilesystemBlobStore
from oracle.storage.db import make_engine, session_factory


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


def open_context(settings: Settings, *, upgrade: bool = True) -> Context:
    """Create the data dir, bring the database schema to head and open the stores."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    if upgrade:
        migrate.upgrade(url)
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
