"""Distributed mutex backed by Redis: redis-py's ``Lock`` under apicrud's key namespace.

The lock is the key ``apicrud:mutex:<name>`` holding a random owner token, set with
``NX`` and a TTL so that a crashed holder cannot block others forever; redis-py releases
and extends it by Lua scripts that act only while the stored token is still ours, so a
holder whose lock expired (and was taken by someone else) never releases or prolongs the
new owner's lock. All state lives in Redis: the mutex excludes threads, processes and
hosts alike::

    with Mutex(redis_client, "migrate"):
        run_migrations()

This class adds what apicrud's callers want on top of ``Lock``: a :class:`TimeoutError`
naming the mutex when it stays taken, a release that says whether it was still held
(instead of raising), and the namespaced key.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from redis.exceptions import LockError
from redis.lock import Lock

from apicrud import redis_keys

__all__ = ["Mutex"]


class Mutex:
    """A named lock shared through Redis.

    ``ttl`` bounds how long the lock survives without :meth:`extend`;
    :meth:`acquire` polls every ``poll`` seconds for at most ``max_wait``
    seconds before raising :class:`TimeoutError`.  One instance represents
    one holder: do not share an instance between concurrently locking threads.
    """

    def __init__(self, redis_client: Any, name: str, ttl: float = 10.0,
                 max_wait: float = 30.0, poll: float = 0.05) -> None:
        """Prepare (but do not take) the lock ``apicrud:mutex:<name>``."""
        if not name:
            raise ValueError("mutex name must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if max_wait < 0 or poll <= 0:
            raise ValueError("max_wait must be >= 0 and poll > 0")
        self.name = name
        self.key = redis_keys.key("mutex", name)
        self.ttl = float(ttl)
        self.max_wait = float(max_wait)
        # thread_local=False: the token belongs to this object, whichever thread
        # releases it (a holder may hand the release to a finally in another frame)
        self._lock = Lock(redis_client, self.key, timeout=self.ttl, sleep=float(poll),
                          blocking_timeout=self.max_wait, thread_local=False)

    def acquire(self) -> bool:
        """Take the lock, waiting up to ``max_wait`` seconds.

        Returns True; raises :class:`TimeoutError` if the lock stays taken.
        """
        if not self._lock.acquire(blocking=self.max_wait > 0,
                                  blocking_timeout=self.max_wait or None):
            raise TimeoutError(f"could not acquire mutex {self.name!r} within "
                               f"{self.max_wait:g}s")
        return True

    def release(self) -> bool:
        """Release the lock if we still own it; return True if it was released."""
        try:
            self._lock.release()
        except LockError:  # never taken, already released, or expired and taken by another
            return False
        return True

    def extend(self, ttl: float | None = None) -> bool:
        """Reset the lock's TTL to ``ttl`` (default: the original ttl) if still owner."""
        try:
            return bool(self._lock.extend(self.ttl if ttl is None else ttl,
                                          replace_ttl=True))
        except LockError:
            return False

    def locked(self) -> bool:
        """True if anyone currently holds the lock."""
        return bool(self._lock.locked())

    @property
    def owned(self) -> bool:
        """True if this instance holds the lock according to Redis."""
        return bool(self._lock.owned())

    def __enter__(self) -> Mutex:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Mutex {self.key!r} held={self.owned}>"
