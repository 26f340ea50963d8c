"""The connexion example over HTTP: ``uvicorn --factory app:create`` started on loopback
in the project folder, as its README says; the hand-written connexion API answers in
connexion's ways (its validation, its 401), apicrud's mounted resources in apicrud's.

The service keeps its own SQLite file and embedded Redis in a temporary folder (the
suite's database settings are not passed on): its tables are not the default
application's. tests/integration/test_engines.py runs the shared contract on both engines
and every database.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEM = "application/problem+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apicrud(*args: str, env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "apicrud.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """(root URL, {name: password}) of the example under uvicorn."""
    data = tmp_path_factory.mktemp("cxdata")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(APICRUD_DATA_DIR=str(data), APICRUD_RATELIMIT_AUTH_FAILURES="1000000")
    apicrud("db", "upgrade", env=env)
    users = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        users[name] = "pw-" + secrets.token_hex(8)
        apicrud("account", "add", name, "--email", f"{name}@example.com", "--password",
                users[name], *(["--admin"] if admin else []), env=env)
    port = _free_port()
    # a pipe nobody reads would stop it once full
    with open(data / "uvicorn.log", "wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "app:create",
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            assert server.poll() is None, (data / "uvicorn.log").read_text()
            try:
                if requests.get(root + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the example did not answer /api/v1/health")
        yield root, users
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def login(root: str, name: str, password: str) -> requests.Session:
    resp = requests.post(root + "/api/v1/auth", json={"username": name, "password": password},
                         timeout=30)
    assert resp.status_code == 201, resp.text
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
    return http


def test_the_hand_written_connexion_endpoint_answers_as_connexion_does(service):
    root, _ = service
    resp = requests.get(root + "/greetings/hello/ada", params={"excited": "true"}, timeout=30)
    assert resp.status_code == 200 and resp.json() == {"greeting": "Hello, ada!"}
    # connexion's own parameter validation and problem document (no apicrud fields)
    resp = requests.get(root + "/greetings/hello/" + "a" * 21, timeout=30)
    assert resp.status_code == 400 and resp.headers["Content-Type"].startswith(PROBLEM)
    assert "message" not in resp.json() and "X-Request-ID" not in resp.headers


def test_connexion_security_takes_apicrud_session_tokens(service):
    root, users = service
    assert requests.get(root + "/greetings/whoami", timeout=30).status_code == 401
    alice = login(root, "alice", users["alice"])
    me = alice.get(root + "/greetings/whoami", timeout=30)
    assert me.status_code == 200, me.text
    assert me.json()["method"] == "session" and me.json()["uid"].startswith("x-")


def test_apicrud_resources_answer_as_under_apicrud_serve(service):
    root, users = service
    api = root + "/api/v1"
    alice, bob = login(root, "alice", users["alice"]), login(root, "bob", users["bob"])
    admin = login(root, "root", users["root"])
    made = alice.post(api + "/note", json={"title": "first note"}, timeout=30)
    assert made.status_code == 201, made.text
    note = made.json()
    assert made.headers["Location"].endswith(f"/api/v1/note/{note['id']}")
    assert made.headers["X-Content-Type-Options"] == "nosniff"
    assert made.headers["Cache-Control"] == "no-store"
    # owner isolation: bob sees neither the record nor a count of it; the admin does
    assert bob.get(f"{api}/note/{note['id']}", timeout=30).status_code == 404
    assert bob.get(api + "/note", timeout=30).json()["count"] == 0
    assert [n["id"] for n in admin.get(api + "/note", timeout=30).json()["items"]] \
        == [note["id"]]
    # apicrud's problem documents: the field named, in apicrud's shape
    bad = alice.post(api + "/note", json={"title": "x", "colour": "red"}, timeout=30)
    assert bad.status_code == 400 and "colour" in bad.json()["errors"]
    assert bad.json()["message"] == bad.json()["detail"]
    anonymous = requests.get(api + "/note", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["type"].endswith("/unauthorized")


def test_connexion_swagger_ui_lists_both_apis(service):
    root, _ = service
    ours = requests.get(root + "/api/v1/openapi.json", timeout=30).json()
    assert ours["openapi"].startswith("3.0") and "/note/{id}" in ours["paths"]
    theirs = requests.get(root + "/greetings/openapi.json", timeout=30).json()
    assert "/hello/{name}" in theirs["paths"]
    for base in ("/api/v1", "/greetings"):
        assert requests.get(root + base + "/ui/", timeout=30).status_code == 200
