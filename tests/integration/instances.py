"""Extra application instances for tests that need more than the session's server.

An :class:`Instance` is a real ``create_app`` served over HTTP on loopback in a thread,
like the ``server`` fixture, built from that server's settings with changes: two of them
sharing one Redis behave as two hosts of one deployment.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

import requests
from werkzeug.serving import make_server

from helpers import random_account


@dataclass
class Instance:
    url: str  # base API url
    app: object
    httpd: object
    thread: threading.Thread
    stopped: bool = field(default=False)

    @property
    def services(self):
        return self.app.extensions["apicrud"]

    @property
    def settings(self):
        return self.services.settings

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self.services.close()


def start_instance(settings, **changes) -> Instance:
    """Build and serve an app from ``settings`` with ``changes`` (migrations already run)."""
    from apicrud.app import create_app

    # an id of its own: two instances must not share (and remove) one registry entry
    changes.setdefault("instance_id", f"test-{secrets.token_hex(4)}")
    app = create_app(settings=settings.replace(**changes), migrate=False)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = app.extensions["apicrud"].base_url
    return Instance(f"http://127.0.0.1:{httpd.server_port}{base}", app, httpd, thread)


def new_account(services, admin: bool = False) -> tuple[str, str, str]:
    """Create an active account in the instance's database: (username, password, uid)."""
    with services.db.session() as session, session.begin():
        username, password, uid, _ = random_account(session, services.settings,
                                                     prefix="i", admin=admin)
    return username, password, uid


def login(url: str, username: str, password: str) -> requests.Session:
    """A requests session holding a Bearer token from ``POST {url}/auth``."""
    resp = requests.post(url + "/auth", json={"username": username, "password": password},
                         timeout=10)
    assert resp.status_code == 201, resp.text
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
    return http
