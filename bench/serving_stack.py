#!/usr/bin/env python3
"""Serving-stack benchmark: apicrud (gunicorn sync) against ASGI and plain-Flask stacks.

Run from the project root:

    .venv/bin/python bench/serving_stack.py [--rows N] [--duration S] [--connections C]
                                            [--workers W] [--repeat R] [--tiny]

It exports apicrud at a git revision (``--source``, default HEAD) into a temporary folder,
seeds a SQLite database there with the project's own migrations and models, logs in over
HTTP, and serves the same data and Redis sessions with four stacks, each with W worker
processes on 127.0.0.1:

  a. apicrud as shipped: ``apicrud serve`` (gunicorn sync workers);
  b. the same ``create_app()`` under uvicorn behind an ASGI->WSGI bridge (a2wsgi);
  c. connexion 3 ``FlaskApp`` with ``bench/connexion_spec.yaml`` and the handlers below;
  d. a hand-written Flask + SQLAlchemy app under gunicorn sync workers (the baseline);
  e. (``--servers`` with e) apicrud mounted in a connexion 3 ``FlaskApp`` with
     ``apicrud.connexion_mount.add_apicrud_api`` under uvicorn (needs a ``--source``
     revision that has it).

All four stay up; ``wrk`` loads one at a time, in rounds whose server order rotates, and
each run first waits (briefly) for other processes on the machine to go quiet and then
records how much CPU they used anyway. Results go to ``bench/results/serving_stack.md``
and ``.json`` (``--tiny``: ``serving_stack_tiny.*``). Every process started here is
stopped on exit, Ctrl-C, SIGTERM or SIGHUP.

The servers of b, c and d import this same file: keep its top level free of imports
other than the standard library.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import io
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
ENV_ROOT = "BENCH_APICRUD_ROOT"

# Settings given to apicrud (a and b) when the revision under test declares them: the
# benchmark user sends thousands of requests a second, far past a per-user rate limit.
BENCH_SETTINGS = {"ratelimit_enable": "false"}

SERVERS = {
    "a": "apicrud serve (gunicorn sync)",
    "b": "apicrud create_app() under uvicorn + a2wsgi",
    "c": "connexion 3 FlaskApp under uvicorn",
    "d": "plain Flask + SQLAlchemy (gunicorn sync), baseline",
    "e": "apicrud mounted in connexion 3 FlaskApp (add_apicrud_api) under uvicorn",
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
        from models import Message

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
    app = create_app(root=os.environ.get(ENV_ROOT, str(ROOT)), migrate=False)
    return WSGIMiddleware(app)


# -- e. apicrud mounted in a connexion app -------------------------------------------

def make_apicrud_connexion():
    """uvicorn --factory target: a connexion 3 FlaskApp with apicrud's resources mounted
    (apicrud.connexion_mount): connexion's middleware in front, apicrud's request path
    behind a2wsgi."""
    import connexion

    from apicrud.connexion_mount import add_apicrud_api

    app = connexion.FlaskApp(__name__)
    add_apicrud_api(app, os.environ.get(ENV_ROOT, str(ROOT)), migrate=False)
    return app


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
    round: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    cpu_ms_per_request: float | None
    background_cores: float
    waited_for_quiet_s: float
    raw: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


@dataclass
class Server:
    key: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None
    ready_after_s: float | None = None
    rss_mb: float | None = None
    runs: list[Run] = field(default_factory=list)
    log_issues: list[str] = field(default_factory=list)
    response_bytes: dict[str, int] = field(default_factory=dict)
    response_keys: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return SERVERS[self.key]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.error is None


class Processes:
    """Every child process this script started, each in its own process group."""

    def __init__(self, nice: int = 0) -> None:
        self.procs: list[subprocess.Popen] = []
        self.nice = nice

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` run at the chosen niceness (``nice`` execs it: the pid stays the same)."""
        return ["nice", "-n", str(self.nice), *cmd] if self.nice else cmd

    def prioritize(self, proc: subprocess.Popen) -> None:
        """Give the child's new session the chosen niceness as a scheduling group too.

        With autogroup scheduling (Linux, on by default), the CPU is shared between
        sessions first, so a process's own niceness only matters within its session.
        """
        if self.nice:
            try:
                Path(f"/proc/{proc.pid}/autogroup").write_text(str(self.nice))
            except OSError:
                pass

    def start(self, cmd: list[str], *, env: dict[str, str] | None = None,
              log_path: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115  closed below
        try:
            proc = subprocess.Popen(self.wrap(cmd), env=env, cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        finally:
            if log_path:
                out.close()
        self.procs.append(proc)
        self.prioritize(proc)
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
            except Exception as exc:  # noqa: BLE001  keep going: the others must be stopped too
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


# -- CPU accounting: this machine may be shared ---------------------------------------------

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


class CpuMeter:
    """Splits the machine's busy CPU into ours (every process started here) and the rest."""

    def __init__(self, procs: Processes) -> None:
        import resource

        self.procs = procs
        self._resource = resource
        self._tick = os.sysconf("SC_CLK_TCK")

    def _busy(self) -> float:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        # user nice system idle iowait irq softirq steal
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / self._tick

    def _ours(self) -> float:
        total = sum(tree_cpu_and_rss(p.pid)[0] for p in list(self.procs.procs))
        me = os.times()
        kids = self._resource.getrusage(self._resource.RUSAGE_CHILDREN)  # ended: wrk runs
        return total + me.user + me.system + kids.ru_utime + kids.ru_stime

    def snapshot(self) -> tuple[float, float, float]:
        return time.monotonic(), self._busy(), self._ours()

    @staticmethod
    def background(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
        """CPU cores used by processes not started here, between two snapshots."""
        wall = max(b[0] - a[0], 1e-6)
        return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / wall)

    def wait_quiet(self, limit_cores: float, max_wait: float) -> tuple[float, float]:
        """Wait (1 s samples) until other processes use at most ``limit_cores``.

        Returns (seconds waited, last sample); gives up after ``max_wait`` seconds.
        """
        if max_wait <= 0:
            return 0.0, 0.0
        start = time.monotonic()
        while True:
            a = self.snapshot()
            time.sleep(1.0)
            bg = self.background(a, self.snapshot())
            waited = time.monotonic() - start
            if bg <= limit_cores or waited >= max_wait:
                return round(waited - 1.0, 1), round(bg, 2)


# -- the apicrud under test ------------------------------------------------------------

def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


# Imported first by every server of an exported revision (through PYTHONPATH), and run in
# this process too: an editable install of apicrud would otherwise lend the working tree's
# modules to an export that lacks them, and the run would measure a mix of both.
HERMETIC = """\
import sys


def _editable_apicrud(finder):
    mod = sys.modules.get(str(getattr(finder, "__module__", "") or ""))
    return "apicrud" in (getattr(mod, "MAPPING", None) or {})


sys.meta_path[:] = [f for f in sys.meta_path if not _editable_apicrud(f)]
"""


def apicrud_source(source: str, work: Path) -> tuple[Path, str]:
    """(project root to serve, description) for --source.

    A git revision is exported with ``git archive`` into the work folder, so the run is
    reproducible and unaffected by edits in progress in the working tree; ``worktree``
    serves the files as they are now.
    """
    if source == "worktree":
        rev = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "apicrud", "models", "openapi", "migrations",
                     "rbac.yaml", "service_config.yaml")
        return ROOT, f"working tree at {rev}" + (" with uncommitted changes" if dirty else "")
    import tarfile

    sha = _git("rev-parse", "--verify", f"{source}^{{commit}}")
    dest = work / "src"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    (work / "hermetic").mkdir()
    (work / "hermetic" / "sitecustomize.py").write_text(HERMETIC, encoding="utf-8")
    exec(compile(HERMETIC, "<hermetic>", "exec"), {})  # the same for this process
    subject = _git("log", "-1", "--format=%s", sha)
    if len(subject) > 72:
        subject = subject[:69].rstrip(" ,;") + "..."
    return dest, f"commit {sha[:7]} \"{subject}\", exported with git archive"


# -- data -------------------------------------------------------------------------------

def seed(src: Path, data_dir: Path, rows: int) -> dict[str, Any]:
    """Migrate a fresh SQLite database and fill it; return ids the load generator uses."""
    import importlib
    import random

    from sqlalchemy import func, select

    from apicrud.auth.accounts import create_account
    from apicrud.config import load_settings
    from apicrud.db import migrate
    from apicrud.db.base import new_id, utcnow
    from apicrud.db.engine import Database

    settings = load_settings(root=str(src), data_dir=str(data_dir), env="test",
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
    return {"uid": uid, "list_ids": list_ids, "setting_names": set(settings.declarations),
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
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return (f"redis://127.0.0.1:{port}/0",
                                f"own redis-server on 127.0.0.1:{port}, no persistence")
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

def base_env(src: str) -> dict[str, str]:
    """The caller's environment without settings that would steer apicrud or the servers,
    with the apicrud source under test first on the import path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APICRUD_", "BENCH_", "GUNICORN_", "UVICORN_", "WEB_CONCURRENCY"))}
    env["PYTHONUNBUFFERED"] = "1"
    hermetic = Path(src).parent / "hermetic"
    path = [src] + ([str(hermetic)] if hermetic.is_dir() else [])
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                else []))
    env[ENV_ROOT] = src
    return env


def server_command(key: str, port: int, workers: int, common: dict[str, str]
                   ) -> tuple[list[str], dict[str, str]]:
    py = sys.executable
    env = base_env(common["src"])
    apicrud_env = {
        "APICRUD_DATA_DIR": common["data_dir"], "APICRUD_REDIS_URL": common["redis"],
        "APICRUD_ENV": "test", "APICRUD_DB_MIGRATE_AT_START": "false",
        "APICRUD_SECRET_KEY": SECRET_KEY, "APICRUD_LOG_LEVEL": "warning"}
    apicrud_env.update({"APICRUD_" + k.upper(): v for k, v in common["settings"].items()})
    if key == "a":
        env.update(apicrud_env, APICRUD_PORT=str(port), APICRUD_WORKERS=str(workers),
                   APICRUD_HOST="127.0.0.1")
        exe = Path(py).with_name("apicrud")
        cmd = [str(exe)] if exe.exists() else [py, "-m", "apicrud.cli"]
        return cmd + ["--root", common["src"], "serve"], env
    uvicorn = [py, "-m", "uvicorn", "--factory", "--app-dir", str(BENCH_DIR), "--host",
               "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level",
               "warning", "--no-access-log"]
    if key in ("b", "e"):
        env.update(apicrud_env)
        return uvicorn + ["serving_stack:" + ("make_apicrud_asgi" if key == "b" else
                                               "make_apicrud_connexion")], env
    env.update({ENV_DB: common["db_url"], ENV_REDIS: common["redis"], ENV_SECRET: SECRET_KEY})
    if key == "c":
        return uvicorn + ["serving_stack:make_connexion_app"], env
    return [py, "-m", "gunicorn", "--pythonpath", str(BENCH_DIR), "--bind",
            f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync",
            "--log-level", "warning", "--timeout", "60", "--graceful-timeout", "10",
            "serving_stack:make_baseline_app()"], env


LOG_MARKERS = re.compile(r"Traceback|ERROR|CRITICAL|WORKER TIMEOUT|Exception|Error:|"
                         r"exited|Killed|signal", re.I)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_issues(path: Path, limit: int = 40) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [ln[:300] for ln in lines if LOG_MARKERS.search(ln)][:limit]


def check_responses(server: Server, token: str, op_paths: dict[str, list[str]],
                    page: int) -> None:
    """Both operations answer 200 with the expected shape, and a bad token 401, before load."""
    for op, paths in op_paths.items():
        status, _, body = http("GET", server.base_url + paths[0], token=token)
        if status != 200:
            raise RuntimeError(f"{op}: HTTP {status} before load: {body[:300]!r}")
        doc = json.loads(body)
        if op == "list":
            if len(doc.get("items", ())) != page:
                raise RuntimeError(f"list: expected {page} items, got {len(doc.get('items', ()))}")
            keys = sorted(doc) + ["items[]." + k for k in sorted(doc["items"][0])]
        else:
            keys = sorted(doc)
        server.response_bytes[op] = len(body)
        server.response_keys[op] = keys
        status, _, _ = http("GET", server.base_url + paths[0], token="x" * 43)
        if status != 401:
            raise RuntimeError(f"{op}: a wrong token got HTTP {status}, not 401")


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
                                  map(int, sock.groups()), strict=True)) if sock else {},
    }


def run_wrk(procs: Processes, url: str, lua: Path, seconds: float, args) -> str:
    cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}",
           f"-d{max(1, round(seconds))}s", f"--timeout={args.wrk_timeout:g}s", "--latency",
           "-s", str(lua), url]
    proc = subprocess.Popen(procs.wrap(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    procs.procs.append(proc)
    procs.prioritize(proc)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        procs.stop(proc, grace=2)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out}")
    return out


def measure(server: Server, op: str, rnd: int, lua: Path, args, procs: Processes,
            meter: CpuMeter) -> Run:
    waited, _ = meter.wait_quiet(args.quiet_cores, args.quiet_wait)
    a = meter.snapshot()
    cpu0, _ = tree_cpu_and_rss(server.proc.pid)
    out = run_wrk(procs, server.base_url, lua, args.duration, args)
    cpu1, rss = tree_cpu_and_rss(server.proc.pid)
    bg = meter.background(a, meter.snapshot())
    parsed = parse_wrk(out)
    cpu_per = round((cpu1 - cpu0) * 1e3 / parsed["requests"], 3) if parsed["requests"] else None
    run = Run(server.key, op, rnd, cpu_ms_per_request=cpu_per, background_cores=round(bg, 2),
              waited_for_quiet_s=waited, raw=out, **parsed)
    server.runs.append(run)
    server.rss_mb = round(max(server.rss_mb or 0.0, rss), 1)
    print(f"  round {rnd + 1} [{server.key}] {op:<4} {run.requests_per_s:8.1f} req/s  "
          f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  cpu {cpu_per} ms/req  "
          f"other load {bg:.2f} cores" + (f" (waited {waited:.0f} s)" if waited else "")
          + (f"  ERRORS {run.errors}: non-2xx {run.non_2xx}, sockets {run.socket_errors}"
             if run.errors else ""), flush=True)
    return run


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


def command_line() -> str:
    """How this run was started, with the PYTHONPATH that can change what servers import."""
    import shlex

    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    pypath = os.environ.get("PYTHONPATH")
    return ((f"PYTHONPATH={shlex.quote(pypath)} " if pypath else "")
            + f".venv/bin/python bench/serving_stack.py {args}").strip()


def machine_info() -> dict[str, Any]:
    cpu = mem = None
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), None)
        kb = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal")), None)
        mem = f"{kb / 2**20:.1f} GiB" if kb else None
    except OSError:
        pass
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "nproc": os.cpu_count(), "cpu_model": cpu, "memory": mem,
        "kernel": platform.release(), "python": platform.python_version(),
        "wrk": (_first_line(["wrk", "--version"]) or "").split(" Copyright")[0] or None,
        "redis_server": _first_line(["redis-server", "--version"]),
        "packages": {name: _version(name) for name in (
            "apicrud", "flask", "werkzeug", "sqlalchemy", "gunicorn", "uvicorn", "connexion",
            "a2wsgi", "starlette", "redis", "jsonschema", "httptools", "uvloop")},
    }


def _aggregate(runs: list[Run]) -> dict[str, Any]:
    med = statistics.median
    rps = [r.requests_per_s for r in runs]
    return {
        "requests_per_s": round(med(rps), 1), "min_rps": round(min(rps), 1),
        "max_rps": round(max(rps), 1),
        "p50_ms": round(med(r.p50_ms for r in runs), 2),
        "p99_ms": round(med(r.p99_ms for r in runs), 2),
        "cpu_ms_per_request": round(med(r.cpu_ms_per_request or 0 for r in runs), 3),
        "background_cores": round(med(r.background_cores for r in runs), 2),
        "errors": sum(r.errors for r in runs), "runs": len(runs),
    }


def summarize(servers: list[Server]) -> list[dict[str, Any]]:
    rows = []
    base = next((s for s in servers if s.key == "d"), None)
    for op in OPERATIONS:
        ref = None
        if base is not None and any(r.operation == op for r in base.runs):
            ref = _aggregate([r for r in base.runs if r.operation == op])
        for s in servers:
            runs = [r for r in s.runs if r.operation == op]
            if not runs:
                continue
            row = {"server": s.key, "label": s.label, "operation": op, **_aggregate(runs)}
            row["ratio_to_baseline"] = round(row["requests_per_s"] / ref["requests_per_s"], 2) \
                if ref else None
            row["cpu_ratio_to_baseline"] = round(
                ref["cpu_ms_per_request"] / row["cpu_ms_per_request"], 2) \
                if ref and row["cpu_ms_per_request"] else None
            rows.append(row)
    return rows


def write_report(out_prefix: Path, args, info: dict[str, Any], setup: dict[str, Any],
                 servers: list[Server]) -> tuple[Path, Path]:
    rows = summarize(servers)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": info, "setup": setup,
        "parameters": {k: getattr(args, k) for k in (
            "rows", "duration", "warmup", "connections", "workers", "wrk_threads", "repeat",
            "quiet_cores", "quiet_wait", "nice", "source", "tiny")},
        "summary": rows,
        "servers": [{
            "key": s.key, "label": s.label, "command": s.command,
            "ready_after_s": s.ready_after_s, "rss_mb_after_runs": s.rss_mb, "error": s.error,
            "log_issues": s.log_issues, "response_bytes": s.response_bytes,
            "response_keys": s.response_keys,
            "runs": [dict(vars(run)) for run in s.runs],
        } for s in servers],
    }
    json_path = out_prefix.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    p = info["packages"]
    rounds = f"median of {args.repeat} interleaved rounds" if args.repeat > 1 else "one round"
    nice_note = "" if os.geteuid() == 0 else " (requested, but not root: not applied)"
    lines = [
        "# Serving-stack benchmark",
        "",
        f"Generated by `bench/serving_stack.py` on {info['date_utc']}"
        + (" with **--tiny**: a smoke run, not a measurement" if args.tiny else "")
        + f": `{info['command']}`.",
        "",
        f"- Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['memory']}, "
        f"Linux {info['kernel']}. wrk, Redis and the server under test share these CPUs.",
        f"- apicrud: {setup['apicrud']}"
        + ("; settings changed for the run: " + ", ".join(
            f"`{k}={v}`" for k, v in setup["apicrud_settings"].items())
           if setup["apicrud_settings"] else "") + ".",
        f"- Python {info['python']}; "
        f"Flask {p['flask']}, Werkzeug {p['werkzeug']}, SQLAlchemy {p['sqlalchemy']}, "
        f"redis-py {p['redis']}, gunicorn {p['gunicorn']}, uvicorn {p['uvicorn']} "
        f"(HTTP parser: {'httptools ' + p['httptools'] if p['httptools'] else 'h11'}, loop: "
        f"{'uvloop ' + p['uvloop'] if p['uvloop'] else 'asyncio'}), connexion {p['connexion']}, "
        f"a2wsgi {p['a2wsgi']}, starlette {p['starlette']}.",
        f"- {(info['wrk'] or 'wrk').split(' Copyright')[0]}; "
        f"{(info['redis_server'] or 'redis').split(' sha')[0]} ({setup['redis']}).",
        f"- Data: SQLite ({setup['db_mb']} MB), {args.rows:,} messages in {LISTS} lists of one "
        f"non-admin user. `get` cycles through {setup['get_ids']} random message ids, `list` "
        f"through the {LISTS} lists.",
        f"- Load: {args.workers} worker processes per server; `wrk -t{args.wrk_threads} "
        f"-c{args.connections} --latency`; {args.warmup:g} s warm-up per server and operation, "
        f"then {args.duration:g} s per measured run, {rounds} (server order rotated each "
        f"round)"
        + (f"; each run first waited up to {args.quiet_wait:g} s for other load below "
           f"{args.quiet_cores:g} cores" if args.quiet_wait else "")
        + (f"; servers, wrk and Redis ran at niceness {args.nice}{nice_note}" if args.nice
           else "") + ".",
        "",
        "| server | operation | req/s | min-max req/s | p50 ms | p99 ms | CPU ms/req "
        "| other load (cores) | errors | ratio to Flask baseline (req/s) | (CPU/req) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = f"{row['ratio_to_baseline']:.2f}" if row["ratio_to_baseline"] else "-"
        cratio = f"{row['cpu_ratio_to_baseline']:.2f}" if row["cpu_ratio_to_baseline"] else "-"
        lines.append(
            f"| {row['server']}. {row['label']} | `{OPERATIONS[row['operation']]}` "
            f"| {row['requests_per_s']:,.0f} | {row['min_rps']:,.0f}-{row['max_rps']:,.0f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['cpu_ms_per_request']:.2f} "
            f"| {row['background_cores']:.2f} | {row['errors']} | {ratio} | {cratio} |")
    lines += [
        "",
        "- **CPU ms/req**: CPU time of the server's processes (master and workers) during a "
        "measured run, divided by the requests it served. It does not count wrk, Redis or "
        "the kernel's loopback work, and it moves less with other load than req/s does.",
        "- **other load**: cores used during the run by processes this script did not start "
        "(from /proc/stat); above a few tenths, that run's req/s is understated.",
        "- **errors**: non-2xx responses plus wrk socket errors (connect, read, write, "
        "timeout), summed over the measured runs.",
        "",
        "## Per server",
        "",
    ]
    for s in servers:
        shown = " ".join([Path(s.command[0]).name] + s.command[1:])
        lines.append(f"- **{s.key}. {s.label}**: `{shown}`")
        if s.error:
            lines.append(f"  - FAILED: {s.error}")
        if s.rss_mb:
            lines.append(f"  - resident memory of all its processes after the runs: "
                         f"{s.rss_mb} MiB; response body bytes: "
                         + ", ".join(f"{k} {v}" for k, v in s.response_bytes.items()))
        base = next((b for b in servers if b.key == "d"), None)
        for op, keys in s.response_keys.items():
            ref = set(base.response_keys.get(op, ())) if base and base is not s else None
            if ref and set(keys) != ref:
                more, fewer = sorted(set(keys) - ref), sorted(ref - set(keys))
                lines.append(f"  - `{op}` body differs from the baseline's: "
                             + ("; ".join(x for x in (
                                 f"extra {', '.join(more)}" if more else "",
                                 f"missing {', '.join(fewer)}" if fewer else "") if x)))
        if s.log_issues:
            lines.append(f"  - {len(s.log_issues)} server log line(s) worth a look, "
                         f"first: `{s.log_issues[0]}`")
    md_path = out_prefix.with_suffix(".md")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md_path, json_path


# -- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=None, help="messages to seed (100000)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (15)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="warm-up seconds per server and operation (3)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per server (2)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="interleaved rounds; the report shows medians (3; 1 with --tiny)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    ap.add_argument("--wrk-timeout", type=float, default=10.0,
                    help="seconds before wrk counts a request as timed out (10)")
    ap.add_argument("--quiet-cores", type=float, default=0.3,
                    help="before each run, wait while other processes use more cores (0.3)")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="at most this many seconds of waiting per run for other load to "
                         "drop below --quiet-cores (0: do not wait)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an apicrud setting for servers a and b (repeatable); by default "
                         "only ratelimit_enable=false, where the revision has it")
    ap.add_argument("--nice", type=int, default=-10,
                    help="niceness (and autogroup niceness) of every process started here, "
                         "so other work on a shared machine skews the runs less; needs root "
                         "when negative, else it is ignored (-10)")
    ap.add_argument("--servers", default="abcd", help="which of a, b, c, d, e to run (abcd)")
    ap.add_argument("--source", default="HEAD",
                    help="apicrud to measure: a git revision, exported to the temporary folder "
                         "(HEAD), or 'worktree' for the files as they are")
    ap.add_argument("--redis-url", default=None,
                    help="use this Redis instead of starting redis-server on a free port")
    ap.add_argument("--start-timeout", type=float, default=90.0)
    ap.add_argument("--tiny", action="store_true",
                    help="smoke run: 1,000 rows, 3 s runs, 1 s warm-up, one round (for CI)")
    ap.add_argument("--output", type=Path, default=None,
                    help="path prefix of the .md/.json report (bench/results/serving_stack, "
                         "or bench/results/serving_stack_tiny with --tiny)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and logs")
    args = ap.parse_args(argv)
    tiny = {"rows": 1000, "duration": 3.0, "warmup": 1.0, "repeat": 1}
    full = {"rows": 100_000, "duration": 15.0, "warmup": 3.0, "repeat": 3}
    for name, value in (tiny if args.tiny else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.output = args.output or RESULTS_DIR / ("serving_stack_tiny" if args.tiny
                                                else "serving_stack")
    if args.rows < LISTS:
        ap.error(f"--rows must be at least {LISTS}, one message per list")
    if args.repeat < 1 or args.duration < 1 or args.workers < 1 or args.connections < 1:
        ap.error("--repeat, --duration, --workers and --connections must be positive")
    if set(args.servers) - set(SERVERS) or not args.servers:
        ap.error("--servers takes letters among a, b, c, d, e")
    if not set(args.servers) & {"a", "b"}:
        ap.error("--servers needs a or b: the benchmark logs in through apicrud")
    if shutil.which("wrk") is None:
        ap.error("wrk is not installed (Debian: apt-get install -y wrk)")
    return args


def _raise_interrupted(signum, _frame):
    raise Interrupted(f"signal {signum}")


def start_servers(servers: list[Server], args, procs: Processes, op_paths, page: int) -> str:
    """Start every server, log in through the first apicrud one; return the token."""
    first, rest = servers[0], servers[1:]
    print(f"[{first.key}] starting {first.label} on :{first.port}", flush=True)
    first.proc = procs.start(first.command, env=first.env, log_path=first.log_path,
                             cwd=first.env[ENV_ROOT])
    t0 = time.monotonic()
    try:
        wait_ready(f"{first.base_url}{BASE}/health", first.proc, None, args.start_timeout)
        token = login(first.base_url)
    except RuntimeError as exc:
        raise RuntimeError(f"[{first.key}] {exc}; its log ends with:\n"
                           f"{log_tail(first.log_path)}") from None
    print(f"[{first.key}] logged in as {USERNAME!r} over HTTP: POST {BASE}/auth", flush=True)
    first.ready_after_s = round(time.monotonic() - t0, 1)
    for s in rest:
        print(f"[{s.key}] starting {s.label} on :{s.port}", flush=True)
        s.proc = procs.start(s.command, env=s.env, log_path=s.log_path, cwd=s.env[ENV_ROOT])
    for s in servers:
        try:
            t = wait_ready(s.base_url + op_paths["get"][0], s.proc, token, args.start_timeout)
            if s.ready_after_s is None:
                s.ready_after_s = round(t, 1)
            check_responses(s, token, op_paths, page)
        except Exception as exc:  # noqa: BLE001  a stack that fails to start is reported
            s.error = f"start-up: {exc}"
            s.log_issues = log_tail(s.log_path).splitlines()
            print(f"[{s.key}] FAILED: {s.error}", file=sys.stderr, flush=True)
    return token


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    order = sorted(args.servers, key=lambda k: (k not in ("a", "b"), k))  # apicrud first
    # Ctrl-C raises KeyboardInterrupt even when started from a shell that ignores SIGINT
    # in background jobs; SIGTERM and SIGHUP unwind the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    procs = Processes(args.nice)
    meter = CpuMeter(procs)
    work = Path(tempfile.mkdtemp(prefix="apicrud-bench-"))
    servers: list[Server] = []
    try:
        print(f"work folder {work}", flush=True)
        redis_url, redis_how = start_redis(procs, work, args.redis_url)
        print(f"redis: {redis_how}", flush=True)
        src, src_how = apicrud_source(args.source, work)
        sys.path.insert(0, str(src))  # seed with the same apicrud the servers run
        print(f"apicrud under test: {src_how}", flush=True)
        t0 = time.monotonic()
        data = seed(src, work, args.rows)
        import apicrud

        if not Path(apicrud.__file__).resolve().is_relative_to(src.resolve()):
            raise RuntimeError(f"imported apicrud from {apicrud.__file__}, not from {src}")
        print(f"seeded {args.rows:,} messages in {time.monotonic() - t0:.1f} s "
              f"({data['db_bytes'] / 2**20:.1f} MB)", flush=True)
        changed = {k: v for k, v in BENCH_SETTINGS.items() if k in data["setting_names"]}
        for item in args.set:
            key, _, value = item.partition("=")
            if key not in data["setting_names"]:
                raise RuntimeError(f"--set {item}: this apicrud has no setting {key!r}")
            changed[key] = value
        if changed:
            print("apicrud settings for the run: "
                  + ", ".join(f"{k}={v}" for k, v in changed.items()), flush=True)
        common = {"data_dir": str(work), "redis": redis_url, "db_url": data["db_url"],
                  "src": str(src), "settings": changed}
        op_paths = {
            "get": [f"{BASE}/message/{mid}" for mid in data["sample_ids"]],
            "list": [f"{BASE}/message?limit={PAGE}&filter=" + urllib.parse.quote(
                json.dumps({"list_id": lid}, separators=(",", ":")), safe="")
                for lid in data["list_ids"]],
        }
        for key in order:
            port = free_port()
            cmd, env = server_command(key, port, args.workers, common)
            servers.append(Server(key, cmd, env, port, work / f"server-{key}.log"))
        token = start_servers(servers, args, procs, op_paths, min(PAGE, args.rows // LISTS))
        luas = {}
        for op, paths in op_paths.items():
            luas[op] = work / f"{op}.lua"
            write_lua(luas[op], token, paths)
        print(f"warm-up: {args.warmup:g} s per server and operation", flush=True)
        for s in servers:
            for op in OPERATIONS:
                if s.alive() and args.warmup > 0:
                    run_wrk(procs, s.base_url, luas[op], args.warmup, args)
        for rnd in range(args.repeat):
            turn = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
            for op in OPERATIONS:
                for s in turn:
                    if not s.alive():
                        if s.error is None and s.proc is not None:
                            s.error = f"server exited with code {s.proc.returncode}"
                        continue
                    measure(s, op, rnd, luas[op], args, procs, meter)
        for s in servers:
            if s.proc is not None and s.proc.poll() is not None and s.error is None:
                s.error = f"server exited with code {s.proc.returncode} during the runs"
            if s.proc is not None:
                procs.stop(s.proc)
            s.log_issues = log_issues(s.log_path)
        setup = {"redis": redis_how, "apicrud": src_how, "apicrud_settings": changed,
                 "db_mb": round(data["db_bytes"] / 2**20, 1), "get_ids": len(op_paths["get"]),
                 "example_paths": {op: paths[0] for op, paths in op_paths.items()}}
        md, js = write_report(args.output, args, machine_info(), setup, servers)
        shown = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
        print(f"\nwrote {shown} and {js.name}\n", flush=True)
        print(md.read_text(encoding="utf-8"))
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\ninterrupted ({str(exc) or 'Ctrl-C'}): stopping every process started here",
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
    bad = [s for s in servers if s.error or any(r.errors for r in s.runs)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
