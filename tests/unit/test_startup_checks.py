"""Start-up checks (issue 13): which methods an operationId may route to, how database
errors are told apart (schema mismatch vs outage), problem documents' last newline, and
the default spec's wording."""

from __future__ import annotations

import os
import re
import sqlite3

import pytest

from apicrud.crud.controller import BasicCRUD
from apicrud.db.schema import schema_error
from apicrud.errors import NotFound, Problem
from apicrud.services import CRUD_OPERATIONS, is_operation, operation_names
from apicrud.spec.loader import load_spec, load_spec_with_sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BookController(BasicCRUD):
    def before_create(self, ctx, data):  # a hook, overridden
        return data

    def serialize(self, ctx, record):  # a hook, overridden
        return {}

    def publish(self, ctx):  # an operation of its own
        return None

    def _helper(self, ctx):
        return None

    def shelve(self, ctx, where):  # takes more than the request context: no operation
        return None

    @property
    def title(self):
        return "t"


class Declared(BasicCRUD):
    operations = ("publish",)

    def publish(self, ctx):
        return None

    def archive(self, ctx):  # not declared
        return None


class Plain:  # a controller of its own (like AuthController)
    def get(self, ctx):
        return None

    def login(self, ctx):
        return None

    def serialize(self, ctx):  # a BasicCRUD hook name is never an operation
        return None


@pytest.mark.parametrize("cls, name, expected", [
    (BookController, "create", True), (BookController, "patch", True),
    (BookController, "publish", True),
    (BookController, "before_create", False), (BookController, "serialize", False),
    (BookController, "find_records", False), (BookController, "authorize", False),
    (BookController, "etag", False), (BookController, "_helper", False),
    (BookController, "shelve", False), (BookController, "title", False),
    (Declared, "publish", True), (Declared, "archive", False), (Declared, "find", True),
    (Plain, "get", True), (Plain, "login", True), (Plain, "serialize", False),
])
def test_is_operation(cls, name, expected):
    assert is_operation(cls, name) is expected


def test_basic_crud_routes_exactly_its_six_operations():
    assert operation_names(BasicCRUD) == set(CRUD_OPERATIONS)


class _PgError(Exception):
    def __init__(self, msg, sqlstate):
        super().__init__(msg)
        self.sqlstate = sqlstate


def _pymysql_error(code, msg):
    cls = type("ProgrammingError", (Exception,), {"__module__": "pymysql.err"})
    return cls(code, msg)


def _sqlite_error(sql):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER)")
    try:
        conn.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no error")


@pytest.mark.parametrize("orig, found", [
    (_sqlite_error("SELECT * FROM nope"), "no such table: nope"),
    (_sqlite_error("SELECT b FROM t"), "no such column: b"),
    (_sqlite_error("INSERT INTO t (b) VALUES (1)"), "table t has no column named b"),
    (_PgError('relation "book" does not exist\nLINE 1: ...', "42P01"),
     'relation "book" does not exist'),
    (_PgError("column book.year does not exist", "42703"), "column book.year does not exist"),
    (_pymysql_error(1146, "Table 'x.book' doesn't exist"), "Table 'x.book' doesn't exist"),
    (_pymysql_error(1054, "Unknown column 'year'"), "Unknown column 'year'"),
])
def test_schema_error_recognises_missing_tables_and_columns(orig, found):
    assert schema_error(orig) == found


@pytest.mark.parametrize("orig", [
    _sqlite_error("SELEC 1"),
    _PgError("connection refused", "08006"),
    _pymysql_error(2003, "Can't connect to MySQL server"),
    sqlite3.OperationalError("database is locked"),
    None,
])
def test_schema_error_leaves_outages_and_other_faults_alone(orig):
    assert schema_error(orig) is None


@pytest.mark.parametrize("problem", [Problem("x"), NotFound("no such thing")])
def test_problem_documents_end_with_a_newline(problem):
    body, _, _ = problem.render("/x")
    assert body.endswith(b"}\n")


def test_operations_know_the_file_their_path_is_written_in():
    spec, sources = load_spec_with_sources(os.path.join(ROOT, "openapi", "api.yaml"))
    assert sources["/category"].endswith(os.path.join("openapi", "category.path.yaml"))
    assert set(sources) == set(spec["paths"])


def test_default_spec_summaries_use_proper_plurals():
    spec = load_spec(os.path.join(ROOT, "openapi", "api.yaml"))
    texts = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("summary", "description") and isinstance(value, str):
                    texts.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec["paths"])
    # "categorys", "entrys": a consonant before -ys is a plural made by appending s
    wrong = sorted({w for t in texts for w in re.findall(r"\b\w+[^aeiou\W]ys\b", t)})
    assert not wrong, wrong
    assert "list categories" in texts
