"""Is the database there, and does it have the tables and columns the models declare?

Three questions asked before serving (``apicrud serve``, ``create_app``) and by
``apicrud check``, each answered by one line for the "refusing to start" list:

- :func:`database_problem`: can ``database_url`` be reached at all (a database that does
  not exist, a server that refuses, a SQLite file in a missing folder)?
- :func:`schema_problems`: does every table and column of the models exist? A missing
  one names the command that fixes it: ``apicrud db upgrade`` when migrations are
  pending, ``apicrud db revision -m ...`` then ``apicrud db upgrade`` when none creates it.
- at request time, :func:`install_schema_errors` turns the database's "no such
  table/column" into :class:`SchemaMismatch`, a 500 logged as a schema mismatch: the
  database is up, so it is never answered as an outage (503 "database is unavailable").

Only what breaks queries is compared (missing tables and columns), with SQLAlchemy's
inspector: reflecting names only costs a few milliseconds, where Alembic's
``compare_metadata`` also reflects indexes, constraints and types (see
``tests/integration/test_migrations.py``, which checks all of that at head).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from apicrud.config import mask_url
from apicrud.errors import Problem
from apicrud.i18n import N_

if TYPE_CHECKING:
    from sqlalchemy import Connection, MetaData
    from sqlalchemy.engine import ExceptionContext

    from apicrud.config import Settings

log = logging.getLogger("apicrud.schema")

#: seconds a start-up probe waits for a database server
CONNECT_TIMEOUT = 5


class SchemaMismatch(Problem):
    """The database lacks a table or column the models use: a deployment fault, not an
    outage. 500, not 503: the database answers, retrying will not help, and
    ``/health`` (which stays 200) would contradict a 503; an operator has to run the
    migration. The client sees no table names; the log has them."""

    status, title, slug = 500, "Internal Server Error", "schema-mismatch"


# -- reachability -----------------------------------------------------------------

def _setting(settings: Settings) -> str:
    return "database_url" if settings.database_url else "data_dir"


def _reason(exc: BaseException, url: str) -> str:
    """One line of the driver's own words, never the password."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    # psycopg: 'connection failed: connection to server at "h", port 5432 failed: FATAL: ...'
    if "FATAL:" in text:
        text = text.rsplit("FATAL:", 1)[1].strip()
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for memory databases and other backends)."""
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    return None if not path or path == ":memory:" or path.startswith("file:") else path


def probe_engine(url: str) -> Engine:
    """A one-connection engine that gives up after CONNECT_TIMEOUT seconds."""
    args: dict[str, Any] = {}
    driver = make_url(url).get_driver_name()
    if driver in ("psycopg", "psycopg2", "pymysql", "mysqldb", "mariadbconnector"):
        args["connect_timeout"] = CONNECT_TIMEOUT
    return create_engine(url, poolclass=NullPool, connect_args=args)


def database_problem(settings: Settings) -> str | None:
    """Why the database cannot be used, in one line naming the setting; None if it can.

    A SQLite file may be missing (it is created), but its folder must exist when
    ``database_url`` names it (the default file in ``data_dir`` gets its folder made).
    """
    url = settings.sqlalchemy_url
    setting = _setting(settings)
    try:
        path = _sqlite_file(url)
    except ArgumentError as exc:
        return f"{setting}: {mask_url(url)} is not a database URL ({exc})"
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        if settings.database_url and not os.path.isdir(folder):
            return f"{setting}: cannot open {mask_url(url)}: folder {folder} does not exist"
        if not os.path.exists(path):
            return None  # SQLite creates it; the schema check then finds it empty
    try:
        engine = probe_engine(url)
    except (ArgumentError, ImportError) as exc:  # unknown dialect or missing driver
        return f"{setting}: {mask_url(url)} cannot be used ({_reason(exc, url)})"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except (SQLAlchemyError, OSError) as exc:
        return f"{setting}: cannot connect to {mask_url(url)}: {_reason(exc, url)}"
    finally:
        engine.dispose()
    return None


# -- comparison -------------------------------------------------------------------

def missing_schema(conn: Connection, metadata: MetaData) -> list[tuple[str, str | None]]:
    """(table, None) for each missing table, (table, column) for each missing column."""
    insp = inspect(conn)
    existing = set(insp.get_table_names())
    wanted = [t for t in metadata.sorted_tables if t.name in existing]
    # one query for every table's columns where the dialect can (PostgreSQL)
    columns = insp.get_multi_columns(filter_names=[t.name for t in wanted]) if wanted else {}
    have = {table: {c["name"] for c in cols} for (_, table), cols in columns.items()}
    out: list[tuple[str, str | None]] = []
    for table in metadata.sorted_tables:
        if table.name not in existing:
            out.append((table.name, None))
        else:
            out += [(table.name, c.name) for c in table.columns
                    if c.name not in have.get(table.name, ())]
    return out


def _model_names(models: ModuleType) -> dict[str, str]:
    registry = getattr(getattr(models, "Base", None), "registry", None)
    names: dict[str, str] = {}
    for mapper in getattr(registry, "mappers", ()):
        table = getattr(mapper, "local_table", None)
        if table is not None and getattr(table, "name", None):
            names.setdefault(table.name, mapper.class_.__name__)
    return names


def _head(settings: Settings) -> str | None:
    """The migrations' head revision; None for a project without migrations."""
    from alembic.script import ScriptDirectory

    folder = os.path.join(settings.root, "migrations")
    if not os.path.isdir(folder):
        return None
    return ScriptDirectory(folder).get_current_head()


