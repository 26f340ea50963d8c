"""One-time tokens for account confirmation and password reset, kept in Redis.

A token is ``secrets.token_urlsafe(32)`` (256 bits) and is only ever given to its user
(in a message). Redis keeps, under ``<prefix>:otk:<purpose>:<sha256(token)>``, the
subject it was issued for (an account id) with the token's TTL, so a Redis dump reveals
no usable token. A second key, ``<prefix>:otk:<purpose>:for:<subject>``, points at the
subject's newest token: issuing a new token revokes the previous one of that purpose,
and consuming a token drops the pointer.

:meth:`OneTimeTokens.consume` reads and deletes in one Lua script, so of two concurrent
requests with the same token exactly one gets the subject. Redis errors are not
swallowed: callers map them to 503.
"""

from __future__ import annotations

import secrets
from typing import Any

from apicrud import redis_keys
from apicrud.crypto import token_hash

__all__ = ["OneTimeTokens"]

_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_MIN_LEN, _MAX_LEN = 32, 128

# KEYS: token key, subject pointer; ARGV: subject, hashed token, ttl.
# Drop the subject's previous token, then store the new one and the pointer.
_ISSUE_LUA = """
local old = redis.call('GET', KEYS[2])
if old then
    redis.call('DEL', ARGV[4] .. old)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

# KEYS: token key; ARGV: pointer prefix, hashed token.
# Read and delete the token; drop the subject's pointer if it still names this token.
_CONSUME_LUA = """
local subject = redis.call('GET', KEYS[1])
if not subject then
    return false
end
redis.call('DEL', KEYS[1])
local pointer = ARGV[1] .. subject
if redis.call('GET', pointer) == ARGV[2] then
    redis.call('DEL', pointer)
end
return subject
"""


def _valid(token: Any) -> bool:
    return (isinstance(token, str) and _MIN_LEN <= len(token) <= _MAX_LEN
            and all(c in _ALPHABET for c in token))


class OneTimeTokens:
    """Issue, look up and consume single-use tokens; one outstanding token per purpose."""

    def __init__(self, redis_client: Any, ttl: int, prefix: str = redis_keys.NAMESPACE) -> None:
        """``ttl``: seconds a token stays valid; ``prefix`` namespaces the Redis keys."""
        if int(ttl) <= 0:
            raise ValueError("token ttl must be positive")
        self.redis = redis_client
        self.ttl = int(ttl)
        self.prefix = prefix
        self._issue = redis_client.register_script(_ISSUE_LUA)
        self._consume = redis_client.register_script(_CONSUME_LUA)

    def _base(self, purpose: str) -> str:
        if not purpose or ":" in purpose:
            raise ValueError("purpose must be a non-empty name without ':'")
        return f"{self.prefix}:otk:{purpose}:"

    def issue(self, purpose: str, subject: str, ttl: int | None = None) -> str:
        """A new token for ``subject``; the subject's previous ``purpose`` token stops working."""
        if not subject:
            raise ValueError("subject must not be empty")
        base = self._base(purpose)
        token = secrets.token_urlsafe(32)
        hashed = token_hash(token)
        self._issue(keys=[base + hashed, f"{base}for:{subject}"],
                    args=[subject, hashed, int(ttl or self.ttl), base])
        return token

    def peek(self, purpose: str, token: str) -> str | None:
        """The subject of a valid token without using it up (to check input first)."""
        if not _valid(token):
            return None
        value = self.redis.get(self._base(purpose) + token_hash(token))
        return value.decode() if isinstance(value, bytes) else value

    def consume(self, purpose: str, token: str) -> str | None:
        """Use the token up: its subject, or None if it is unknown, used or expired."""
        if not _valid(token):
            return None
        base = self._base(purpose)
        value = self._consume(keys=[base + token_hash(token)], args=[f"{base}for:",
                                                                     token_hash(token)])
        return value.decode() if isinstance(value, bytes) else value

    def revoke(self, purpose: str, subject: str) -> None:
        """Invalidate the subject's outstanding ``purpose`` token, if any."""
        base = self._base(purpose)
        pointer = f"{base}for:{subject}"
        hashed = self.redis.get(pointer)
        if hashed:
            hashed = hashed.decode() if isinstance(hashed, bytes) else hashed
            self.redis.delete(base + hashed, pointer)
