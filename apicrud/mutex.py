"""Distributed mutex backed by Redis.

The lock is a single key ``mutex:<name>`` holding a random owner token, set
with ``NX`` and a millisecond TTL so that a crashed holder cannot block others
forever.  Release and extension are Lua scripts that act only when the stored
token is still ours, so a holder whose lock already expired (and was taken by
someone else) can never release or prolong the new owner's lock.

Because all state lives in Redis, the mutex excludes threads, processes and
hosts alike::

    with Mutex(redis_client, "migrate"):
        run_migrations()
"""

from __future__ import annotations

import secrets
import time
from types import TracebackType
from typing import Any

__all__ = ["Mutex"]

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _ms(seconds: float) -> int:
    """Convert seconds to a positive number of milliseconds."""
    return max(1, int(round(seconds * 1000)))


class Mutex:
    """A named lock shared through Redis.

    ``ttl`` bounds how long the lock survives without :meth:`extend`;
    :meth:`acquire` polls every ``poll`` seconds for at most ``max_wait``
    seconds before raising :class:`TimeoutError`.  One instance represents
    one holder: do not share an instance between concurrently locking threads.
    """

    def __init__(
        self,
        redis_client: Any,
        name: str,
        ttl: float = 10.0,
        max_wait: float = 30.0,
        poll: float = 0.05,
    ) -> None:
        """Prepare (but do not take) the lock ``mutex:<name>``."""
        if not name:
            raise ValueError("mutex name must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_wait < 0 or poll <= 0:
            raise ValueError("max_wait must be >= 0 and poll > 0")
        self.redis = redis_client
        self.name = name
        self.key = f"mutex:{name}"
        self.ttl = float(ttl)
        self.max_wait = float(max_wait)
        self.poll = float(poll)
        self._token: bytes | None = None
        self._release_script = redis_client.register_script(_RELEASE_LUA)
        self._extend_script = redis_client.register_script(_EXTEND_LUA)

    def _try_acquire(self, token: bytes) -> bool:
        return bool(self.redis.set(self.key, token, nx=True, px=_ms(self.ttl)))

    def acquire(self) -> bool:
        """Take the lock, waiting up to ``max_wait`` seconds.

        Returns True; raises :class:`TimeoutError` if the lock stays taken.
        """
        token = secrets.token_hex(16).encode("ascii")
        deadline = time.monotonic() + self.max_wait
        while True:
            if self._try_acquire(token):
                self._token = token
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"could not acquire mutex {self.name!r} within {self.max_wait:g}s"
                )
            time.sleep(min(self.poll, remaining))

    def release(self) -> bool:
        """Release the lock if we still own it; return True if it was released."""
        token, self._token = self._token, None
        if token is None:
            return False
        return bool(self._release_script(keys=[self.key], args=[token]))

    def extend(self, ttl: float | None = None) -> bool:
        """Reset the lock's TTL to ``ttl`` (default: the original ttl) if still owner."""
        if self._token is None:
            return False
        ms = _ms(self.ttl if ttl is None else ttl)
        return bool(self._extend_script(keys=[self.key], args=[self._token, ms]))

    def locked(self) -> bool:
        """True if anyone currently holds the lock."""
        return bool(self.redis.exists(self.key))

    @property
    def owned(self) -> bool:
        """True if this instance holds the lock according to Redis."""
        if self._token is None:
            return False
        value = self.redis.get(self.key)
        if isinstance(value, str):
            value = value.encode("ascii", "replace")
        return value == self._token

    def __enter__(self) -> Mutex:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Mutex {self.key!r} held={self._token is not None}>"