def _revisions(settings: Settings, conn: Connection) -> tuple[str | None, str | None]:
    """(the database's revision, the migrations' head). Read directly rather than
    through alembic's MigrationContext, which logs its set-up at INFO."""
    current = None
    if "alembic_version" in inspect(conn).get_table_names():
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        current = ",".join(sorted(rows)) or None
    return current, _head(settings)


def describe(settings: Settings, missing: list[tuple[str, str | None]], models: ModuleType,
             current: str | None,
             head: str | None) -> list[str]:
    """One problem line per missing table or column, each with the command that fixes it."""
    names = _model_names(models)
    if head is not None and current != head:
        fix = (f"the database is at revision {current or 'none'}, the migrations' head is "
               f"{head}: run `apicrud db upgrade`"
               + ("" if settings.db_migrate_at_start else " (or set db_migrate_at_start)"))
    else:
        fix = None
    lines = []
    tables = {t for t, c in missing if c is None}
    every = {t.name for t in models.Base.metadata.sorted_tables}
    if fix and current is None and tables == every:
        return [f"database: has none of the models' tables; {fix}"]
    for table, column in missing:
        model = names.get(table)
        if column is None:
            what = f"table {table!r}{f' (model {model})' if model else ''} is missing"
            slug = f"add {table}"
        else:
            what = f"table {table!r} has no column {column!r}" + \
                (f" (model {model}.{column})" if model else "")
            slug = f"add {table}.{column}"
        lines.append(f"database: {what}; " + (fix or (
            f"no migration creates it: run `apicrud db revision -m \"{slug}\"`, review the "
            "file it writes in migrations/versions, then `apicrud db upgrade`")))
    return lines


def schema_problems(settings: Settings, engine: Engine | None = None) -> list[str]:
    """Compare the models with the database; [] when nothing is missing.

    :param engine: the engine to use (else a probe engine for ``settings``, disposed after)
    :raises sqlalchemy.exc.SQLAlchemyError: the database cannot be reached
    """
    models = importlib.import_module(settings.models_module)
    path = _sqlite_file(settings.sqlalchemy_url)
    if engine is None and path is not None and not os.path.exists(path):
        current, head = None, _head(settings)
        missing: list[tuple[str, str | None]] = [
            (t.name, None) for t in models.Base.metadata.sorted_tables]
        return describe(settings, missing, models, current, head)
    own = engine is None
    engine = engine or probe_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            missing = missing_schema(conn, models.Base.metadata)
            if not missing:
                return []
            current, head = _revisions(settings, conn)
    finally:
        if own:
            engine.dispose()
    return describe(settings, missing, models, current, head)


def pending(settings: Settings) -> tuple[str | None, str | None] | None:
    """(current, head) when migrations are pending, else None (also without migrations)."""
    path = _sqlite_file(settings.sqlalchemy_url)
    if path is not None and not os.path.exists(path):
        head = _head(settings)
        return (None, head) if head else None
    engine = probe_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            current, head = _revisions(settings, conn)
    finally:
        engine.dispose()
    return (current, head) if head is not None and current != head else None


def check_at_start(settings: Settings, engine: Engine) -> None:
    """``create_app``'s check: raise StartupError when a table or column is missing.

    A database that cannot be reached right now is only logged: the service answers
    503 until it returns, as it does when the database goes away later (``apicrud
    serve`` has already refused to start without one).
    """
    from apicrud.errors import StartupError

    try:
        problems = schema_problems(settings, engine)
    except SQLAlchemyError as exc:
        log.warning("schema not compared with the models: %s: cannot connect to %s: %s",
                    _setting(settings), mask_url(settings.sqlalchemy_url),
                    _reason(exc, settings.sqlalchemy_url))
        return
    if problems:
        raise StartupError(problems)


# -- request time -----------------------------------------------------------------

_SQLITE = re.compile(r"^(no such (table|column)|table \S+ has no column named)\b")
_PG_UNDEFINED = {"42P01", "42703"}  # undefined_table, undefined_column
_MYSQL_UNDEFINED = {1146, 1054}  # ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR


def schema_error(orig: BaseException | None) -> str | None:
    """The database's words when ``orig`` (a DBAPI error) says a table or column is
    missing, else None."""
    if orig is None:
        return None
    # the first line: PostgreSQL adds the statement and a caret below
    text = " ".join((str(orig).strip().splitlines() or [""])[0].split())
    module = type(orig).__module__ or ""
    if getattr(orig, "sqlstate", None) in _PG_UNDEFINED or \
            getattr(orig, "pgcode", None) in _PG_UNDEFINED:
        return text
    args = getattr(orig, "args", ())
    if module.startswith(("pymysql", "MySQLdb", "mariadb")) and args and \
            args[0] in _MYSQL_UNDEFINED:
        return " ".join(str(args[-1]).split())
    if module.startswith("sqlite3") and _SQLITE.match(text):
        return text
    return None


def install_schema_errors(engine: Engine) -> None:
    """Make "no such table/column" from ``engine`` raise :class:`SchemaMismatch`."""

    @event.listens_for(engine, "handle_error")
    def _schema_mismatch(context: ExceptionContext) -> None:
        if context.is_disconnect:
            return
        found = schema_error(context.original_exception)
        if found is None:
            return
        log.error("schema mismatch: %s (the database is up, its schema is behind the models:"
                  " run `apicrud db upgrade`, or `apicrud db revision -m ...` first if no "
                  "migration creates it)", found)
        raise SchemaMismatch(N_("internal error: the database schema does not match the "
                                "application")) from context.sqlalchemy_exception


__all__ = ["SchemaMismatch", "check_at_start", "database_problem", "install_schema_errors",
           "missing_schema", "pending", "schema_error", "schema_problems"]
