"""``/health``: can this instance reach the database, Redis and the message broker.

Each check runs in its own thread with a deadline (``HEALTH_TIMEOUT``), all at once, so
the answer comes within that deadline even when a dependency hangs rather than refuses:
a load balancer's probe must never time out waiting for us. A dependency is named in
``checks`` as ``ok`` or ``down: <reason>``; any down gives a 503 problem document
naming them, with ``Retry-After``.

The broker is checked on its own only when setting ``broker_url`` names one; empty means
the broker is the Redis already checked, and it is not listed twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import text

from apicrud.context import Reply, RequestContext
from apicrud.errors import ServiceUnavailable
from apicrud.i18n import N_

HEALTH_TIMEOUT = 1.5  # seconds for all checks together; probes usually allow 2 or more


def run_checks(checks: dict[str, Callable[[], None]], timeout: float) -> dict[str, str]:
    """Run every check concurrently; ``ok``, ``down: <error>`` or ``down: timeout``.

    Checks run in daemon threads: one that hangs past the deadline is abandoned (it ends
    with its own socket timeout), never waited for.
    """
    results: dict[str, str] = {}
    lock = threading.Lock()

    def run(name: str, check: Callable[[], None]) -> None:
        try:
            check()
            outcome = "ok"
        except Exception as exc:  # noqa: BLE001  any failure of a dependency means "down" here
            outcome = f"down: {type(exc).__name__}"
        with lock:
            results[name] = outcome

    threads = [threading.Thread(target=run, args=item, daemon=True, name=f"health-{item[0]}")
               for item in checks.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    with lock:
        return {name: results.get(name, "down: timeout") for name in checks}


def _broker_check(url: str, timeout: float) -> Callable[[], None]:
    if url.startswith(("redis://", "rediss://", "unix://")):
        def ping_redis() -> None:
            client = redis.Redis.from_url(url, socket_timeout=timeout,
                                          socket_connect_timeout=timeout)
            try:
                client.ping()
            finally:
                client.close()
        return ping_redis

    def connect() -> None:
        from kombu import Connection  # only deployments with a separate broker need it

        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    return connect


class HealthController:
    def __init__(self, resource: Any, services: Any) -> None:
        self.services = services
        broker_url = getattr(services.settings, "broker_url", "") or ""
        self.broker_url = broker_url if broker_url != services.redis.url else ""

    def _database(self) -> None:
        with self.services.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _redis(self) -> None:
        self.services.redis.client.ping()

    def checks(self) -> dict[str, str]:
        """Every dependency's state, within HEALTH_TIMEOUT."""
        todo: dict[str, Callable[[], None]] = {"database": self._database,
                                                "redis": self._redis}
        if self.broker_url:
            todo["broker"] = _broker_check(self.broker_url, HEALTH_TIMEOUT)
        return run_checks(todo, HEALTH_TIMEOUT)

    def get(self, ctx: RequestContext) -> Reply:
        checks = self.checks()
        down = sorted(k for k, v in checks.items() if v != "ok")
        if down:
            raise ServiceUnavailable(N_("down: %(checks)s", checks=", ".join(down)), checks=checks)
        return Reply({"status": "ok", "checks": checks}, 200, {"Cache-Control": "no-store"})
