"""projects over HTTP: start `apicrud serve`, log in, create a note, and check that
another user cannot see it. Run with `python -m pytest tests` in the project folder.

The service runs on a free loopback port with its own SQLite file and embedded Redis in
a temporary folder, so the project's data/ folder is not touched.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body=None, token: str | None = None):
    """(status, decoded JSON body or None)"""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def apicrud(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apicrud.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    port = _free_port()
    password = "admin-" + secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")}
    env.update(APICRUD_DATA_DIR=str(tmp_path_factory.mktemp("data")), APICRUD_PORT=str(port),
               APICRUD_HOST="127.0.0.1", APICRUD_ADMIN_PASSWORD=password,
               APICRUD_WORKERS="1")
    # its log goes to a file: a pipe nobody reads would fill up and stop the server
    log_path = os.path.join(env["APICRUD_DATA_DIR"], "server.log")
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "serve"], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(300):
            assert server.poll() is None, Path(log_path).read_text(encoding="utf-8")[-3000:]
            try:
                if call("GET", base + "/health")[0] == 200:
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the service did not answer /health")
        yield base, env, password
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def login(base: str, username: str, password: str) -> str:
    status, body = call("POST", base + "/auth", {"username": username, "password": password})
    assert status == 201, body
    return body["token"]


def test_login_create_and_owner_isolation(service):
    base, env, admin_password = service
    admin = login(base, "admin", admin_password)
    users = {}
    for name in ("alice", "bob"):
        password = "pw-" + secrets.token_hex(10)
        result = apicrud("account", "add", name, "--email", f"{name}@example.com",
                         "--password", password, env=env)
        assert result.returncode == 0, result.stderr
        users[name] = login(base, name, password)

    status, note = call("POST", base + "/note", {"title": "first note"}, users["alice"])
    assert status == 201, note
    status, mine = call("GET", f"{base}/note/{note['id']}", token=users["alice"])
    assert status == 200 and mine["title"] == "first note", mine

    # bob sees neither the record nor a count of it; the admin sees it
    status, other = call("GET", f"{base}/note/{note['id']}", token=users["bob"])
    assert status == 404, other
    status, page = call("GET", base + "/note", token=users["bob"])
    assert status == 200 and page["items"] == [], page
    status, page = call("GET", base + "/note", token=admin)
    assert status == 200 and [n["id"] for n in page["items"]] == [note["id"]], page

    # bad input is a 400 naming the field
    status, problem = call("POST", base + "/note", {"title": "x", "colour": "red"},
                           users["alice"])
    assert status == 400 and "colour" in problem["errors"], problem
