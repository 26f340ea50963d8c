#!/usr/bin/env python3
"""Serving-stack benchmark: apicrud (gunicorn sync) against ASGI and plain-Flask stacks.

Run from the project root:

    .venv/bin/python bench/serving_stack.py [--rows N] [--duration S] [--connections C]
                                            [--workers W] [--tiny]

It seeds a SQLite database in a temporary folder with the project's own migrations and
models, logs in over HTTP, then serves the same data with four stacks, one after the
other, each with W worker processes on 127.0.0.1, and drives each with ``wrk``:

  a. apicrud as shipped: ``apicrud serve`` (gunicorn sync workers);
  b. the same ``create_app()`` under uvicorn behind an ASGI->WSGI bridge (a2wsgi);
  c. connexion 3 ``FlaskApp`` with ``bench/connexion_spec.yaml`` and the handlers below;
  d. a hand-written Flask + SQLAlchemy app under gunicorn sync workers (the baseline).

Results go to ``bench/results/serving_stack.{md,json}`` (``--tiny``: ``*_tiny.*``).

The same file is imported by the servers it starts (c and d, and the bridge of b):
keep the module top level free of imports other than the standard library.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
BASE = "/api/v1"
LISTS = 50
USERNAME = "bench"
PASSWORD = "bench-password-0123"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
PAGE = 25
# Environment of the servers this script starts for c and d (not APICRUD_*: apicrud's
# settings loader refuses unknown APICRUD_ variables).
ENV_DB = "BENCH_DB_URL"
ENV_REDIS = "BENCH_REDIS_URL"
ENV_SECRET = "BENCH_SECRET_KEY"

SERVERS = {
    "a": "apicrud serve (gunicorn sync)",
    "b": "apicrud create_app() under uvicorn + a2wsgi",
    "c": "connexion 3 FlaskApp under uvicorn",
    "d": "plain Flask + SQLAlchemy (gunicorn sync), baseline",
}
OPERATIONS = {
    "get": "GET /message/{id}",
    "list": "GET /message?limit=25&filter={list_id}",
}


# =====================================================================================
# Server side: code run inside the servers of c and d (and the bridge factory of b)
# =====================================================================================

FIELDS = ("id", "list_id", "subject", "content", "privacy", "uid", "status", "created",
          "modified")
OWNER_RBAC = "crudl"  # what apicrud's rbac.yaml grants the owner of a message


class _Backend:
    """Per-process database engine and Redis session reader, built on first use."""

    def __init__(self) -> None:
        import redis
        from sqlalchemy import create_engine, event
        from sqlalchemy.orm import sessionmaker

        from apicrud.auth.sessions import SessionManager
        from apicrud.models import Message

        self.model = Message
        self.engine = create_engine(os.environ[ENV_DB],
                                    connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(self.engine, "connect", _sqlite_connect)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        client = redis.Redis.from_url(os.environ[ENV_REDIS], socket_timeout=2,
                                      socket_connect_timeout=2)
        # The session store apicrud wrote at login: a token is valid here exactly when it
        # is valid for apicrud (Redis GET of the hashed token, AES-GCM decrypt, expiry).
        self.sessions = SessionManager(client, os.environ[ENV_SECRET])
        self.cursor_key = hashlib.sha256(os.environ[ENV_SECRET].encode() + b":cursor").digest()


def _sqlite_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_BACKEND: _Backend | None = None


def _backend() -> _Backend:
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = _Backend()
    return _BACKEND


def _uid_for_token(token: str) -> str | None:
    session = _backend().sessions.get(token)
    return session["uid"] if session and "uid" in session else None


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds") + "Z"
    return value


def _serialize(record: Any) -> dict[str, Any]:
    out = {name: _json_value(getattr(record, name)) for name in FIELDS}
    out["rbac"] = OWNER_RBAC
    return out


def _etag(record: Any) -> str:
    return '"' + hashlib.sha256(f"{record.id}:{record.version}".encode()).hexdigest()[:20] + '"'


def _readable(model, uid: str):
    from sqlalchemy import or_

    # the owner filter apicrud derives from rbac.yaml for a signed-in non-admin user:
    # live rows the caller owns, plus public ones
    return [model.status == "active", or_(model.uid == uid, model.privacy == "public")]


def fetch_message(uid: str, id_: str) -> tuple[dict[str, Any], str] | None:
    """(body, etag) of one readable message, or None."""
    from sqlalchemy import select

    backend = _backend()
    m = backend.model
    with backend.sessionmaker() as session:
        record = session.execute(select(m).where(m.id == id_, m.status == "active")) \
            .scalar_one_or_none()
        if record is None or not (record.uid == uid or record.privacy == "public"):
            return None
        return _serialize(record), _etag(record)


def find_messages(uid: str, filter_text: str | None, limit: int | None) -> dict[str, Any]:
    """One page of readable messages: count, items and a signed keyset cursor.

    :raises ValueError: bad filter or limit (the caller answers 400)
    """
    from sqlalchemy import func, select

    backend = _backend()
    m = backend.model
    limit = limit or PAGE
    if not 1 <= limit <= 1000:
        raise ValueError("limit: must be 1 to 1000")
    filters = json.loads(filter_text) if filter_text else {}
    if not isinstance(filters, dict):
        raise ValueError("filter: must be a JSON object")
    where = _readable(m, uid)
    for name, value in filters.items():
        if name not in FIELDS or isinstance(value, (dict, list)):
            raise ValueError(f"filter: unsupported field or value {name[:40]!r}")
        where.append(getattr(m, name) == value)
    with backend.sessionmaker() as session:
        count = session.execute(select(func.count()).select_from(m).where(*where)).scalar_one()
        rows = list(session.execute(select(m).where(*where).order_by(m.id).limit(limit + 1))
                    .scalars())
    body: dict[str, Any] = {"items": [_serialize(r) for r in rows[:limit]], "count": count}
    if len(rows) > limit:
        state = json.dumps({"s": "id:asc", "f": filters, "k": rows[limit - 1].id,
                            "i": rows[limit - 1].id}, separators=(",", ":")).encode()
        sig = hmac.new(backend.cursor_key, state, hashlib.sha256).digest()[:16]
        body["cursor_next"] = base64.urlsafe_b64encode(sig + state).decode().rstrip("=")
    return body


# -- c. connexion 3 FlaskApp ----------------------------------------------------------

def cx_bearer_info(token: str) -> dict[str, Any] | None:
    """x-bearerInfoFunc: the Redis session behind the token, or None (connexion -> 401)."""
    uid = _uid_for_token(token)
    return {"sub": uid, "scope": []} if uid else None


def cx_message_get(id: str, user: str):  # noqa: A002 - connexion passes the spec's name
    found = fetch_message(user, id)
    if found is None:
        return {"title": "Not Found", "status": 404, "detail": "message not found"}, 404
    body, etag = found
    return body, 200, {"ETag": etag}


def cx_message_find(user: str, filter: str | None = None,  # noqa: A002
                    limit: int | None = None):
    try:
        body = find_messages(user, filter, limit)
    except ValueError as exc:
        return {"title": "Bad Request", "status": 400, "detail": str(exc)}, 400
    return body, 200, {"X-Total-Count": str(body["count"])}


def make_connexion_app():
    """uvicorn --factory target: the stock connexion 3 FlaskApp (ASGI middleware stack)."""
    import connexion

    app = connexion.FlaskApp(__name__, specification_dir=str(BENCH_DIR))
    app.add_api("connexion_spec.yaml")
    return app


# -- b. apicrud's WSGI app behind an ASGI bridge -----------------------------------------

def make_apicrud_asgi():
    """uvicorn --factory target: apicrud's create_app() wrapped for ASGI.

    a2wsgi's WSGIMiddleware is the bridge connexion's FlaskApp uses; uvicorn's own
    (deprecated) WSGI adapter is the fallback when a2wsgi is not installed.
    """
    from apicrud.app import create_app

    try:
        from a2wsgi import WSGIMiddleware
    except ImportError:  # pragma: no cover - depends on the environment
        from uvicorn.middleware.wsgi import WSGIMiddleware
    return WSGIMiddleware(create_app(root=str(ROOT), migrate=False))


# -- d. plain Flask baseline -----------------------------------------------------------

def make_baseline_app():
    """gunicorn target: the two endpoints by hand, no spec, no framework layer."""
    from flask import Flask, jsonify, request

    app = Flask("bench_baseline")

    def caller() -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return _uid_for_token(token.strip())

    def problem(status: int, title: str, detail: str):
        resp = jsonify({"title": title, "status": status, "detail": detail})
        resp.status_code = status
        resp.mimetype = "application/problem+json"
        return resp

    @app.get(BASE + "/message/<id_>")
    def message_get(id_: str):
        uid = caller()
        if uid is None:
            return problem(401, "Unauthorized", "invalid or expired credentials")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", id_):
            return problem(400, "Bad Request", "id: bad format")
        found = fetch_message(uid, id_)
        if found is None:
            return problem(404, "Not Found", "message not found")
        resp = jsonify(found[0])
        resp.headers["ETag"] = found[1]
        return resp

    @app.get(BASE + "/message")
    def message_find():
        uid = caller()
        if uid is None:
            return problem(401, "Unauthorized", "invalid or expired credentials")
        try:
            limit = request.args.get("limit", type=int)
            body = find_messages(uid, request.args.get("filter"), limit)
        except ValueError as exc:
            return problem(400, "Bad Request", str(exc))
        resp = jsonify(body)
        resp.headers["X-Total-Count"] = str(body["count"])
        return resp

    return app


# =====================================================================================
# Driver side
# =====================================================================================

class Interrupted(Exception):
    """SIGTERM or SIGHUP received: unwind and clean up like Ctrl-C."""


@dataclass
class Run:
    server: str
    operation: str
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    cpu_ms_per_request: float | None
    raw: str = ""


@dataclass
class ServerResult:
    key: str
    label: str
    command: list[str]
    started_s: float = 0.0
    rss_mb: float | None = None
    runs: list[Run] = field(default_factory=list)
    log_issues: list[str] = field(default_factory=list)
    response_bytes: dict[str, int] = field(default_factory=dict)
    response_keys: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


class Processes:
    """Every child process this script started, each in its own process group."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], *, env: dict[str, str] | None = None,
              log_path: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if log_path:
                out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        # workers left behind by a master that died first
        _signal_group(proc, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep going: the others must be stopped too
                print(f"warning: could not stop pid {proc.pid}: {exc}", file=sys.stderr)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, *, token: str | None = None, body: Any = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_ready(url: str, proc: subprocess.Popen, token: str | None, timeout: float) -> float:
    """Seconds until ``url`` answered below 500; raises if the process exits or time runs out."""
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            status, _, _ = http("GET", url, token=token, timeout=2)
            if status < 500:
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"server not ready after {timeout:.0f} s")
        time.sleep(0.2)


