"""The pool on the suite's database (apicrud.db.engine): a pooled connection is pinged
only when its socket says something happened (the server closed it) or it lay idle too
long, and a connection the server ended is replaced on checkout instead of failing the
statement (on a database server).
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from apicrud.db.engine import Database


@pytest.fixture
def db(settings):
    database = Database(settings.sqlalchemy_url, pool_size=2)
    yield database
    database.dispose()


def _server(db) -> bool:
    return db.dialect in ("postgresql", "mysql", "mariadb")


def _backend_id(session) -> int:
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return session.execute(text("SELECT CONNECTION_ID()")).scalar_one()


def _end_backend(db, backend: int) -> None:
    """What a database restart does to a pooled connection: the server ends it."""
    admin = create_engine(db.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if db.dialect == "postgresql":
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
                conn.execute(text("SELECT pg_sleep(0.2)"))  # the socket closes at once
            else:
                conn.execute(text(f"KILL {int(backend)}"))
                conn.execute(text("SELECT SLEEP(0.2)"))
    finally:
        admin.dispose()


def test_a_connection_the_server_ended_is_replaced_on_checkout(db):
    if not _server(db):
        pytest.skip("SQLite has no server to end a connection")
    with db.session() as session:
        before = _backend_id(session)
    _end_backend(db, before)
    with db.session() as session:  # the same pooled connection, found closed: a new one
        assert _backend_id(session) != before
        assert session.execute(text("SELECT 1")).scalar_one() == 1


def test_a_busy_pool_does_not_ping_an_idle_one_does(db, settings, monkeypatch):
    if not _server(db):
        pytest.skip("SQLite connections are not pinged")
    pings = []
    ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda c: pings.append(c) or ping(c))
    for _ in range(5):
        with db.session() as session:
            session.execute(text("SELECT 1"))
    assert pings == []  # used a moment ago, its socket quiet: no round trip
    idle = Database(settings.sqlalchemy_url, pool_size=2, idle_ping_after=0)
    try:
        ping2 = idle.engine.dialect.do_ping
        monkeypatch.setattr(idle.engine.dialect, "do_ping",
                            lambda c: pings.append(c) or ping2(c))
        for _ in range(3):
            with idle.session() as session:
                session.execute(text("SELECT 1"))
        assert len(pings) == 2  # every checkout but the first (a new connection)
    finally:
        idle.dispose()
