"""apicrud mounted in a connexion 3 ``FlaskApp`` (apicrud.connexion_mount), served by
uvicorn on loopback in a thread: the second engine of tests/integration/test_engines.py.

Built from the session server's settings, so both engines share the database and Redis
(a token from one is good on the other, as between two hosts of one deployment).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time

from helpers import Server


class UvicornThread:
    """An ASGI application under uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, asgi_app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, \
                "uvicorn did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@contextlib.contextmanager
def serve_connexion(settings, **changes):
    """yields a Server for apicrud mounted in a connexion FlaskApp (and the FlaskApp as
    ``server.cx_app``)."""
    import connexion

    from apicrud.connexion_mount import add_apicrud_api

    changes.setdefault("instance_id", f"cx-{secrets.token_hex(4)}")
    cx_app = connexion.FlaskApp(__name__)
    app = add_apicrud_api(cx_app, settings.replace(**changes), migrate=False)
    runner = UvicornThread(cx_app).start()
    server = Server(f"http://127.0.0.1:{runner.port}{app.extensions['apicrud'].base_url}",
                    app, app.extensions["apicrud"].settings)
    server.cx_app = cx_app  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        runner.stop()
        app.extensions["apicrud"].close()
