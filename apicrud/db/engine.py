"""Engine and session factory built from settings; one Session per request."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from apicrud.db.schema import install_schema_errors


class Database:
    """Owns the engine and hands out sessions.

    :param url: SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``,
        ``mysql+pymysql://...``).
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            ensure_sqlite_dir(url)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                          pool_recycle=3600)
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # a missing table or column is a schema mismatch (500), never an outage (503)
        install_schema_errors(self.engine)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessionmaker()

    def dispose(self) -> None:
        self.engine.dispose()


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a SQLite file URL (the embedded default lives in data_dir)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def drop_all_tables(url: str) -> None:
    """Drop every table of a server database (tests and benchmarks start from an empty
    schema this way). A SQLite URL is left alone: those callers use a new file."""
    from sqlalchemy import MetaData

    if url.startswith("sqlite"):
        return
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
    finally:
        engine.dispose()
