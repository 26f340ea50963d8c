"""The pool and the request sessions on the suite's database (apicrud.db.engine):

- a pooled connection is pinged only when its socket says something happened (the
  server closed it) or it lay idle too long, and a connection the server ended is
  replaced on checkout instead of failing the statement (on a database server);
- a read-only session (a GET's) sends no BEGIN/COMMIT on PostgreSQL, and a write in it
  is still one transaction: rolled back whole, committed whole, locks held to the end;
  elsewhere it is an ordinary session;
- a GET's Core reads run on one connection of the read pool without an ORM session,
  returned when the request ends however it ends; a write request reads in its session;
- a write request's Core statements run on one connection of its own, a session opened
  later joins that connection's transaction, and the commit or rollback takes both; a
  rollback mid-request, a failed commit and every HTTP outcome give the connection back.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, bindparam, create_engine, func, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from apicrud.db.engine import Database, is_plain_read


@pytest.fixture
def db(settings):
    database = Database(settings.sqlalchemy_url, pool_size=2)
    yield database
    database.dispose()


class _Base(DeclarativeBase):
    """A registry of this module's own, apart from the application's models."""


class Probe(_Base):
    __tablename__ = "dbtx_probe"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


@pytest.fixture
def table(db):
    # by a plain engine: the app's reports "no such table" (MariaDB's DESCRIBE in
    # create_all asks so) as a schema mismatch
    plain = create_engine(db.url)
    _Base.metadata.drop_all(plain)
    _Base.metadata.create_all(plain)
    yield Probe.__table__
    _Base.metadata.drop_all(plain)
    plain.dispose()


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


def _in_transaction(session) -> bool:
    """Whether the driver has a transaction open on the session's connection."""
    raw = session.connection().connection.dbapi_connection
    if session.get_bind().dialect.name == "postgresql":
        return int(raw.info.transaction_status) != 0
    return bool(getattr(raw, "in_transaction", True))


def test_plain_reads_are_told_from_statements_that_need_a_transaction():
    assert is_plain_read("SELECT a FROM t WHERE b = %(b)s LIMIT 25")
    assert is_plain_read("\n(SELECT 1) UNION (SELECT 2)")
    assert is_plain_read("SELECT count(*) AS count_1 FROM message")
    for statement in ("INSERT INTO t (a) VALUES (1)", "UPDATE t SET a = 1", "DELETE FROM t",
                      "SAVEPOINT sa_savepoint_1", "SET LOCAL statement_timeout = 5",
                      "WITH x AS (DELETE FROM t RETURNING a) SELECT a FROM x",
                      "SELECT a FROM t WHERE id = 1 FOR UPDATE",
                      "SELECT a FROM t FOR UPDATE OF t SKIP LOCKED",
                      "SELECT a FROM t FOR SHARE", "SELECT a FROM t FOR NO KEY UPDATE",
                      "SELECT a INTO b FROM t", "SELECT pg_advisory_xact_lock(1)",
                      "SELECT set_config('x.y', '1', true)"):
        assert not is_plain_read(statement), statement


def _not_checked_on_checkout(db) -> None:
    """SQLite: an in-process file has no server to end a connection, so its pool has
    no checkout check at all, and a session still reads after the pool was emptied."""
    assert len(db.engine.pool.dispatch.checkout) == 0
    db.engine.dispose()
    with db.session() as session:
        assert session.execute(text("SELECT 1")).scalar_one() == 1


def test_a_connection_the_server_ended_is_replaced_on_checkout(db):
    if not _server(db):
        _not_checked_on_checkout(db)
        return
    with db.session() as session:
        before = _backend_id(session)
    _end_backend(db, before)
    with db.session() as session:  # the same pooled connection, found closed: a new one
        assert _backend_id(session) != before
        assert session.execute(text("SELECT 1")).scalar_one() == 1


def test_a_busy_pool_does_not_ping_an_idle_one_does(db, settings, monkeypatch):
    if not _server(db):
        _not_checked_on_checkout(db)
        return
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


def test_a_read_only_session_opens_no_transaction_for_reads(db, table):
    with db.session(read_only=True) as session:
        assert session.execute(select(func.count()).select_from(table)).scalar_one() == 0
        # PostgreSQL: AUTOCOMMIT, nothing to commit; elsewhere as any session
        assert _in_transaction(session) is (db.dialect != "postgresql" and
                                            db.dialect != "sqlite")
        session.commit()


