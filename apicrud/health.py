"""``/health``: is the database reachable, is Redis reachable."""

from __future__ import annotations

from sqlalchemy import text

from apicrud.context import Reply, RequestContext


class HealthController:
    def __init__(self, resource, services) -> None:
        self.services = services

    def _database(self) -> str:
        try:
            with self.services.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return "ok"
        except Exception as exc:  # any driver error means "down" here
            return f"down: {type(exc).__name__}"

    def _redis(self) -> str:
        return "ok" if self.services.redis.ping() else "down"

    def get(self, ctx: RequestContext) -> Reply:
        checks = {"database": self._database(), "redis": self._redis()}
        down = sorted(k for k, v in checks.items() if v != "ok")
        if down:
            return Reply({"type": "https://apicrud.dev/problems/unavailable",
                          "title": "Service Unavailable", "status": 503,
                          "detail": "down: " + ", ".join(down),
                          "message": "down: " + ", ".join(down),
                          "checks": checks}, 503,
                         {"Retry-After": "5", "Content-Type": "application/problem+json"})
        return Reply({"status": "ok", "checks": checks}, 200)
