"""Storage on both databases: migrations, idempotency constraints, transactions."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from oracle.errors import StorageError
from oracle.storage import migrate
from oracle.storage.all_tables import Base
from oracle.storage.db import make_engine, ping, session_factory, transaction
from oracle.storage.tables import Blob, Observation, OutboxRow, ReportRow


def test_upgrade_creates_every_table_at_head(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.upgrade(database_url)  # a second upgrade is a no-op, not an error
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_schema_matches_the_models(database_url: str) -> None:
    """Autogenerate finds nothing to do: the migrations and tables.py describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from oracle.storage.partitions import schema_filter

    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        opts = {"include_object": schema_filter(conn.dialect.name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
    engine.dispose()
    assert diff == []


def test_report_subject_epoch_is_unique(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    factory = session_factory(engine)
    row = {
        "subject": "0x" + "11" * 32,
        "kind": 1,
        "value": str(2**255 - 1),
        "epoch": 2**63 - 1,
        "observed_at": 1_700_000_000,
        "inputs_root": "0x" + "22" * 32,
        "model_id": "0x" + "33" * 32,
    }
    with transaction(factory) as s:
        s.add(ReportRow(**row))
    with pytest.raises(StorageError, match="database error"), transaction(factory) as s:
        s.add(ReportRow(**row))
    with factory() as s:
        stored = s.scalars(select(ReportRow)).all()
        assert len(stored) == 1
        assert int(stored[0].value) == 2**255 - 1  # int256 round-trips exactly as a decimal string
        assert stored[0].epoch == 2**63 - 1
    engine.dispose()


def test_observation_and_outbox_keys_are_idempotent(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    factory = session_factory(engine)
    with transaction(factory) as s:
        s.add(Blob(cid="bafkreiexample", size=3))
        s.flush()
        s.add(Observation(kind="raster", cid="bafkreiexample", variable="ndvi"))
        s.add(
            OutboxRow(
                key="report:abc:1",
                purpose="report",
                to_address="0x" + "00" * 20,
                calldata=b"\x01",
                gas_limit=1,
            )
        )
    with factory() as s:
        s.add(Observation(kind="raster", cid="bafkreiexample", variable="ndvi"))
        with pytest.raises(SAIntegrityError):
            s.commit()
        s.rollback()
        s.add(
            OutboxRow(
                key="report:abc:1", purpose="report", to_address="0x" + "00" * 20, calldata=b"", gas_limit=1
            )
        )
        with pytest.raises(SAIntegrityError):
            s.commit()
    engine.dispose()


def test_foreign_keys_are_enforced(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with session_factory(engine)() as s:
        s.add(Observation(kind="raster", cid="bafkrei-not-stored"))
        with pytest.raises(SAIntegrityError):
            s.commit()
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    from pathlib import Path

    url = f"sqlite:///{Path(str(tmp_path)) / 'x.sqlite3'}"
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_unreachable_database_is_a_clear_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StorageError, match="database unreachable"):
        ping(engine)