def test_a_write_in_a_read_only_session_rolls_back_whole(db, table):
    with db.session(read_only=True) as session:
        session.execute(select(func.count()).select_from(table)).scalar_one()
        session.execute(insert(table).values(id=1, name="one"))
        session.execute(insert(table).values(id=2, name="two"))
        session.rollback()
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_a_write_in_a_read_only_session_commits_whole(db, table):
    with db.session(read_only=True) as session:
        session.execute(select(func.count()).select_from(table)).scalar_one()
        session.execute(insert(table).values(id=1, name="one"))
        assert _in_transaction(session)
        with db.session() as other:  # not visible before the commit
            assert other.execute(select(func.count()).select_from(table)).scalar_one() == 0
        session.execute(insert(table).values(id=2, name="two"))
        session.commit()
    with db.session() as session:
        assert session.execute(select(table.c.name).order_by(table.c.id)).scalars().all() \
            == ["one", "two"]
    # the connection went back to the pool as it came: the next ordinary session has
    # its transaction again
    with db.session() as session:
        session.execute(select(func.count()).select_from(table))
        assert _in_transaction(session) is (db.dialect != "sqlite")


def test_a_locking_read_in_a_read_only_session_holds_its_lock_to_the_end(db, table):
    with db.session() as session, session.begin():
        session.execute(insert(table).values(id=1, name="one"))
    if db.dialect == "sqlite":  # no row locks: an ordinary session, the read answers
        with db.session(read_only=True) as session:
            assert session.get_bind() is db.engine
            assert session.execute(select(table.c.name).where(table.c.id == 1)
                                   .with_for_update()).scalar_one() == "one"
        return
    with db.session(read_only=True) as session:
        session.execute(select(table.c.name).where(table.c.id == 1).with_for_update())
        assert _in_transaction(session)  # the lock lasts until the session ends
        session.commit()


def test_a_statement_run_again_is_told_as_the_first_time(db, table):
    """Whether a compiled statement needs a transaction is worked out once per compiled
    statement (apicrud.db.engine keeps it): the same statement objects, run in session
    after session, still read without one and still write or lock inside one."""
    count = select(func.count()).select_from(table)
    lock = select(table.c.name).where(table.c.id == bindparam("id")).with_for_update()
    add = insert(table)
    for n in range(1, 4):
        with db.session(read_only=True) as session:
            assert session.execute(count).scalar_one() == n - 1
            assert _in_transaction(session) is (db.dialect not in ("postgresql", "sqlite"))
            session.execute(add, {"id": n, "name": f"n{n}"})
            assert _in_transaction(session)
            session.rollback()
        with db.session(read_only=True) as session:  # rolled back: nothing was written
            assert session.execute(count).scalar_one() == n - 1
        with db.session() as session, session.begin():
            session.execute(add, {"id": n, "name": f"n{n}"})
        if db.dialect == "sqlite":
            continue
        with db.session(read_only=True) as session:
            assert session.execute(lock, {"id": n}).scalar_one() == f"n{n}"
            assert _in_transaction(session)  # the lock lasts until the session ends
            session.commit()


def test_nothing_to_commit_only_when_the_driver_says_no_write_happened(db, table):
    can_tell = db.dialect in ("sqlite", "postgresql")
    with db.session(read_only=True) as session:
        assert db.nothing_to_commit(session)  # nothing ran yet
        session.execute(select(func.count()).select_from(table)).scalar_one()
        assert db.nothing_to_commit(session) is can_tell
        session.execute(insert(table).values(id=1, name="one"))
        assert not db.nothing_to_commit(session)
        session.commit()
    with db.session(read_only=True) as session:
        session.execute(select(table.c.id)).all()
        session.add(Probe(id=2, name="two"))  # waiting for a flush
        assert not db.nothing_to_commit(session)
        session.rollback()
    with db.session() as session:  # a transaction of its own on PostgreSQL and MariaDB
        session.execute(select(table.c.id)).all()
        assert db.nothing_to_commit(session) is (db.dialect == "sqlite")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_that_writes_commits_and_one_that_fails_leaves_nothing(db, table, method):
    from types import SimpleNamespace

    from apicrud.auth.principal import ANONYMOUS
    from apicrud.context import RequestContext

    services = SimpleNamespace(db=db, audit=None)

    def request(ok: bool, ident: int, orm: bool) -> list[str]:
        ctx = RequestContext(services, None, ANONYMOUS, {}, None, {}, None,  # type: ignore
                             method=method)
        ctx.db.execute(select(func.count()).select_from(table)).scalar_one()
        if orm:
            ctx.db.add(Probe(id=ident, name=f"orm {ident}"))  # flushed by the commit
        else:
            ctx.db.execute(insert(table).values(id=ident, name=f"core {ident}"))
        done: list[str] = []
        ctx.after_commit.append(lambda: done.append("after_commit"))
        ctx.on_rollback.append(lambda: done.append("on_rollback"))
        ctx.finish(ok)
        return done

    assert request(True, 1, orm=False) == ["after_commit"]
    assert request(True, 2, orm=True) == ["after_commit"]
    assert request(False, 3, orm=False) == ["on_rollback"]
    assert request(False, 4, orm=True) == ["on_rollback"]
    with db.session() as session:
        assert session.execute(select(table.c.name).order_by(table.c.id)).scalars().all() \
            == ["core 1", "orm 2"]


