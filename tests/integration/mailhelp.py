"""Test helpers for messaging: a real SMTP server on loopback, a real Celery worker, an
extra app instance whose settings point at them, and polling.

Imported by test_registration.py and test_worker.py; not collected by pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email
import email.policy
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from helpers import Server, serve_app  # noqa: F401 (serve_app: re-exported)

SLOW_SECONDS = 1.5
# aiosmtpd logs every line it receives at DEBUG, one-time tokens included: that is the
# test's stand-in for the outside world, not the service, so keep it out of the logs
logging.getLogger("mail.log").setLevel(logging.WARNING)
TOKEN_LINE = re.compile(r"^Token: (\S+)\s*$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


class _Handler:
    """Accepts every message, except recipients starting with ``bounce`` (550); takes
    ``SLOW_SECONDS`` for recipients starting with ``slow``."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(rcpt.startswith("slow") for rcpt in envelope.rcpt_tos):
            await asyncio.sleep(SLOW_SECONDS)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.sink.lock:
            self.sink.messages.append(msg)
            self.sink.logins.append(getattr(session, "auth_data", None))
        return "250 Message accepted"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

    ``stop()`` and ``start()`` again keep the port, to play a server that goes down and
    comes back. ``tls``: ``none``, ``starttls`` or ``ssl`` with a self-signed
    certificate (``cert_file`` is the CA file a client must trust); ``credentials``:
    (user, password) the server requires.
    """

    def __init__(self, tls: str = "none", credentials: tuple[str, str] | None = None,
                 cert_dir: str | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.credentials = credentials
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[Any] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None
        self.cert_file = self.key_file = None
        if tls != "none":
            self.cert_file, self.key_file = self_signed_cert(cert_dir or ".")

    def _server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        user, password = self.credentials
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535

    def start(self) -> SmtpSink:
        kwargs: dict[str, Any] = {}
        if self.tls == "ssl":
            kwargs["ssl_context"] = self._server_context()
        elif self.tls == "starttls":
            kwargs.update(tls_context=self._server_context(), require_starttls=True)
        if self.credentials:
            kwargs["authenticator"] = self._authenticate
            if self.tls == "ssl":
                # implicit TLS is TLS too, but aiosmtpd only counts STARTTLS as such
                kwargs["auth_require_tls"] = False
            else:
                kwargs["auth_required"] = True
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def find(self, to: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == to]

    def wait_mail(self, to: str, count: int = 1, timeout: float = 10.0):
        """The ``count``-th message to ``to`` (waiting for it)."""
        found = wait_for(lambda: len(self.find(to)) >= count and self.find(to),
                         timeout, f"mail #{count} to {to}")
        return found[count - 1]


def service_log(caplog) -> str:
    """Everything the service logged (message, arguments, extras), one record a line.

    The test SMTP server's own log (``mail.log``, the outside world) is left out: it
    prints every message it receives.
    """
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records
                     if not r.name.startswith("mail.log"))


def token_of(msg) -> str:
    match = TOKEN_LINE.search(msg.get_content())
    assert match, msg.get_content()
    return match.group(1)


def self_signed_cert(folder: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files in ``folder``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = os.path.join(folder, "smtp.crt"), os.path.join(folder, "smtp.key")
    with open(cert_file, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_file, key_file


@contextlib.contextmanager
def run_worker(settings, redis_url: str):
    """A real Celery worker (in a thread of this process) consuming ``settings.worker_queue``."""
    from celery.contrib.testing.worker import start_worker

    from apicrud.worker.celery_app import REDIS_KEY_PREFIX, make_celery

    app = make_celery(settings, redis_url, worker=True)
    queue = settings.worker_queue
    # threads, not solo: a solo worker on RabbitMQ can leave a message that arrived with
    # the previous one's acknowledgement unread until its event loop wakes (up to 10 s)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=10):
        yield app
    app.close()
    if not settings.broker_url:  # the queue's bindings would stay in the suite's Redis
        client = redis.Redis.from_url(redis_url)
        try:
            client.delete(*(f"{REDIS_KEY_PREFIX}{name}" for name in (
                queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")))
        finally:
            client.close()
