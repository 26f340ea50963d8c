"""Start-up failures are one line each in the "refusing to start" list, never a traceback.

``apicrud serve`` and ``apicrud check`` run for real as subprocesses (see test_cli.py):
a database that does not exist, a SQLite file in a missing folder, an unreachable Redis,
tables or columns the models have and the database lacks; every password in a URL is
masked. In-process: ``create_app`` refuses the same way, and at request time a missing
column is a 500 "schema mismatch", never a 503 "database is unavailable".
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import requests

from apicrud.config import load_settings
from test_cli import (
    FIXTURES,
    ROOT,
    apicrud,
    assert_no_traceback,
    embedded_redis_pids,
    free_port,
    output,
)

FAKE_PW = "fake-Pw-9c41e"
#: the exit status of every refused start (click's usage of ClickException)
REFUSED = 1
SECRET_WARNING = "secret_key is left at a known default"


def problems(proc) -> list[str]:
    """The items of the "refusing to start" (serve) or "N problem(s)" (check) list."""
    return re.findall(r"^  - (.*)$", proc.stderr, re.M)


def refused(proc) -> list[str]:
    assert proc.returncode == REFUSED, output(proc)
    assert_no_traceback(proc)
    assert FAKE_PW not in output(proc)
    return problems(proc)


def closed_port() -> int:
    return free_port()  # bound and released at once: nothing listens there


# -- a database that cannot be used -----------------------------------------------------

# needs the PostgreSQL server on 127.0.0.1:5432 (.ci/run starts it before any run)
def test_serve_postgres_database_missing_one_line_masked_password(tmp_path):
    url = f"postgresql+psycopg://postgres:{FAKE_PW}@127.0.0.1:5432/apicrud_no_such_db"
    proc = apicrud(tmp_path, "serve", APICRUD_DATABASE_URL=url, APICRUD_PORT=str(free_port()))
    assert "refusing to start:" in proc.stderr, output(proc)
    assert refused(proc) == [
        "database_url: cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:5432/"
        'apicrud_no_such_db: database "apicrud_no_such_db" does not exist']
    assert not embedded_redis_pids(tmp_path)  # refused before starting anything


def test_serve_sqlite_file_in_missing_folder_one_line(tmp_path):
    folder = tmp_path / "no" / "such" / "folder"
    url = f"sqlite:///{folder}/app.db"
    proc = apicrud(tmp_path, "serve", APICRUD_DATABASE_URL=url, APICRUD_PORT=str(free_port()))
    assert "refusing to start:" in proc.stderr, output(proc)
    assert refused(proc) == [f"database_url: cannot open {url}: folder {folder} does not exist"]
    assert not (tmp_path / "no").exists()


def test_serve_unreachable_redis_one_line_masked_password(tmp_path):
    port = closed_port()
    url = f"redis://:{FAKE_PW}@127.0.0.1:{port}/5"
    proc = apicrud(tmp_path, "serve", APICRUD_REDIS_URL=url, APICRUD_PORT=str(free_port()))
    assert "refusing to start:" in proc.stderr, output(proc)
    (line,) = refused(proc)
    assert line.startswith(f"redis_url: cannot reach redis://:***@127.0.0.1:{port}/5: "), line
    assert "Connection refused" in line, line
    assert not (tmp_path / "apicrud.db").exists()  # nothing touched


# needs the PostgreSQL server on 127.0.0.1:5432 (.ci/run starts it before any run)
def test_check_lists_missing_database_and_unreachable_redis(tmp_path):
    port = closed_port()
    proc = apicrud(tmp_path, "check",
                   APICRUD_DATABASE_URL=f"postgresql+psycopg://postgres:{FAKE_PW}@127.0.0.1:5432"
                                        "/apicrud_no_such_db",
                   APICRUD_REDIS_URL=f"redis://user:{FAKE_PW}@127.0.0.1:{port}/5")
    lines = refused(proc)
    assert re.search(r"^2 problem\(s\):$", proc.stderr, re.M), output(proc)
    assert lines[0].startswith("database_url: cannot connect to postgresql+psycopg://"
                               "postgres:***@127.0.0.1:5432/apicrud_no_such_db: "), lines
    assert lines[1].startswith(f"redis_url: cannot reach redis://user:***@127.0.0.1:{port}/5"), \
        lines
    assert "ok:" not in proc.stdout


def test_db_upgrade_sqlite_in_missing_folder_one_line(tmp_path):
    folder = tmp_path / "missing"
    proc = apicrud(tmp_path, "db", "upgrade", APICRUD_DATABASE_URL=f"sqlite:///{folder}/x.db")
    assert proc.returncode == REFUSED, output(proc)
    assert_no_traceback(proc)
    assert f"database_url: cannot open sqlite:///{folder}/x.db: folder {folder} does not " \
           "exist" in proc.stderr, output(proc)


# -- the models and the database disagree -----------------------------------------------

def _migrated(tmp_path: Path, revision: str = "head") -> Path:
    up = apicrud(tmp_path, "db", "upgrade", revision)
    assert up.returncode == 0, output(up)
    return tmp_path / "apicrud.db"


def _drop_column(db_file: Path, table: str, column: str) -> None:
    with sqlite3.connect(db_file) as conn:
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


FORGOTTEN = ("database: table 'category' has no column 'description' (model "
             "Category.description); no migration creates it: run `apicrud db revision -m "
             "\"add category.description\"`, review the file it writes in migrations/versions,"
             " then `apicrud db upgrade`")


def test_serve_forgotten_migration_refused_naming_column_and_commands(tmp_path):
    """The database is at head, yet lacks a column of a model: a revision was forgotten.
    (Migrating at start, the default, changes nothing: the comparison follows it.)"""
    _drop_column(_migrated(tmp_path), "category", "description")
    proc = apicrud(tmp_path, "serve", "--port", str(free_port()))
    assert "refusing to start:" in proc.stderr, output(proc)
    assert refused(proc) == [FORGOTTEN]
    # settings loaded once, replaced twice (--port, the embedded Redis): warned once
    assert output(proc).count(SECRET_WARNING) == 1, output(proc)
    assert not embedded_redis_pids(tmp_path)  # the embedded Redis was stopped again

    check = apicrud(tmp_path, "check")
    assert refused(check) == [FORGOTTEN]
    assert re.search(r"^1 problem\(s\):$", check.stderr, re.M), output(check)


def test_serve_pending_migration_without_migrate_at_start_names_upgrade(tmp_path):
    _migrated(tmp_path, "0003")  # 0004 adds the grant table
    env = {"APICRUD_DB_MIGRATE_AT_START": "false"}
    proc = apicrud(tmp_path, "serve", APICRUD_PORT=str(free_port()), **env)
    lines = refused(proc)
    # one line per table the later migrations add (grant, then audit, webhook, ...)
    assert any(line.startswith("database: table 'grant' (model Grant) is missing; the "
                               "database is at revision 0003") for line in lines), output(proc)
    assert all(re.match(r"database: table '\w+' \(model \w+\) is missing; the database "
                        r"is at revision 0003", line) for line in lines), lines
    assert all("run `apicrud db upgrade`" in line for line in lines), lines

    check = apicrud(tmp_path, "check", **env)
    assert refused(check) == lines
    # migrating at start: check leaves it to the start, and says so
    check = apicrud(tmp_path, "check")
    assert check.returncode == 0, output(check)
    assert re.search(r"^database: at revision 0003, head \S+; the migrations are applied at "
                     r"start", check.stdout, re.M), output(check)


def test_check_empty_database_without_migrate_at_start_is_one_line(tmp_path):
    proc = apicrud(tmp_path, "check", APICRUD_DB_MIGRATE_AT_START="false")
    assert refused(proc) == [
        "database: has none of the models' tables; the database is at revision none, the "
        f"migrations' head is {_head()}: run `apicrud db upgrade` (or set "
        "db_migrate_at_start)"]
    assert not (tmp_path / "apicrud.db").exists()  # check does not create it


def _head() -> str:
    from apicrud.db import migrate

    return migrate.head(load_settings(root=ROOT, environ={}))


# -- check: operationIds and resources ------------------------------------------------

def test_check_refuses_hooks_as_operations_and_resources_without_paths(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(FIXTURES / "badpolicy", root)
    (root / "rbac.yaml").write_text(
        "policies:\n"
        "  category:\n    - {principal: admin, resource: \"category:*\", actions: crud}\n"
        "  list:\n    - {principal: admin, resource: \"list:*\", actions: crud}\n")
    spec = root / "openapi" / "api.yaml"
    text = spec.read_text().replace("  category: {}\n", "  category: {}\n  list: {}\n", 1)
    text = text.replace(
        '      responses: {"200": {description: ok}}\n',
        '      responses: {"200": {description: ok}}\n'
        "    post:\n"
        "      operationId: category.before_create\n"
        '      responses: {"201": {description: created}}\n'
        "  /category/{id}:\n"
        '    $ref: "category.path.yaml#/item"\n', 1)
    spec.write_text(text + "    List:\n      type: object\n      properties:\n"
                           "        id: {type: string, readOnly: true}\n")
    (root / "openapi" / "category.path.yaml").write_text(
        "item:\n"
        "  parameters:\n"
        "    - {name: id, in: path, required: true, schema: {type: string}}\n"
        "  get:\n"
        "    operationId: category.serialize\n"
        '    responses: {"200": {description: ok}}\n'
        "  put:\n"
        "    operationId: category.update\n"
        '    responses: {"200": {description: ok}}\n')
    proc = apicrud(tmp_path, "--root", str(root), "check")
    assert proc.returncode == 1, output(proc)
    assert_no_traceback(proc)
    lines = problems(proc)
    assert len(lines) == 3, output(proc)
    assert any(re.fullmatch(
        r"POST /category: operationId 'category\.before_create' names "
        r"BasicCRUD\.before_create, which is not an operation .*\(openapi/api\.yaml\)", line)
        for line in lines), lines
    assert any(re.fullmatch(
        r"GET /category/\{id\}: operationId 'category\.serialize' names BasicCRUD\.serialize, "
        r"which is not an operation .*\(openapi/category\.path\.yaml\)", line)
        for line in lines), lines
    assert "resource list: declared in x-apicrud-resources of openapi/api.yaml but no path " \
           "routes to it (no operationId list.<method>); add its paths or remove it" in lines
    assert not any("category.update" in line for line in lines)


# -- create_app and request time (in process) ------------------------------------------

def _settings(tmp_path, **changes):
    return load_settings(root=ROOT, environ={}, env="test", data_dir=str(tmp_path),
                         secret_key="test-secret-key-startup-errors", **changes)


def test_create_app_refuses_missing_table_after_migrating(tmp_path):
    from apicrud.app import create_app
    from apicrud.errors import StartupError

    db_file = _migrated(tmp_path)
    with sqlite3.connect(db_file) as conn:
        conn.execute('DROP TABLE "grant"')
    with pytest.raises(StartupError) as caught:
        create_app(settings=_settings(tmp_path), migrate=True)  # at head: nothing to apply
    assert caught.value.problems == [
        "database: table 'grant' (model Grant) is missing; no migration creates it: run "
        "`apicrud db revision -m \"add grant\"`, review the file it writes in "
        "migrations/versions, then `apicrud db upgrade`"]
    assert not embedded_redis_pids(tmp_path)  # what create_app started is stopped


def test_missing_column_at_request_time_is_500_schema_mismatch_not_503(tmp_path, caplog):
    from helpers import random_account, serve_app

    _migrated(tmp_path)
    settings = _settings(tmp_path)
    with serve_app(settings) as srv:
        with srv.services.db.session() as session, session.begin():
            username, password, _, _ = random_account(session, settings)
        login = requests.post(srv.url + "/auth", json={"username": username,
                                                       "password": password}, timeout=30)
        assert login.status_code == 201, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        _drop_column(tmp_path / "apicrud.db", "category", "description")
        with caplog.at_level(logging.ERROR):
            resp = requests.get(srv.url + "/category", headers=auth, timeout=30)
        assert resp.status_code == 500, resp.text
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.text.endswith("}\n")  # like every other response
        body = resp.json()
        assert body["type"].endswith("/schema-mismatch"), body
        assert "description" not in body["detail"]  # table and column names stay in the log
        assert "Retry-After" not in resp.headers
        assert "database is unavailable" not in caplog.text
        assert re.search(r"schema mismatch: no such column: category\.description", caplog.text), \
            caplog.text
        health = requests.get(srv.url + "/health", timeout=30)  # the database is up
        assert health.status_code == 200, health.text