def _context(db, method):
    from types import SimpleNamespace

    from apicrud.auth.principal import ANONYMOUS
    from apicrud.context import RequestContext

    return RequestContext(SimpleNamespace(db=db, audit=None), None, ANONYMOUS, {},  # type: ignore
                          None, {}, None, method=method)


@pytest.mark.parametrize("ok", [True, False])
def test_a_get_reads_on_a_connection_of_its_own_and_returns_it(db, table, ok):
    """A GET's Core reads need no ORM session: one connection from the read pool, kept
    for every read of the request, no transaction left open on PostgreSQL, and back in
    the pool when the request ends, however it ends."""
    pool = db.engine.pool
    before = pool.checkedout()
    ctx = _context(db, "GET")
    conn = ctx.reads()
    assert ctx.reads() is conn and ctx.open_session is None
    assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
    raw = conn.connection.dbapi_connection
    if db.dialect == "postgresql":
        assert raw.autocommit and int(raw.info.transaction_status) == 0
    assert pool.checkedout() == before + 1
    ctx.finish(ok)
    assert pool.checkedout() == before and conn.closed


def test_a_get_that_opened_its_session_reads_in_it_and_a_write_request_always_does(db, table):
    ctx = _context(db, "GET")
    session = ctx.db
    assert ctx.reads() is session.connection()
    ctx.finish(True)
    ctx = _context(db, "POST")
    ctx.db.execute(insert(table).values(id=7, name="mine"))
    # a write request's reads run in its transaction: they see its own write
    assert ctx.reads().execute(select(table.c.name).where(table.c.id == 7)).scalar_one() \
        == "mine"
    ctx.finish(False)
    with db.session() as check:
        assert check.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_gets_over_http_leave_no_connection_checked_out(server, user):
    """Found, not found, refused and malformed reads: each returns what it took."""
    pool = server.services.db.engine.pool
    lst = user.api.post("/list", json={"name": "pool", "privacy": "member"}).json()
    user.api.post("/message", json={"list_id": lst["id"], "subject": "s"})
    idle = pool.checkedout()
    for path, params in ((f"/list/{lst['id']}", None), ("/list/x-nosuchlist0000000", None),
                         ("/message", {"filter": "{not json"}), ("/message", None),
                         ("/message", {"count": "none", "limit": 1})):
        for _ in range(3):
            assert user.api.get(path, params=params).status_code in (200, 400, 404)
    assert pool.checkedout() == idle


def _names(db, table) -> list[str]:
    with db.session() as check:  # another connection: what is committed
        return check.execute(select(table.c.name).order_by(table.c.id)).scalars().all()


@pytest.mark.parametrize("ok", [True, False])
def test_a_write_requests_connection_and_its_session_are_one_transaction(db, table, ok):
    """A Core write on the request's connection, then the ORM's (a session opened later):
    one connection (a second one would wait for SQLite's writer lock), one transaction,
    each seeing the other's writes, nothing visible outside before the commit, and the
    commit or the rollback takes both; the connection goes back to the pool."""
    pool = db.engine.pool
    before = pool.checkedout()
    ctx = _context(db, "POST")
    conn = ctx.connection()
    assert ctx.connection() is conn and ctx.open_session is None
    conn.execute(insert(table).values(id=11, name="core"))
    session = ctx.db
    assert session.connection() is conn and ctx.connection() is conn
    session.add(Probe(id=12, name="orm"))
    session.flush()
    assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 2
    assert ctx.reads() is conn
    if _server(db):  # (SQLite's WAL readers see the last commit too; a server's, surely)
        assert _names(db, table) == []
    assert pool.checkedout() == before + 1
    done: list[str] = []
    ctx.after_commit.append(lambda: done.append("after_commit"))
    ctx.on_rollback.append(lambda: done.append("on_rollback"))
    ctx.finish(ok)
    assert done == (["after_commit"] if ok else ["on_rollback"])
    assert _names(db, table) == (["core", "orm"] if ok else [])
    assert pool.checkedout() == before and conn.closed and ctx.open_session is None


