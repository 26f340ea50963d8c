"""Driving Debian's Chromium with Playwright for the admin UI tests.

The browser is the system's (``/usr/bin/chromium``, or ``CHROMIUM`` in the environment);
Playwright never downloads one. A missing browser fails the tests with the command that
installs it: these tests are part of CI and must not skip.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import requests

from apicrud.config import load_settings
from apicrud.db.engine import Database
from helpers import ROOT, Api, User, random_account, stop_process

SCREENSHOTS = os.path.join(ROOT, "artifacts", "screenshots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str:
    """The system Chromium, or a failure that says how to install it."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail("Debian's Chromium is missing (looked for /usr/bin/chromium and $CHROMIUM): "
                    "install it with `apt-get install -y chromium` (.ci/run does so)",
                    pytrace=False)
    return path


def shot(page, name: str) -> str:
    """Save a full-page screenshot as artifacts/screenshots/<name>.png."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, re.sub(r"[^a-z0-9_-]+", "-", name.lower()) + ".png")
    page.screenshot(path=path, full_page=True)
    return path


class PageErrors:
    """Uncaught script errors of a page; a test ends by asserting there were none."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def assert_none(self) -> None:
        assert not self.errors, f"script errors in the page: {self.errors}"


def login(page, root: str, username: str, password: str) -> None:
    """Sign in through the login form and wait for the layout with the user's name."""
    from playwright.sync_api import expect

    page.goto(root + "/admin/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Profile")).to_contain_text(username)


def rows(page):
    """The data rows of the list on screen."""
    return page.locator("table tbody tr")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """A real ``apicrud serve`` on the embedded defaults, as ``make run`` starts it."""

    root: str  # http://127.0.0.1:PORT
    data_dir: str
    admin: User
    process: subprocess.Popen

    @property
    def api_url(self) -> str:
        return self.root + "/api/v1"

    def add_user(self, prefix: str = "u") -> User:
        """An active account (made as `apicrud account add` does), logged in over HTTP."""
        # the service's own settings: its data folder, and none of the suite's backends
        settings = load_settings(root=ROOT, data_dir=self.data_dir, database_url="")
        database = Database(settings.sqlalchemy_url)
        try:
            with database.session() as session, session.begin():
                username, password, uid, account_id = random_account(session, settings,
                                                                     prefix=prefix)
        finally:
            database.dispose()
        return _login(self.api_url, username, password, uid, account_id)

    def stop(self) -> None:
        stop_process(self.process)


def _login(api_url: str, username: str, password: str, uid: str = "",
           account_id: str = "") -> User:
    resp = requests.post(api_url + "/auth", json={"username": username, "password": password},
                         timeout=30)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return User(username, password, uid or body["uid"], account_id or body["account_id"],
                Api(api_url, body["token"]), body["token"])


def start_service(data_dir: str, config: dict | None = None) -> Service:
    """Start `apicrud serve` in its own data folder (SQLite + embedded Redis), whatever
    backends the rest of the suite runs on, so what the browser sees is only this
    module's data; ``config`` is written as its APICRUD_CONFIG file."""
    port = _free_port()
    password = "admin-" + secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(APICRUD_DATA_DIR=data_dir, APICRUD_PORT=str(port), APICRUD_WORKERS="1",
               APICRUD_THREADS="8", APICRUD_ADMIN_PASSWORD=password)
    if config:
        path = os.path.join(data_dir, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)  # JSON is YAML
        env["APICRUD_CONFIG"] = path
    with open(os.path.join(data_dir, "serve.log"), "wb") as log:  # the child keeps its copy
        process = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "serve"], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(root, process, data_dir)
        admin = _login(root + "/api/v1", "admin", password)
    except BaseException:  # never leave a server behind
        stop_process(process)
        raise
    return Service(root, data_dir, admin, process)


def _wait_until_up(root: str, process: subprocess.Popen, data_dir: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(root + "/api/v1/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(data_dir, "serve.log"), encoding="utf-8") as f:
                pytest.fail(f"apicrud serve did not start:\n{f.read()[-3000:]}")
        time.sleep(0.2)
