"""A fixed-window request counter kept in Redis, shared by every instance.

Time is cut into windows of ``interval`` seconds aligned to the Unix epoch (window ``n``
covers ``[n * interval, (n + 1) * interval)``), so every instance agrees on where a
window starts without talking to the others. Each subject (a user, a client address)
has one counter per window, ``<prefix><subject>:<n>``; a hit is one ``INCR`` and one
``EXPIRE`` sent together in a MULTI block, so concurrent hits from any number of
instances are counted exactly and the first hit past the limit is the one refused.

Why fixed windows and not a sliding approximation: a window resets completely at its
boundary, which is what the ``RateLimit-Reset`` and ``Retry-After`` headers promise a
client ("come back in N seconds and you have the full limit again"). The price is the
known boundary burst: a client may spend a whole limit at the end of one window and
another at the start of the next, at most ``2 * limit`` within ``interval`` seconds.
A weighted sliding window would smooth that burst but could never name an exact reset
time. Instances must keep their clocks in step (NTP); a skew of ``s`` seconds moves that
instance's boundaries by ``s``.

Keys expire one second after their window ends, so idle subjects cost nothing and no
cleanup job is needed. The clock is injectable so tests can stand on a boundary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from apicrud import redis_keys

__all__ = ["Decision", "WindowLimiter"]


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit: allowed or not, and what the client should be told."""

    allowed: bool
    limit: int
    remaining: int  # requests left in this window after this one
    reset: int  # whole seconds until the window ends (at least 1)
    interval: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` response headers (IETF draft), plus ``Retry-After`` when refused."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w={self.interval}",
        }
        if not self.allowed:
            out["Retry-After"] = str(self.reset)
        return out


class WindowLimiter:
    """Counts hits per subject and fixed window in Redis.

    :param client: a Redis client (shared by every instance of the service)
    :param interval: window length in seconds
    :param clock: returns the current Unix time in seconds (tests pass a fake one)
    :param prefix: key prefix, so several services can share one Redis
    """

    def __init__(self, client: redis.Redis, interval: int, *,
                 clock: Callable[[], float] = time.time,
                 prefix: str = redis_keys.prefix("ratelimit")) -> None:
        if interval < 1:
            raise ValueError("interval must be at least one second")
        self.client = client
        self.interval = int(interval)
        self.clock = clock
        self.prefix = prefix

    def _window(self, now: float) -> tuple[int, int]:
        """(window number, whole seconds until it ends, at least 1)."""
        window = int(now // self.interval)
        left = (window + 1) * self.interval - now
        return window, max(1, math.ceil(left))

    def key(self, subject: str, now: float | None = None) -> str:
        window, _ = self._window(self.clock() if now is None else now)
        return f"{self.prefix}{subject}:{window}"

    def hit(self, subject: str, limit: int) -> Decision:
        """Count one request for ``subject`` and decide it against ``limit``.

        Refused requests are counted too; they cannot push the next window over, since
        every window has its own key.

        :raises redis.exceptions.RedisError: Redis is unreachable or failed; the caller
            decides whether that means yes or no
        """
        now = self.clock()
        window, reset = self._window(now)
        key = f"{self.prefix}{subject}:{window}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, reset + 1)
        count = int(pipe.execute()[0])
        limit = max(int(limit), 0)
        return Decision(allowed=count <= limit, limit=limit,
                        remaining=max(limit - count, 0), reset=reset, interval=self.interval)

    def current(self, subject: str) -> tuple[int, int]:
        """(requests counted for ``subject`` in this window, seconds until it ends),
        without counting one."""
        now = self.clock()
        window, reset = self._window(now)
        return int(self.client.get(f"{self.prefix}{subject}:{window}") or 0), reset

    def peek(self, subject: str) -> int:
        """Requests counted for ``subject`` in the current window (without counting one)."""
        return int(self.client.get(self.key(subject)) or 0)

    def reset(self, subject: str) -> None:
        """Forget the current window's count for ``subject``."""
        self.client.delete(self.key(subject))
