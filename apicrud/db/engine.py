"""Engine and session factory built from settings; one Session per request.

Is a pooled connection to a database server (PostgreSQL, MariaDB) still alive? Asking
the server (``pool_pre_ping``) costs a round trip on every checkout. A server that
restarts, or ends an idle session (``idle_session_timeout``, ``wait_timeout``,
``pg_terminate_backend``), closes its end of the socket, and the client's socket turns
readable. So a connection is checked on checkout by looking at its socket (``poll`` with
no timeout: a system call, no round trip); only when something waits there, or the
connection has lain unused for longer than ``idle_ping_after`` seconds (a firewall or NAT
may drop an idle connection without telling either end), is it pinged as before. A ping
that fails invalidates the whole pool and the checkout opens a new connection, so a
request after a database restart runs on a new connection instead of failing.

BEGIN and COMMIT around reads cost two more round trips. On PostgreSQL at READ COMMITTED
(the default) each statement reads its own snapshot whether or not a transaction is open,
so a request that only reads gains nothing from one. A session made with
``read_only=True`` (a GET's) runs on an AUTOCOMMIT connection; its first statement that
may write (anything but a plain SELECT: INSERT/UPDATE/DELETE, SELECT ... FOR UPDATE/SHARE,
SAVEPOINT, SET, WITH ...) switches the connection back to a transaction first, which the
session's commit ends as before. So a GET that writes after all is still one
transaction, committed or rolled back whole. (A SELECT calling a function that writes
would commit on its own; apicrud has none.) MariaDB (REPEATABLE READ: one snapshot for
all statements of a transaction, which a find's count and page rely on) and SQLite
(in-process: no round trips) keep their transactions.
"""

from __future__ import annotations

import functools
import os
import re
import select
import time
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from apicrud.db.schema import install_schema_errors
from apicrud.memo import Memo

#: seconds a pooled connection may lie unused before its checkout pings it anyway
IDLE_PING_AFTER = 5.0
_LAST_USED = "apicrud_last_used"  # in a pool entry's info: time.monotonic() of checkin


