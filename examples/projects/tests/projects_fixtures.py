"""Fixtures of the projects example, imported by its test modules (a conftest.py here
would shadow the framework suite's own ``conftest`` module when both are collected): the
example's own service in a subprocess (its own models module, tables, SQLite file and
embedded Redis in a temporary folder), reached over HTTP.

The suite's database settings are not used (the default application's tables live there);
PROJECTS_EXAMPLE_DATABASE_URL and PROJECTS_EXAMPLE_REDIS_URL name a database and a Redis
of the example's own, for runs on PostgreSQL or MariaDB (.ci/run sets them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIX = "-pw-" + os.urandom(6).hex()
USERS = ("root", "alice", "bob", "carol", "dave", "erin", "mallory",
         "m_oinv", "m_omem", "m_omgr", "m_pmem", "m_pmgr", "m_both", "m_none", "m_target")


def example_env(data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("PYTHONPATH", "DATABASE_URL", "REDIS_URL")}
    framework = os.path.dirname(os.path.dirname(ROOT))  # the checkout, for `apicrud`
    env.update(APICRUD_DATA_DIR=str(data_dir), APICRUD_WORKERS="1",
               PROJECTS_TEST_SUFFIX=SUFFIX, PYTHONPATH=framework)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(f"PROJECTS_EXAMPLE_{name}"):
            env[f"APICRUD_{name}"] = os.environ[f"PROJECTS_EXAMPLE_{name}"]
    return env


class Service:
    """One process serving the example (tests/serve_counting.py)."""

    def __init__(self, env: dict) -> None:
        # the server's log goes to a file: a pipe nobody reads would fill up and stop it
        self.log_path = os.path.join(env["APICRUD_DATA_DIR"], "server.log")
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "serve_counting.py"), *USERS],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            with open(self.log_path, encoding="utf-8") as fh:
                pytest.fail("the example did not start: " + fh.read()[-3000:])
        info = json.loads(line)
        self.url, self.uids = info["url"], info["uids"]

    def login(self, name: str) -> requests.Session:
        resp = requests.post(self.url + "/auth", json={"username": name,
                                                       "password": name + SUFFIX},
                             timeout=10)
        assert resp.status_code == 201, resp.text
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
        return http

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("projects-data")


@pytest.fixture(scope="session")
def service(data_dir):
    svc = Service(example_env(data_dir))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def second(service, data_dir):
    """A second instance of the same deployment: same database, same Redis."""
    svc = Service(example_env(data_dir))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def users(service) -> dict:
    return {name: service.login(name) for name in USERS}
