"""A project of the user's own: `apicrud init`, `apicrud add resource`, check, migrate
and serve over HTTP; and the same from a wheel installed into a fresh venv.

Every project here runs on its own SQLite file and embedded Redis in a temporary folder
(whatever backend the suite runs on): a project's tables are its own, not the default
application's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from apicrud.cli import main
from apicrud.project import insert_entries, path_yaml
from helpers import ROOT, stop_process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(data_dir: Path, **more: str) -> dict:
    """The environment of a user's shell: no settings of the suite, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("REDIS_URL", "DATABASE_URL", "PYTHONPATH")}
    env.update(APICRUD_DATA_DIR=str(data_dir), APICRUD_WORKERS="1", **more)
    return env


def _run(command: list[str], cwd: Path, env: dict, timeout: float = 300):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def _serve(command: list[str], cwd: Path, env: dict):
    """Start `apicrud serve` and wait for /health; (process, base URL)."""
    port = _free_port()
    env = {**env, "APICRUD_PORT": str(port), "APICRUD_HOST": "127.0.0.1"}
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(300):
        assert server.poll() is None, server.stdout.read().decode()
        try:
            if requests.get(base + "/health", timeout=2).status_code == 200:
                return server, base
        except requests.RequestException:  # not up yet
            pass
        time.sleep(0.2)
    stop_process(server)
    pytest.fail("apicrud serve did not answer /health")


def _login(base: str, username: str, password: str) -> dict:
    r = requests.post(base + "/auth", json={"username": username, "password": password},
                      timeout=10)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


# -- the generators, in process ---------------------------------------------------

@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch):
    """The CLI puts the project folder on sys.path (for its models module): undo it."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One project from `apicrud init`, copied by the tests that change it."""
    project = tmp_path_factory.mktemp("template") / "p"
    result = CliRunner().invoke(main, ["init", str(project)])
    assert result.exit_code == 0, result.output
    return project


@pytest.fixture
def project(template, tmp_path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "p"))


def test_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not empty (notes.txt)" in result.output and "--force" in result.output
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "openapi" / "note.path.yaml").is_file()


def test_serve_in_an_empty_folder_says_what_to_do(tmp_path):
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "serve"])
    assert result.exit_code == 1
    assert "no apicrud project in" in result.output and "apicrud init ." in result.output
    assert "cannot read" not in result.output


@pytest.mark.parametrize("args, message", [
    (["Book", "--field", "title:string"], "resource name 'Book'"),
    (["book"], "give at least one --field"),
    (["book", "--field", "title:str"], "unknown type 'str'"),
    (["book", "--field", "title"], "expected NAME:TYPE"),
    (["book", "--field", "title:string:mandatory"], "unknown flag 'mandatory'"),
    (["book", "--field", "id:integer"], "'id' is reserved"),
    (["book", "--field", "Title:string"], "field 'Title:string': the name"),
    (["book", "--field", "a:text", "--field", "a:integer"], "field 'a' is given twice"),
    (["note", "--field", "a:text"], "already declared in x-apicrud-resources"),
    (["auth", "--field", "a:text"], "'auth' is reserved"),
    (["class", "--field", "a:text"], "'class' is reserved"),
])
def test_add_resource_refuses_bad_input_with_exit_2(project, args, message):
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["--root", str(project), "add", "resource", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # no traceback
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_add_resource_outside_a_project(tmp_path):
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "add", "resource", "book",
                                       "--field", "title:string"])
    assert result.exit_code == 2
    assert "is not an apicrud project" in result.output and "apicrud init" in result.output


def test_summaries_use_proper_plurals():
    text = path_yaml("category", "categories", "Category")
    summaries = [op["summary"] for item in yaml.safe_load(text).values()
                 for op in item.values()]
    assert "list categories" in summaries and "add a category" in summaries
    assert "move categories to the trashcan" in summaries
    assert "add an item" in yaml.safe_dump(yaml.safe_load(path_yaml("item", "items",
                                                                     "Item")))


def test_entries_are_added_keeping_comments_and_order():
    text = ("# top\nx-res:\n  # first\n  a: {}\n\n# next block\npaths:\n  /a:\n    $ref: x\n"
            "components:\n  schemas:\n    A: {}\n  # trailing\nother: 1\n")
    text = insert_entries(text, ("x-res",), "  b: {}\n", "t")
    text = insert_entries(text, ("components", "schemas"), "    B: {}\n", "t")
    text = insert_entries(text, ("extra",), "  c: 1\n", "t")
    assert text.startswith("# top\nx-res:\n  # first\n  a: {}\n  b: {}\n\n# next block\n")
    assert "    A: {}\n    B: {}\n  # trailing\nother: 1\n" in text
    assert yaml.safe_load(text)["extra"] == {"c": 1}


def test_add_resource_plural_option(project):
    result = CliRunner().invoke(main, ["--root", str(project), "add", "resource", "person_x",
                                       "--field", "name:string", "--plural", "people_x"])
    assert result.exit_code == 0, result.output
    text = (project / "openapi" / "person_x.path.yaml").read_text()
    assert "summary: list people x" in text


# -- init, add resource, check, db upgrade, serve: over HTTP ----------------------

