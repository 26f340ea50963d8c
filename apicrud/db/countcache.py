"""Exact counts kept in Redis until a write could change them.

A find's exact count over a large table costs the database the same scan on every
request, while the rows it counts rarely change between two requests. A resource that
declares ``count_cache: <seconds>`` in ``x-apicrud-resources`` has its exact counts kept
in Redis, and every write through the application's engine invalidates them:

- **What a count is.** The key is a digest of the count statement as the database runs
  it: its SQL text and every bound value (the caller's id, the lists it holds at each
  level, the request's filter), plus the database's identity (its URL without the
  password). Two callers share a count only when the database would be asked the very
  same question; a caller whose memberships change binds other values, so it asks anew.
- **What invalidates it.** Each table has a write generation in Redis. Every INSERT,
  UPDATE or DELETE the engine executes (ORM flushes, Core writes, bulk writes, purges;
  a DDL or an unparsed write statement counts as a write to every table) marks the
  tables it touched on its connection, and when the connection goes back to the pool,
  after its commit or rollback and before the request's answer is sent, the generations
  of those tables go up by one. A count is stored with the generations of every table
  its statement reads (subqueries included), read before it was counted, and is used
  only while they are unchanged. So the first count after a committed write is counted
  again, however the two requests interleave (a rolled-back write only costs a count).
- **What it cannot see.** A write that does not pass through the application's engine
  (another program, a migration run elsewhere, a restored backup, and the command line's
  ``account`` commands, which open no Redis) invalidates nothing
  unless that program calls :func:`invalidate_counts` (or raises the generation keys
  itself: ``INCR`` of :func:`generation_key`) after its commit: the declared seconds bound
  how long such a count can be stale, and a client may ask for a fresh count with
  ``Cache-Control: no-cache``. A statement whose answer depends on
  more than the rows (a clock or a random function, raw SQL text) is never kept. When
  Redis is unreachable the count is counted, as without a cache.
- **Where it is not used.** Only a GET or HEAD's reads use it (a write request counts in
  its own transaction), and not on a connection that already holds a snapshot of its own
  (a transaction other than autocommit reads on PostgreSQL or MariaDB).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.schema import Table
from sqlalchemy.sql.selectable import TableClause

from apicrud.memo import Memo
from apicrud.redis_keys import key as redis_key

log = logging.getLogger(__name__)

#: in a pooled connection's info: the tables its statements wrote since its checkout
_WRITTEN = "apicrud_written_tables"
ANY_TABLE = "*"  # a write whose tables are unknown: every count is counted again
#: first words of a statement that writes, where SQLAlchemy did not compile it (text)
_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "TRUNCATE",
                          "UPSERT", "COPY", "CALL", "ALTER", "DROP", "CREATE", "RENAME",
                          "WITH", "LOAD"})
#: SQL functions whose value is not a function of the rows alone
VOLATILE = frozenset({
    "now", "current_timestamp", "current_date", "current_time", "localtime",
    "localtimestamp", "sysdate", "utc_timestamp", "utc_date", "utc_time", "curdate",
    "curtime", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
    "timeofday", "random", "rand", "uuid", "gen_random_uuid", "uuid_generate_v4",
    "datetime", "date", "time", "julianday", "strftime", "unixepoch", "unix_timestamp",
    "current_user", "session_user", "user", "database", "currval", "nextval", "lastval",
    "last_insert_id", "txid_current", "pg_backend_pid", "connection_id"})


def database_identity(url: str | URL) -> str:
    """A short, stable name of the database a URL names (the URL without the password):
    two applications on one Redis and different databases share no count."""
    shown = make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def generation_key(url: str | URL, table: str) -> str:
    """The Redis key of ``table``'s write generation in the database ``url`` names."""
    return redis_key("counts", database_identity(url), "gen", table)


def invalidate_counts(client: Any, url: str | URL, *tables: str) -> None:
    """For a program that writes to the database without apicrud's engine (a batch
    job, another service): after its commit, the counts kept of the rows of ``tables``
    (none given: of every table) are counted again. Raises redis' errors."""
    _incr_each(client, [generation_key(url, table) for table in tables or (ANY_TABLE,)])


def _incr_each(client: Any, keys: list[str]) -> None:
    """INCR each of ``keys``: one command for one key, else one pipeline."""
    if len(keys) == 1:  # the usual write: no pipeline to build
        client.incr(keys[0])
        return
    pipe = client.pipeline(transaction=False)
    for name in keys:
        pipe.incr(name)
    pipe.execute()