class Database:
    """Owns the engine and hands out sessions.

    :param url: SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``,
        ``mysql+pymysql://...``).
    :param idle_ping_after: seconds after which a pooled connection is pinged before use
        (see the module's documentation); 0 pings on every checkout
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False,
                 idle_ping_after: float = IDLE_PING_AFTER) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        sqlite = url.startswith("sqlite")
        if sqlite:
            ensure_sqlite_dir(url)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
        self.engine: Engine = create_engine(url, **kwargs)
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            check_on_checkout(self.engine, idle_ping_after)
        # a missing table or column is a schema mismatch (500), never an outage (503)
        install_schema_errors(self.engine)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL: the same pool, its connections in AUTOCOMMIT for read-only sessions
        self._reads: Engine | None = None
        self._autocommit_reads: bool | None = None  # known after the first connection
        if self.engine.dialect.name == "postgresql" and \
                self.engine.dialect.driver in ("psycopg", "psycopg2"):
            self._reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            event.listen(self._reads, "before_cursor_execute", _transaction_before_write)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, read_only: bool = False) -> Session:
        """A new session. ``read_only``: the caller means to read (a GET); on
        PostgreSQL at READ COMMITTED it then sends no BEGIN/COMMIT unless it writes after
        all (see the module's documentation); elsewhere it is an ordinary session."""
        if read_only and self._reads is not None and (
                self._autocommit_reads if self._autocommit_reads is not None
                else self._read_committed()):
            return self.sessionmaker(bind=self._reads)
        return self.sessionmaker()

    def session_on(self, conn: Connection) -> Session:
        """A session on ``conn``, inside the transaction of that connection (begun here
        if it was not yet): its flushes run there, its commit commits nothing (the
        connection's owner commits), its rollback rolls the connection's back."""
        if not conn.in_transaction():
            conn.begin()
        return self.sessionmaker(bind=conn, join_transaction_mode="rollback_only")

    def read_connection(self) -> Connection:
        """A connection for a request that only reads (a GET's Core reads without an ORM
        session): from the pool :meth:`session` gives a ``read_only`` session."""
        if self._reads is not None and (
                self._autocommit_reads if self._autocommit_reads is not None
                else self._read_committed()):
            return self._reads.connect()
        return self.engine.connect()

    def _read_committed(self) -> bool:
        """Whether the server's default isolation level is READ COMMITTED (SQLAlchemy
        reads it on the engine's first connection: one is made if none was yet)."""
        level = getattr(self.engine.dialect, "default_isolation_level", None)
        if level is None:
            with self.engine.connect():
                pass
            level = getattr(self.engine.dialect, "default_isolation_level", None)
        self._autocommit_reads = level == "READ COMMITTED"
        return self._autocommit_reads

    @staticmethod
    def nothing_to_commit(session: Session) -> bool:
        """Whether committing ``session`` now would write nothing, so that closing it is
        the same: no changes wait for a flush, and the driver has no transaction open
        (SQLite before a write, a read-only session on PostgreSQL before a write). Where
        the driver cannot tell (MariaDB opens a transaction for a SELECT too), False."""
        if not session.in_transaction():
            return True  # nothing ran on it
        if session.new or session.deleted or session.dirty:
            return False
        conn = session.connection()
        raw = conn.connection.dbapi_connection
        name = conn.dialect.name
        if name == "sqlite":
            return raw is not None and not raw.in_transaction
        if name == "postgresql" and raw is not None and raw.autocommit:
            return _idle(raw)
        return False

    def dispose(self) -> None:
        self.engine.dispose()


# -- pooled connections: alive? -------------------------------------------------------------

def check_on_checkout(engine: Engine, idle_ping_after: float) -> None:
    """Ping a pooled connection on checkout only when its socket has something to read
    (the server closed it, or said something while it lay idle) or it was unused for
    longer than ``idle_ping_after`` seconds; a failed ping invalidates the pool."""
    dialect = engine.dialect

    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info.pop(_LAST_USED, None)  # new: its first checkout needs no ping

    def _used(_dbapi_conn: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        used = record.info.get(_LAST_USED)
        if used is None or (time.monotonic() - used < idle_ping_after and
                            _quiet(dbapi_conn)):
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # the pool opens a new connection instead (and refreshes the others)
            raise InvalidatePoolError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine, "connect", _connected)
    event.listen(engine, "checkin", _used)
    event.listen(engine, "checkout", _checkout)


def _socket(dbapi_conn: Any) -> int | None:
    """The file descriptor of a DBAPI connection's socket (psycopg, PyMySQL), or None."""
    try:
        fileno = getattr(dbapi_conn, "fileno", None)  # psycopg
        if callable(fileno):
            return int(fileno())
        sock = getattr(dbapi_conn, "_sock", None)  # PyMySQL
        return int(sock.fileno()) if sock is not None else None
    except Exception:  # noqa: BLE001  closed (psycopg raises its OperationalError), or hidden
        return None


def _quiet(dbapi_conn: Any) -> bool:
    """Whether nothing waits to be read on the connection's socket: an idle connection
    the server has closed (a restart) has its end of file there, or an error message."""
    fd = _socket(dbapi_conn)
    if fd is None or fd < 0:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        return not select.select([fd], [], [], 0)[0]
    except (OSError, ValueError):
        return False


# -- read-only sessions on PostgreSQL -------------------------------------------------------

# what makes a SELECT more than a read of committed rows: row locks, a table made from
# it, locks and settings that last until the end of the transaction
_LOCKING = re.compile(r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b")
_TRANSACTION_SCOPED = ("INTO", "PG_ADVISORY_XACT_", "SET_CONFIG")


@functools.lru_cache(maxsize=2048)  # the compiled cache hands out the same strings
def is_plain_read(statement: str) -> bool:
    """Whether a statement only reads (a SELECT without locks): it needs no transaction
    at READ COMMITTED. Anything else (INSERT, UPDATE, DELETE, SAVEPOINT, WITH ..., SET,
    a locking SELECT) counts as a write; a false alarm only costs a transaction."""
    if statement.lstrip(" \t\r\n(")[:6].upper() != "SELECT":
        return False
    upper = statement.upper()
    if "FOR" in upper and _LOCKING.search(upper) is not None:
        return False
    return not any(word in upper for word in _TRANSACTION_SCOPED)


#: compiled statement -> is_plain_read of its text (the check runs before every statement
#: of a read-only session on PostgreSQL; a page's text is kilobytes long)
_PLAIN_READS: Memo[Any, bool] = Memo(1024)


def _transaction_before_write(conn: Any, _cursor: Any, statement: str, _parameters: Any,
                              _context: Any, _executemany: bool) -> None:
    """Before the first statement of a read-only session that may write, leave
    AUTOCOMMIT: the driver opens a transaction for it, which the session's commit (or
    rollback) ends; the pool restores the connection's isolation level on checkin."""
    compiled = getattr(_context, "compiled", None)
    if compiled is None:  # SQL text sent as it is
        plain = is_plain_read(statement)
    else:  # a compiled statement reads or writes whatever its values: read its text once
        plain = _PLAIN_READS.get_or_put(compiled, lambda: is_plain_read(statement))
    if plain:
        return
    dbapi_conn = conn.connection.dbapi_connection
    if dbapi_conn.autocommit and _idle(dbapi_conn):
        dbapi_conn.autocommit = False


def _idle(dbapi_conn: Any) -> bool:
    """No transaction open on a psycopg (3 or 2) connection."""
    info = getattr(dbapi_conn, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is None:  # psycopg2
        status = dbapi_conn.get_transaction_status()
    return int(status) == 0  # IDLE in both


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