# -- data -------------------------------------------------------------------------------

def seed(data_dir: Path, rows: int) -> dict[str, Any]:
    """Migrate a fresh SQLite database and fill it; return ids the load generator uses."""
    import importlib
    import random

    from sqlalchemy import func, select

    from apicrud.auth.accounts import create_account
    from apicrud.config import load_settings
    from apicrud.db import migrate
    from apicrud.db.base import new_id, utcnow
    from apicrud.db.engine import Database

    settings = load_settings(root=str(ROOT), data_dir=str(data_dir), env="test",
                             secret_key=SECRET_KEY, redis_url="redis://unused")
    migrate.upgrade(settings)
    models = importlib.import_module(settings.models_module)
    database = Database(settings.sqlalchemy_url)
    rng = random.Random(20240601)
    prefix = settings.id_prefix
    try:
        with database.session() as session, session.begin():
            account, _ = create_account(session, models, username=USERNAME,
                                        email="bench@example.com", name="Bench User",
                                        password=PASSWORD, id_prefix=prefix)
            uid = account.uid
        now = utcnow()
        list_ids = [new_id(prefix) for _ in range(LISTS)]
        with database.engine.begin() as conn:
            conn.execute(models.List.__table__.insert(), [
                {"id": lid, "name": f"list {i}", "description": "benchmark list",
                 "privacy": "secret", "uid": uid, "created": now, "status": "active",
                 "version": 1} for i, lid in enumerate(list_ids)])
        words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
                 "mike november oscar papa quebec romeo sierra tango uniform").split()
        message_ids: list[str] = []
        chunk = 10_000
        table = models.Message.__table__
        for start in range(0, rows, chunk):
            batch = []
            for i in range(start, min(rows, start + chunk)):
                mid = new_id(prefix)
                message_ids.append(mid)
                batch.append({
                    "id": mid, "list_id": list_ids[i % LISTS],
                    "subject": " ".join(rng.choices(words, k=5)),
                    "content": " ".join(rng.choices(words, k=40)),
                    "privacy": "member", "uid": uid, "status": "active", "version": 1,
                    "created": now - dt.timedelta(seconds=rows - i), "modified": None})
            with database.engine.begin() as conn:
                conn.execute(table.insert(), batch)
        with database.session() as session:
            counted = session.execute(select(func.count()).select_from(models.Message)) \
                .scalar_one()
    finally:
        database.dispose()
    if counted != rows:
        raise RuntimeError(f"seeded {counted} messages, expected {rows}")
    return {"uid": uid, "list_ids": list_ids,
            "sample_ids": rng.sample(message_ids, min(1000, len(message_ids))),
            "db_url": settings.sqlalchemy_url,
            "db_bytes": (data_dir / "apicrud.db").stat().st_size}