class CountCache:
    """Exact counts in Redis, invalidated by the writes of ``engine``'s connections.

    :param engine: the application's engine: its connections' writes are tracked
    :param client: a Redis client (``redis.Redis``)
    """

    def __init__(self, engine: Engine, client: Any) -> None:
        self.client = client
        self.dialect = engine.dialect
        self.url = engine.url
        self.database = database_identity(engine.url)
        self._prefix = redis_key("counts", self.database)
        # statement -> (it, its digest, the Redis keys of its tables' generations), or
        # (it, None, ()) where it may not be kept; held so an id is not reused
        self._statements: Memo[int, tuple[Any, str | None, tuple[str, ...]]] = Memo(1024)
        self._gen_memo: Memo[str, str] = Memo(1024)  # table -> its generation's key
        track_writes(engine, self.bump)

    def generation_key(self, table: str) -> str:
        """The Redis key of ``table``'s write generation (worked out once per table)."""
        found = self._gen_memo.get(table)
        if found is None:
            found = self._gen_memo.put(table, generation_key(self.url, table))
        return found

    # -- invalidation ------------------------------------------------------------------

    def bump(self, tables: set[str]) -> None:
        """Raise the write generation of ``tables`` (``*``: of every table)."""
        try:
            _incr_each(self.client, [self.generation_key(t) for t in sorted(tables)])
        except RedisError:
            # its counts stay stale until they expire (the declared seconds)
            log.warning("count cache: could not invalidate counts of %s", sorted(tables),
                        extra={"event": "count_cache_bump_failed"})

    # -- reads -------------------------------------------------------------------------

    def _describe(self, stmt: Any) -> tuple[str | None, tuple[str, ...]]:
        entry = self._statements.get(id(stmt))
        if entry is not None and entry[0] is stmt:
            return entry[1], entry[2]
        digest: str | None = None
        gens: tuple[str, ...] = ()
        tables = statement_tables(stmt)
        if tables is not None:
            compiled = stmt.compile(dialect=self.dialect)
            params = sorted((k, repr(v)) for k, v in compiled.params.items())
            text = f"{self.database}\n{compiled.string}\n{params!r}"
            digest = hashlib.sha256(text.encode()).hexdigest()
            gens = tuple(self.generation_key(t) for t in (*sorted(tables), ANY_TABLE))
        self._statements.put(id(stmt), (stmt, digest, gens))
        return digest, gens

    def count(self, conn: Connection, stmt: Any, ttl: int, compute: Callable[[], int],
              fresh: bool = False) -> int:
        """The count ``stmt`` answers on ``conn``: kept, while no table it reads was
        written and for at most ``ttl`` seconds, else ``compute()`` (then kept).
        ``fresh``: count now whatever is kept (and keep that)."""
        if conn.info.get(_WRITTEN) or _own_snapshot(conn):
            return compute()  # its own uncommitted writes, or a snapshot of its own
        digest, gens = self._describe(stmt)
        if digest is None:
            return compute()
        count_key = f"{self._prefix}:n:{digest}"
        try:
            values = self.client.mget([*gens, count_key])
        except RedisError:
            return compute()
        stamp = b",".join(v or b"0" for v in values[:-1])
        kept = values[-1]
        if kept is not None and not fresh:
            kept_stamp, _, number = kept.rpartition(b"|")
            if kept_stamp == stamp and number.isdigit():
                return int(number)
        n = compute()
        try:  # under the generations read before counting: a write since then hides it
            self.client.set(count_key, stamp + b"|" + str(int(n)).encode(), ex=ttl)
        except RedisError:
            pass
        return n


def statement_tables(stmt: Any) -> set[str] | None:
    """The names of the tables a statement reads (its subqueries' too), or None when its
    answer may depend on more than their rows (raw SQL text, a volatile function)."""
    tables: set[str] = set()
    for element in visitors.iterate(stmt):
        if isinstance(element, TextClause):
            return None
        if isinstance(element, FunctionElement) and \
                str(getattr(element, "name", "")).lower() in VOLATILE:
            return None
        if isinstance(element, (Table, TableClause)):
            tables.add(element.name)
    return tables or None


def _own_snapshot(conn: Connection) -> bool:
    """Whether ``conn`` is inside a transaction that reads one snapshot for all its
    statements (MariaDB's REPEATABLE READ, PostgreSQL outside autocommit reads): a count
    there may be older than the generations just read, so it is neither kept nor used."""
    if conn.dialect.name == "sqlite" or not conn.in_transaction():
        return False  # (pysqlite begins a transaction at the first write only)
    return conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT"


#: compiled statement (SQLAlchemy keeps one per statement and shape in its cache) -> the
#: tables it writes (empty for a read): the check runs after every statement
_COMPILED_WRITES: Memo[Any, frozenset[str]] = Memo(1024)


def track_writes(engine: Engine, bump: Callable[[set[str]], None]) -> None:
    """Mark the tables each statement on ``engine`` writes in its connection's info, and
    ``bump`` them when the connection goes back to the pool (after its commit or
    rollback: a count read after that is counted again)."""

    def _executed(conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
                  _many: bool) -> None:
        compiled = getattr(context, "compiled", None)
        tables: Iterable[str] | None
        if compiled is None:  # SQL text sent as it is
            tables = written_tables(statement, context)
        else:  # what a compiled statement writes is the compiled object's, once
            tables = _COMPILED_WRITES.get_or_put(compiled, lambda: frozenset(
                written_tables(statement, context) or ()))
        if tables:
            conn.info.setdefault(_WRITTEN, set()).update(tables)

    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is None:
            return
        written = record.info.pop(_WRITTEN, None)
        if written:
            bump(written)

    event.listen(engine, "after_cursor_execute", _executed)
    event.listen(engine, "checkin", _checkin)


def written_tables(statement: str, context: Any) -> set[str] | None:
    """The tables a statement writes: the target of a compiled INSERT, UPDATE or
    DELETE; every table (``*``) for DDL or SQL text that writes; None for a read."""
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        table = getattr(getattr(context.compiled, "statement", None), "table", None)
        name = getattr(table, "name", None)
        return {name} if isinstance(name, str) else {ANY_TABLE}
    if context is not None and getattr(context, "isddl", False):
        return {ANY_TABLE}
    compiled = getattr(context, "compiled", None)
    if compiled is not None and not isinstance(getattr(compiled, "statement", None),
                                               TextClause):
        return None  # a compiled SELECT (a CTE's WITH included)
    first = statement.lstrip(" \t\r\n(").split(None, 1)[:1]
    if first and first[0].upper() in _WRITE_WORDS:
        return {ANY_TABLE}
    return None
