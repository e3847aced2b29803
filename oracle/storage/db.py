"""Engine and session factory for SQLite (default, WAL) and PostgreSQL (psycopg 3).

Nothing is created at import time: :func:`make_engine` builds an engine from a URL, :func:`session_factory`
binds sessions to it. SQLite gets WAL, foreign keys and a busy timeout on every connection so that the API,
the scheduler and the ingest worker can share one file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from oracle.errors import StorageError


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; creates the SQLite file's directory when needed."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error, translating database errors."""
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as e:
        session.rollback()
        raise StorageError(
            f"database error: {e.__class__.__name__}: {e.orig if hasattr(e, 'orig') else e}"
        ) from e
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Raise StorageError unless the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        raise StorageError(f"database unreachable: {e.__class__.__name__}") from e


def redacted(url: str) -> str:
    """``url`` as it may be shown: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown without its credentials, never raised here
        return url.split("@")[-1]


def error_reason(error: BaseException) -> str:
    """The driver's own words for a database error, on one line (no SQLAlchemy background link)."""
    cause = getattr(error, "orig", None) or error
    return " ".join(str(cause).split()) or cause.__class__.__name__


def check_database(url: str, *, timeout: float = 5.0) -> None:
    """Connect to ``url`` once (giving up after ``timeout`` seconds) and run ``SELECT 1``.

    :raises StorageError: the database cannot be opened; the message names the redacted URL and why.
    """
    engine = make_engine(url) if url.startswith("sqlite") else None
    try:
        if engine is None:
            engine = create_engine(url, connect_args={"connect_timeout": max(1, round(timeout))})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        raise StorageError(f"cannot open the database {redacted(url)}: {error_reason(e)}") from None
    finally:
        if engine is not None:
            engine.dispose()