def login(base_url: str) -> str:
    status, _, body = http("POST", f"{base_url}{BASE}/auth",
                           body={"username": USERNAME, "password": PASSWORD})
    if status != 201:
        raise RuntimeError(f"login failed: HTTP {status}: {body[:300]!r}")
    return json.loads(body)["token"]


# -- redis --------------------------------------------------------------------------------

def start_redis(procs: Processes, work: Path, url: str | None) -> tuple[str, str]:
    """(url, how) of the Redis the servers share: --redis-url, our own, or :6379/0."""
    if url:
        return url, "given by --redis-url"
    exe = shutil.which("redis-server") or str(Path(sys.executable).with_name("redis-server"))
    if os.path.exists(exe):
        port = free_port()
        proc = procs.start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(work), "--daemonize", "no"],
                           log_path=work / "redis.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return f"redis://127.0.0.1:{port}/0", f"redis-server started on :{port}"
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start; see {work / 'redis.log'}")
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return "redis://127.0.0.1:6379/0", "existing server at 127.0.0.1:6379 db 0"
    except OSError:
        raise RuntimeError("no redis-server found and nothing listens on 127.0.0.1:6379") \
            from None


# -- servers --------------------------------------------------------------------------------

def base_env() -> dict[str, str]:
    """The caller's environment without settings that would steer apicrud or the servers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APICRUD_", "BENCH_", "GUNICORN_", "UVICORN_", "WEB_CONCURRENCY"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_command(key: str, port: int, workers: int, env_common: dict[str, str]
                   ) -> tuple[list[str], dict[str, str]]:
    py = sys.executable
    env = base_env()
    if key == "a":
        env.update({
            "APICRUD_DATA_DIR": env_common["data_dir"], "APICRUD_REDIS_URL": env_common["redis"],
            "APICRUD_PORT": str(port), "APICRUD_WORKERS": str(workers), "APICRUD_ENV": "test",
            "APICRUD_DB_MIGRATE_AT_START": "false", "APICRUD_SECRET_KEY": SECRET_KEY,
            "APICRUD_HOST": "127.0.0.1", "APICRUD_LOG_LEVEL": "warning"})
        exe = Path(py).with_name("apicrud")
        cmd = [str(exe)] if exe.exists() else [py, "-m", "apicrud.cli"]
        return cmd + ["--root", str(ROOT), "serve"], env
    uvicorn = [py, "-m", "uvicorn", "--factory", "--app-dir", str(BENCH_DIR), "--host",
               "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level",
               "warning", "--no-access-log"]
    if key == "b":
        env.update({
            "APICRUD_DATA_DIR": env_common["data_dir"], "APICRUD_REDIS_URL": env_common["redis"],
            "APICRUD_ENV": "test", "APICRUD_DB_MIGRATE_AT_START": "false",
            "APICRUD_SECRET_KEY": SECRET_KEY, "APICRUD_LOG_LEVEL": "warning"})
        return uvicorn + ["serving_stack:make_apicrud_asgi"], env
    env.update({ENV_DB: env_common["db_url"], ENV_REDIS: env_common["redis"],
                ENV_SECRET: SECRET_KEY})
    if key == "c":
        return uvicorn + ["serving_stack:make_connexion_app"], env
    return [py, "-m", "gunicorn", "--pythonpath", str(BENCH_DIR), "--bind",
            f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync",
            "--log-level", "warning", "--timeout", "60", "--graceful-timeout", "10",
            "serving_stack:make_baseline_app()"], env


def tree_cpu_and_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, resident MiB) of a process and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0.0, 0.0
    cpu = rss = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss / 2**20


# -- wrk ------------------------------------------------------------------------------------

def write_lua(path: Path, token: str, paths: list[str]) -> None:
    items = ",\n  ".join(json.dumps(p) for p in paths)  # JSON strings are valid Lua strings
    path.write_text(f"""-- generated by bench/serving_stack.py