@pytest.mark.parametrize("ok", [True, False])
def test_a_write_request_on_its_connection_alone_commits_or_rolls_back(db, table, ok):
    pool = db.engine.pool
    before = pool.checkedout()
    ctx = _context(db, "PATCH")
    ctx.connection().execute(insert(table).values(id=21, name="alone"))
    done: list[str] = []
    ctx.after_commit.append(lambda: done.append("after_commit"))
    ctx.on_rollback.append(lambda: done.append("on_rollback"))
    ctx.finish(ok)
    assert ctx.open_session is None and pool.checkedout() == before
    assert done == (["after_commit"] if ok else ["on_rollback"])
    assert _names(db, table) == (["alone"] if ok else [])


def test_a_failed_commit_of_the_connection_runs_the_rollback_steps(db, table, monkeypatch):
    ctx = _context(db, "POST")
    conn = ctx.connection()
    conn.execute(insert(table).values(id=31, name="lost"))
    done: list[str] = []
    ctx.after_commit.append(lambda: done.append("after_commit"))
    ctx.on_rollback.append(lambda: done.append("on_rollback"))

    def refuse() -> None:
        raise RuntimeError("the server went away")

    monkeypatch.setattr(conn, "commit", refuse)
    with pytest.raises(RuntimeError):
        ctx.finish(True)
    assert done == ["on_rollback"] and conn.closed
    assert _names(db, table) == []


def test_a_rollback_mid_request_gives_the_connection_back_and_work_goes_on(db, table):
    """ctx.rollback() (a conflict the controller answers for itself): what was written is
    gone, a connection without a session holding objects returns to the pool, and the
    request's next write starts a new transaction; objects of a session stay attached."""
    with db.session() as session, session.begin():
        session.add(Probe(id=40, name="earlier"))
    pool = db.engine.pool
    before = pool.checkedout()
    ctx = _context(db, "POST")
    ctx.connection().execute(insert(table).values(id=41, name="undone"))
    ctx.db.execute(select(func.count()).select_from(table)).scalar_one()  # a session, empty
    ctx.rollback()
    assert pool.checkedout() == before and ctx.open_session is None
    ctx.connection().execute(insert(table).values(id=42, name="undone too"))
    probe = ctx.db.get(Probe, 40)
    ctx.db.add(Probe(id=43, name="new, undone"))
    ctx.db.flush()
    ctx.rollback()  # the session holds a loaded object: it stays, on the same connection
    assert ctx.open_session is not None and pool.checkedout() == before + 1
    assert probe.name == "earlier"  # read again, attached
    ctx.connection().execute(insert(table).values(id=44, name="after"))
    ctx.finish(True)
    assert _names(db, table) == ["earlier", "after"] and pool.checkedout() == before


def test_writes_over_http_leave_no_connection_checked_out(server, user, other_user):
    """Created, refused, conflicting, stale, malformed and deleted: each write request
    returns the connection it took, whichever way (Core or ORM) it wrote."""
    pool = server.services.db.engine.pool
    lst = user.api.post("/list", json={"name": "pool writes", "privacy": "member"}).json()
    secret = other_user.api.post("/list", json={"name": "not yours", "privacy": "secret"}).json()
    idle = pool.checkedout()
    msg = user.api.post("/message", json={"list_id": lst["id"], "subject": "s"})
    assert msg.status_code == 201
    mid, tag = msg.json()["id"], msg.headers["ETag"]
    for _ in range(2):
        for method, path, body, headers, status in (
                ("post", "/message", {"list_id": lst["id"], "subject": "t"}, {}, 201),
                ("post", "/message", {"list_id": secret["id"], "subject": "t"}, {}, 404),
                ("post", "/message", {"list_id": lst["id"], "subject": 5}, {}, 400),
                ("post", "/list", {"name": "pool writes"}, {}, 409),
                ("patch", f"/message/{mid}", {"subject": "u"},
                 {"If-Match": '"0123456789abcdef0123"'}, 412),
                ("patch", f"/message/{mid}", {"version": 9}, {}, 400),
                ("put", "/person/x-nosuchperson00000", {"name": "n"}, {}, 404)):
            resp = getattr(user.api, method)(path, json=body, headers=headers)
            assert resp.status_code == status, (method, path, resp.text)
    done = user.api.patch(f"/message/{mid}", json={"subject": "v"}, headers={"If-Match": tag})
    assert done.status_code == 200
    assert user.api.delete(f"/message/{mid}").status_code in (200, 204)
    assert pool.checkedout() == idle
