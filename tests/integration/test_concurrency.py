"""Races: concurrent conditional updates, and several instances migrating one database."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from helpers import ROOT, new_list


def test_concurrent_if_match_updates_have_one_winner_per_version(user):
    record = new_list(user.api, name="contested", description="v0")
    rid = record["id"]
    etag = user.api.get(f"/list/{rid}").headers["ETag"]

    def attempt(i):
        return user.api.put(f"/list/{rid}", json={"description": f"writer {i}"},
                            headers={"If-Match": etag})

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(attempt, range(50)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, codes
    assert codes.count(412) == 49, codes
    winner = next(r for r in results if r.status_code == 200).json()["description"]
    assert user.api.get(f"/list/{rid}").json()["description"] == winner


def test_read_modify_write_loop_loses_no_update(user):
    """20 writers each append their mark with If-Match and retry on 412: all marks land."""
    record = new_list(user.api, name="counter", description="")
    rid = record["id"]

    def append(mark):
        for _ in range(200):
            got = user.api.get(f"/list/{rid}")
            desc = got.json()["description"] or ""
            resp = user.api.put(f"/list/{rid}", json={"description": desc + mark},
                                headers={"If-Match": got.headers["ETag"]})
            if resp.status_code == 200:
                return True
            assert resp.status_code == 412, resp.text
        return False

    marks = [chr(ord("a") + i) for i in range(20)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        assert all(pool.map(append, marks))
    final = user.api.get(f"/list/{rid}").json()["description"]
    assert sorted(final) == marks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _empty_database(settings, tmp_path) -> str:
    """A new empty database on the same server as the suite's (or a new SQLite file)."""
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path}/three.db"
    name = f"apicrud_three_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_database(settings, db_url: str) -> None:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return
    admin = create_engine(make_url(settings.sqlalchemy_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if url.get_backend_name() == "postgresql":
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"),
                         {"n": url.database})
        conn.execute(text(f"DROP DATABASE IF EXISTS {url.database}"))
    admin.dispose()


def test_three_instances_starting_together_migrate_once(server, tmp_path):
    db_url = _empty_database(server.settings, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(APICRUD_DATABASE_URL=db_url, APICRUD_REDIS_URL=server.services.redis.url,
               APICRUD_WORKERS="1", APICRUD_ADMIN_PASSWORD="three-instances-pw",
               APICRUD_LOG_LEVEL="info")
    ports = [_free_port() for _ in range(3)]
    procs = []
    try:
        for i, port in enumerate(ports):
            with open(tmp_path / f"serve{i}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "apicrud.cli", "serve"], cwd=ROOT,
                    env={**env, "APICRUD_PORT": str(port),
                         "APICRUD_DATA_DIR": str(tmp_path / f"d{i}")},
                    stdout=log, stderr=subprocess.STDOUT))
        deadline = time.time() + 90
        up = set()
        while len(up) < 3 and time.time() < deadline:
            for port in set(ports) - up:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/api/v1/health",
                                    timeout=5).status_code == 200:
                        up.add(port)
                except requests.RequestException:  # not listening yet, or busy starting
                    pass
            time.sleep(0.3)
        logs = [(tmp_path / f"serve{i}.log").read_text(errors="replace") for i in range(3)]
        assert len(up) == 3, "\n---\n".join(logs)
        assert sum(log.count("applying database migrations") for log in logs) == 1, logs
        assert sum(log.count("created admin account") for log in logs) == 1, logs
        engine = create_engine(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        engine.dispose()
        for port in ports:  # all three serve the same data
            login = requests.post(f"http://127.0.0.1:{port}/api/v1/auth", json={
                "username": "admin", "password": "three-instances-pw"}, timeout=60)
            assert login.status_code == 201, login.text
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        _drop_database(server.settings, db_url)