wrk.headers["Authorization"] = "Bearer {token}"
local paths = {{
  {items}
}}
local n = #paths
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("GET", paths[i])
end
""", encoding="utf-8")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise RuntimeError("cannot parse wrk output:\n" + out)
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    return {
        "requests_per_s": float(rps.group(1)), "requests": int(total.group(1)),
        "p50_ms": _ms(pct["50"]), "p90_ms": _ms(pct["90"]), "p99_ms": _ms(pct["99"]),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, sock.groups()))) if sock else {},
    }


def run_wrk(procs: Processes, url: str, lua: Path, seconds: float, connections: int,
            threads: int, timeout_s: float) -> str:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           f"--timeout={timeout_s:g}s", "--latency", "-s", str(lua), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    procs.procs.append(proc)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        procs.stop(proc, grace=2)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out}")
    return out


# -- one server -------------------------------------------------------------------------

LOG_MARKERS = re.compile(r"Traceback|ERROR|CRITICAL|WORKER TIMEOUT|Exception|Error:|"
                         r"exited|Killed|signal", re.I)


def log_issues(path: Path, limit: int = 40) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [ln[:300] for ln in lines if LOG_MARKERS.search(ln)][:limit]


def check_responses(base_url: str, token: str, op_paths: dict[str, list[str]],
                    page: int, result: ServerResult) -> None:
    """Both operations answer 200 with the expected shape before any load is sent."""
    for op, paths in op_paths.items():
        status, _, body = http("GET", base_url + paths[0], token=token)
        if status != 200:
            raise RuntimeError(f"{op}: HTTP {status} before load: {body[:300]!r}")
        doc = json.loads(body)
        if op == "list":
            if len(doc.get("items", ())) != page:
                raise RuntimeError(f"list: expected {page} items, got {len(doc.get('items', ()))}")
            keys = sorted(doc) + ["items[]." + k for k in sorted(doc["items"][0])]
        else:
            keys = sorted(doc)
        result.response_bytes[op] = len(body)
        result.response_keys[op] = keys
        status, _, _ = http("GET", base_url + paths[0], token="x" * 43)
        if status != 401:
            raise RuntimeError(f"{op}: a wrong token got HTTP {status}, not 401")


def bench_server(key: str, args, procs: Processes, work: Path, common: dict[str, str],
                 token_box: dict[str, str], op_paths: dict[str, list[str]],
                 results: list[ServerResult]) -> None:
    port = free_port()
    cmd, env = server_command(key, port, args.workers, common)
    result = ServerResult(key, SERVERS[key], cmd)
    results.append(result)
    log_path = work / f"server-{key}.log"
    print(f"[{key}] {SERVERS[key]}: starting on :{port}", flush=True)
    base_url = f"http://127.0.0.1:{port}"
    proc = procs.start(cmd, env=env, log_path=log_path, cwd=ROOT)
    try:
        probe = base_url + op_paths["get"][0]
        if "token" not in token_box:
            if key not in ("a", "b"):
                raise RuntimeError("log in needs an apicrud server (a or b) first")
            wait_ready(f"{base_url}{BASE}/health", proc, None, args.start_timeout)
            token_box["token"] = login(base_url)
            print(f"[{key}] logged in as {USERNAME!r} over HTTP", flush=True)
        token = token_box["token"]
        result.started_s = round(wait_ready(probe, proc, token, args.start_timeout), 2)
        check_responses(base_url, token, op_paths, min(PAGE, args.rows // LISTS), result)
        lua_dir = work / "lua"
        lua_dir.mkdir(exist_ok=True)
        for op, paths in op_paths.items():
            lua = lua_dir / f"{op}.lua"
            write_lua(lua, token, paths)
            # warm-up: every worker imports, connects and fills its caches
            run_wrk(procs, base_url, lua, args.warmup, args.connections, args.wrk_threads,
                    args.wrk_timeout)
            for rep in range(args.repeat):
                cpu0, _ = tree_cpu_and_rss(proc.pid)
                out = run_wrk(procs, base_url, lua, args.duration, args.connections,
                              args.wrk_threads, args.wrk_timeout)
                cpu1, rss = tree_cpu_and_rss(proc.pid)
                parsed = parse_wrk(out)
                run = Run(key, op, cpu_ms_per_request=round(
                    (cpu1 - cpu0) * 1e3 / parsed["requests"], 3) if parsed["requests"] else None,
                    raw=out, **parsed)
                result.runs.append(run)
                result.rss_mb = round(max(result.rss_mb or 0.0, rss), 1)
                errs = run.non_2xx + sum(run.socket_errors.values())
                print(f"[{key}] {op:<4} run {rep + 1}: {run.requests_per_s:8.1f} req/s  "
                      f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  "
                      f"cpu {run.cpu_ms_per_request} ms/req"
                      + (f"  ERRORS {errs} ({run.socket_errors}, non-2xx {run.non_2xx})"
                         if errs else ""), flush=True)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} during the runs")
    except Exception as exc:
        result.error = str(exc)
        print(f"[{key}] FAILED: {exc}", file=sys.stderr, flush=True)
    finally:
        procs.stop(proc)
        result.log_issues = log_issues(log_path)
        if args.keep:
            print(f"[{key}] log: {log_path}", flush=True)


# -- report -------------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "apicrud"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu_model": cpu,
        "mem_total": next((ln.split(":", 1)[1].strip() for ln in
                           Path("/proc/meminfo").read_text().splitlines()
                           if ln.startswith("MemTotal")), None)
        if Path("/proc/meminfo").exists() else None,
        "kernel": platform.release(), "python": platform.python_version(),
        "apicrud_commit": (git or "?") + (" (apicrud/ has uncommitted changes)" if dirty else ""),
        "wrk": _first_line(["wrk", "--version"]),
        "redis_server": _first_line(["redis-server", "--version"]),
        "packages": {name: _version(name) for name in (
            "apicrud", "flask", "werkzeug", "sqlalchemy", "gunicorn", "uvicorn", "connexion",
            "a2wsgi", "starlette", "redis", "jsonschema", "httptools", "uvloop")},
    }


def _median_run(runs: list[Run]) -> dict[str, Any]:
    med = statistics.median
    return {
        "requests_per_s": round(med(r.requests_per_s for r in runs), 1),
        "p50_ms": round(med(r.p50_ms for r in runs), 2),
        "p99_ms": round(med(r.p99_ms for r in runs), 2),
        "cpu_ms_per_request": round(med(r.cpu_ms_per_request or 0 for r in runs), 3),
        "errors": sum(r.non_2xx + sum(r.socket_errors.values()) for r in runs),
        "runs": len(runs),
    }


def summarize(results: list[ServerResult]) -> list[dict[str, Any]]:
    rows = []
    base = {}
    for res in results:
        if res.key == "d":
            for op in OPERATIONS:
                runs = [r for r in res.runs if r.operation == op]
                if runs:
                    base[op] = _median_run(runs)["requests_per_s"]
    for op in OPERATIONS:
        for res in results:
            runs = [r for r in res.runs if r.operation == op]
            if not runs:
                continue
            row = {"server": res.key, "label": res.label, "operation": op, **_median_run(runs)}
            row["ratio_to_baseline"] = round(row["requests_per_s"] / base[op], 2) \
                if base.get(op) else None
            rows.append(row)
    return rows


def write_report(out_prefix: Path, args, info: dict[str, Any], setup: dict[str, Any],
                 results: list[ServerResult]) -> tuple[Path, Path]:
    rows = summarize(results)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": info, "setup": setup,
        "parameters": {k: getattr(args, k) for k in (
            "rows", "duration", "warmup", "connections", "workers", "wrk_threads", "repeat",
            "tiny")},
        "summary": rows,
        "servers": [{
            "key": r.key, "label": r.label, "command": r.command, "ready_after_s": r.started_s,
            "rss_mb_after_runs": r.rss_mb, "error": r.error, "log_issues": r.log_issues,
            "response_bytes": r.response_bytes, "response_keys": r.response_keys,
            "runs": [{k: v for k, v in vars(run).items()} for run in r.runs],
        } for r in results],
    }
    json_path = out_prefix.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    p = info["packages"]
    lines = [
        "# Serving-stack benchmark",
        "",
        f"Generated by `bench/serving_stack.py` on {info['date_utc']}"
        + (" (**--tiny**: a smoke run, not a measurement)" if args.tiny else "") + ".",
        "",
        f"- Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['mem_total']}, "
        f"Linux {info['kernel']}; load generator and servers share these CPUs.",
        f"- Python {info['python']}; apicrud {p['apicrud']} at {info['apicrud_commit']}; "
        f"Flask {p['flask']}, Werkzeug {p['werkzeug']}, SQLAlchemy {p['sqlalchemy']}, "
        f"gunicorn {p['gunicorn']}, uvicorn {p['uvicorn']} (httptools "
        f"{p['httptools'] or 'absent: h11'}, uvloop {p['uvloop'] or 'absent: asyncio'}), "
        f"connexion {p['connexion']}, a2wsgi {p['a2wsgi']}, starlette {p['starlette']}.",
        f"- {info['wrk']}; {info['redis_server'] and info['redis_server'].split(' sha')[0]} "
        f"({setup['redis']}).",
        f"- Data: SQLite, {args.rows:,} messages in {LISTS} lists of one non-admin user "
        f"({setup['db_mb']} MB); get cycles through {setup['get_ids']} random ids, list through "
        f"the {LISTS} lists.",
        f"- Load: {args.workers} worker processes per server; wrk -t{args.wrk_threads} "
        f"-c{args.connections}, {args.warmup:g} s warm-up then {args.duration:g} s measured"
        + (f", median of {args.repeat} runs" if args.repeat > 1 else "") + ".",
        "",
        "| server | operation | req/s | p50 ms | p99 ms | CPU ms/req | errors "
        "| ratio to Flask baseline |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = f"{row['ratio_to_baseline']:.2f}" if row["ratio_to_baseline"] else "-"
        lines.append(
            f"| {row['server']}. {row['label']} | {OPERATIONS[row['operation']]} "
            f"| {row['requests_per_s']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['cpu_ms_per_request']:.2f} | {row['errors']} | {ratio} |")
    lines += ["", "CPU ms/req: CPU time of the server's processes (master and workers) "
              "during the measured run, divided by the requests served.", ""]
    extra = []
    for r in results:
        if r.error:
            extra.append(f"- **{r.key}** failed: {r.error}")
        if r.log_issues:
            extra.append(f"- **{r.key}** server log lines worth a look "
                         f"({len(r.log_issues)}): `{r.log_issues[0]}`")
        if r.rss_mb:
            extra.append(f"- {r.key}: resident memory of all its processes after the runs "
                         f"{r.rss_mb} MiB; response sizes {r.response_bytes} bytes.")
    lines += ["## Notes", ""] + extra + [""]
    md_path = out_prefix.with_suffix(".md")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return md_path, json_path


# -- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=None, help="messages to seed (100000)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (15)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run (3)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per server (2)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    ap.add_argument("--wrk-timeout", type=float, default=10.0,
                    help="seconds before wrk counts a request as timed out (10)")
    ap.add_argument("--repeat", type=int, default=1, help="measured runs per operation (1)")
    ap.add_argument("--servers", default="abcd", help="which of a, b, c, d to run (abcd)")
    ap.add_argument("--redis-url", default=None,
                    help="use this Redis instead of starting redis-server on a free port")
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--tiny", action="store_true",
                    help="smoke run: 1,000 rows, 3 s runs, 1 s warm-up (for CI)")
    ap.add_argument("--output", type=Path, default=None,
                    help="path prefix of the .md/.json report (bench/results/serving_stack, "
                         "or serving_stack_tiny with --tiny)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and logs")
    args = ap.parse_args(argv)
    if args.tiny:
        args.rows = args.rows or 1000
        args.duration = args.duration or 3.0
        args.warmup = args.warmup if args.warmup is not None else 1.0
    args.rows = args.rows or 100_000
    args.duration = args.duration or 15.0
    args.warmup = 3.0 if args.warmup is None else args.warmup
    args.output = args.output or RESULTS_DIR / ("serving_stack_tiny" if args.tiny
                                                else "serving_stack")
    if args.rows < LISTS:
        ap.error(f"--rows must be at least {LISTS}, one message per list")
    if set(args.servers) - set(SERVERS) or not args.servers:
        ap.error("--servers takes letters among a, b, c, d")
    if not set(args.servers) & {"a", "b"}:
        ap.error("--servers needs a or b: the benchmark logs in through apicrud")
    if shutil.which("wrk") is None:
        ap.error("wrk is not installed (Debian: apt-get install -y wrk)")
    return args


def _raise_interrupted(signum, _frame):
    raise Interrupted(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    order = [k for k in "abcd" if k in args.servers]
    order.sort(key=lambda k: k not in ("a", "b"))  # log in through apicrud first
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="apicrud-bench-"))
    results: list[ServerResult] = []
    try:
        print(f"work folder {work}", flush=True)
        redis_url, redis_how = start_redis(procs, work, args.redis_url)
        print(f"redis: {redis_url} ({redis_how})", flush=True)
        t0 = time.monotonic()
        data = seed(work, args.rows)
        print(f"seeded {args.rows:,} messages in {time.monotonic() - t0:.1f} s "
              f"({data['db_bytes'] / 2**20:.1f} MB)", flush=True)
        common = {"data_dir": str(work), "redis": redis_url, "db_url": data["db_url"]}
        op_paths = {
            "get": [f"{BASE}/message/{mid}" for mid in data["sample_ids"]],
            "list": [f"{BASE}/message?limit={PAGE}&filter=" + urllib.parse.quote(
                json.dumps({"list_id": lid}, separators=(",", ":")), safe="")
                for lid in data["list_ids"]],
        }
        token_box: dict[str, str] = {}
        for key in order:
            bench_server(key, args, procs, work, common, token_box, op_paths, results)
        setup = {"redis": redis_how, "db_mb": round(data["db_bytes"] / 2**20, 1),
                 "get_ids": len(op_paths["get"]), "example_paths": {
                     op: paths[0] for op, paths in op_paths.items()}}
        md, js = write_report(args.output, args, machine_info(), setup, results)
        print(f"\nwrote {md.relative_to(ROOT) if md.is_relative_to(ROOT) else md} and "
              f"{js.name}\n", flush=True)
        print(md.read_text(encoding="utf-8"))
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}): stopping every process started",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if r.error] + [
        r for r in results if any(x.non_2xx or sum(x.socket_errors.values()) for x in r.runs)]
    return 1 if failed or len(results) != len(order) else 0


if __name__ == "__main__":
    sys.exit(main())