def test_init_add_resource_check_upgrade_serve(tmp_path):
    project = tmp_path / "shelf"
    env = _clean_env(tmp_path / "data")
    cli = [sys.executable, "-m", "apicrud.cli"]
    _run(cli + ["init", str(project)], tmp_path, env)
    out = _run(cli + ["add", "resource", "book", "--field", "title:string:required",
                      "--field", "year:integer", "--field", "isbn:string:unique"],
               project, env).stdout
    assert "openapi/book.path.yaml" in out and "migrations/versions/0002_book.py" in out
    api = yaml.safe_load((project / "openapi" / "api.yaml").read_text())
    assert "book" in api["x-apicrud-resources"] and "/book/{id}" in api["paths"]
    assert "summary: list books" in (project / "openapi" / "book.path.yaml").read_text()
    assert "class Book(RecordMixin, Base)" in (project / "models.py").read_text()
    assert _run(cli + ["check"], project, env).stdout.startswith("ok: ")
    assert "at revision 0002" in _run(cli + ["db", "upgrade"], project, env).stdout
    assert _run(cli + ["check"], project, env).stdout.startswith("ok: ")
    admin_password = "admin-" + os.urandom(8).hex()
    server, base = _serve(cli + ["serve"], project,
                          {**env, "APICRUD_ADMIN_PASSWORD": admin_password})
    try:
        admin = _login(base, "admin", admin_password)  # the first-start admin
        users = {}
        for name in ("alice", "bob"):
            password = f"{name}-" + os.urandom(8).hex()
            _run(cli + ["account", "add", name, "--email", f"{name}@example.com",
                        "--password", password], project, env)
            users[name] = _login(base, name, password)
        alice, bob = users["alice"], users["bob"]
        r = requests.post(base + "/book", json={"title": "Dune", "year": 1965,
                                                "isbn": "9780441013593"},
                          headers=alice, timeout=10)
        assert r.status_code == 201, r.text
        book = r.json()["id"]
        r = requests.get(f"{base}/book/{book}", headers=alice, timeout=10)
        assert r.status_code == 200 and r.json()["year"] == 1965 and r.json()["rbac"]
        assert r.headers["ETag"]
        # owner isolation: bob neither reads nor lists nor changes it; the admin sees it
        assert requests.get(f"{base}/book/{book}", headers=bob, timeout=10) \
            .status_code == 404
        page = requests.get(base + "/book", headers=bob, timeout=10).json()
        assert page["items"] == [] and page["count"] == 0
        assert requests.patch(f"{base}/book/{book}", json={"year": 1}, headers=bob,
                              timeout=10).status_code == 404
        page = requests.get(base + "/book", headers=admin, timeout=10).json()
        assert [b["id"] for b in page["items"]] == [book]
        # the generated schema validates: required, types, unique (409)
        r = requests.post(base + "/book", json={"year": "x"}, headers=bob, timeout=10)
        assert r.status_code == 400 and {"title", "year"} <= set(r.json()["errors"])
        r = requests.post(base + "/book", json={"title": "copy", "isbn": "9780441013593"},
                          headers=bob, timeout=10)
        assert r.status_code == 409, r.text
        # update and delete by the owner
        r = requests.patch(f"{base}/book/{book}", json={"year": 1966}, headers=alice,
                           timeout=10)
        assert r.status_code == 200 and r.json()["year"] == 1966
        r = requests.delete(f"{base}/book/{book}", headers=alice, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "disabled"
        # the example resource of the template works as well
        r = requests.post(base + "/note", json={"title": "hello"}, headers=bob, timeout=10)
        assert r.status_code == 201, r.text
    finally:
        stop_process(server)
    # the project's own test passes too
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# -- from a built wheel, in a fresh venv outside the checkout ---------------------

def _build_wheel(dest: Path, work: Path) -> Path:
    """Build the wheel from a copy of what it is made of (the checkout is not written)."""
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(os.path.join(ROOT, name), source / name)
    shutil.copytree(os.path.join(ROOT, "apicrud"), source / "apicrud",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest),
          str(source)], work, _clean_env(work / "unused"))
    wheels = list(dest.glob("apicrud-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.wheel
def test_wheel_installs_into_a_fresh_venv_and_serves_a_new_project(tmp_path):
    wheel = _build_wheel(tmp_path / "dist", tmp_path)
    venv = tmp_path / "venv"
    env = _clean_env(tmp_path / "data")
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python, apicrud = str(venv / "bin" / "python"), str(venv / "bin" / "apicrud")
    # dependencies from the package index, through pip's cache
    _run([python, "-m", "pip", "install", "-q", str(wheel)], tmp_path, env, timeout=900)
    where = _run([python, "-c", "import apicrud, sys; print(apicrud.__file__); "
                  "print(sys.path)"], tmp_path, env).stdout
    assert where.startswith(str(venv)), where
    assert ROOT not in where, where  # the checkout is not on the path

    work = tmp_path / "work"
    work.mkdir()
    _run([apicrud, "init", "myapi"], work, env)
    project = work / "myapi"
    assert _run([apicrud, "check"], project, env).stdout.startswith("ok: ")
    password = "admin-" + os.urandom(8).hex()
    server, base = _serve([apicrud, "serve"], project,
                          {**env, "APICRUD_ADMIN_PASSWORD": password})
    try:
        admin = _login(base, "admin", password)  # the first-start admin
        r = requests.post(base + "/note", json={"title": "from a wheel"}, headers=admin,
                          timeout=10)
        assert r.status_code == 201, r.text
        r = requests.get(f"{base}/note/{r.json()['id']}", headers=admin, timeout=10)
        assert r.status_code == 200 and r.json()["title"] == "from a wheel"
        spec = requests.get(base + "/openapi.json", headers=admin, timeout=10)
        assert spec.status_code == 200 and "/note/{id}" in json.loads(spec.text)["paths"]
    finally:
        stop_process(server)
