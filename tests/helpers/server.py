"""The framework suite's servers and users: the app served on a loopback port, an HTTP
client bound to it, and signed-in accounts made as ``apicrud account add`` makes them.

The fixtures built on these (``settings``, ``server``, ``user``, ``admin``) stay in
``tests/conftest.py``; test modules import what they call from :mod:`helpers`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import signal
import subprocess
import threading
from dataclasses import dataclass

import requests
from werkzeug.serving import make_server

from apicrud.auth.accounts import create_account

#: the checkout (tests/helpers/server.py is three levels down)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Api:
    """A tiny HTTP client bound to the server's base URL and, optionally, a token."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.http.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@dataclass
class Server:
    url: str  # base API url, e.g. http://127.0.0.1:PORT/api/v1
    app: object
    settings: object

    @property
    def services(self):
        return self.app.extensions["apicrud"]

    def anonymous(self) -> Api:
        return Api(self.url)


@contextlib.contextmanager
def serve_app(settings, migrate: bool = False):
    """An instance of the app for these settings, served on a free loopback port.

    Instances made from the same settings share the database and Redis: this is how the
    tests run several instances side by side.
    """
    from apicrud.app import create_app

    app = create_app(settings=settings, migrate=migrate)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}{settings.base_url}", app, settings)
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.extensions["apicrud"].close()


@dataclass
class User:
    username: str
    password: str
    uid: str
    account_id: str
    api: Api
    token: str


def random_account(session, settings, *, prefix: str = "u", admin: bool = False,
                   status: str = "active") -> tuple[str, str, str, str]:
    """An account with random credentials, made in ``session`` as `apicrud account add`
    makes one: (username, password, uid, account_id)."""
    username = f"{prefix}{secrets.token_hex(5)}"
    password = secrets.token_urlsafe(12)
    models = importlib.import_module(settings.models_module)
    account, _ = create_account(session, models, username=username,
                                email=f"{username}@example.com", password=password,
                                is_admin=admin, id_prefix=settings.id_prefix)
    account.status = status
    return username, password, account.uid, account.id


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server as an operator would (SIGTERM: gunicorn's workers go too), or kill
    it after ``timeout`` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_user(server: Server, admin: bool = False, prefix: str = "u") -> User:
    with server.services.db.session() as session, session.begin():
        username, password, uid, account_id = random_account(
            session, server.settings, prefix=prefix, admin=admin)
    resp = requests.post(server.url + "/auth", json={"username": username,
                                                     "password": password}, timeout=30)
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    return User(username, password, uid, account_id, Api(server.url, token), token)
