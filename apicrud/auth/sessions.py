"""Server-side login sessions stored encrypted in Redis.

A session token is ``secrets.token_urlsafe(32)`` and is only ever given to the
client.  Redis stores, under ``<prefix>:session:<sha256(token)>``, the session
JSON encrypted with ``AESEncrypt(secret, context="session")``; a leaked Redis
dump therefore reveals neither the tokens nor the session contents.  Each
user's hashed keys are also kept in the set ``<prefix>:sessions:<uid>`` so
that :meth:`SessionManager.delete_all` can log a user out everywhere.

Malformed tokens and undecryptable or corrupt stored values read as "no
session".  Redis failures (``redis.exceptions.ConnectionError`` etc.) are not
swallowed: callers map them to 503.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from apicrud.crypto import AESEncrypt, DecryptError, token_hash

__all__ = ["SessionManager"]

# token_urlsafe(32) yields 43 chars; accept a generous range of the same alphabet.
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_TOKEN_MIN, _TOKEN_MAX = 16, 256
_RESERVED = ("uid", "account_id", "created", "expires")

# Overwrite the value only if the key still exists, keeping its TTL
# (SET ... KEEPTTL needs Redis >= 6.0; XX avoids resurrecting an expired key).
_UPDATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('SET', KEYS[1], ARGV[1], 'XX', 'KEEPTTL')
    return 1
end
return 0
"""

# Drop members of a user's session set whose session key no longer exists.
_PRUNE_LUA = """
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', ARGV[1] .. h) == 0 then
        redis.call('SREM', KEYS[1], h)
    end
end
return redis.call('SCARD', KEYS[1])
"""

# Atomically delete every session listed in a user's set, then the set itself.
_DELETE_ALL_LUA = """
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    n = n + redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
return n
"""


def _valid_token(token: Any) -> bool:
    return (
        isinstance(token, str)
        and _TOKEN_MIN <= len(token) <= _TOKEN_MAX
        and all(c in _TOKEN_ALPHABET for c in token)
    )


class SessionManager:
    """Create, read, update and revoke encrypted sessions in Redis."""

    def __init__(
        self, redis_client: Any, secret: str, ttl: int = 86400, prefix: str = "apicrud"
    ) -> None:
        """``ttl`` is the session lifetime in seconds; ``prefix`` namespaces the keys."""
        if int(ttl) <= 0:
            raise ValueError("session ttl must be positive")
        self.redis = redis_client
        self.ttl = int(ttl)
        self.prefix = prefix
        self._cipher = AESEncrypt(secret, context="session")
        self._update_script = redis_client.register_script(_UPDATE_LUA)
        self._prune_script = redis_client.register_script(_PRUNE_LUA)
        self._delete_all_script = redis_client.register_script(_DELETE_ALL_LUA)

    # -- key helpers -------------------------------------------------------
    def _hashed(self, token: str) -> str:
        return token_hash(token)

    def _session_key(self, hashed: str) -> str:
        return f"{self._session_prefix}{hashed}"

    @property
    def _session_prefix(self) -> str:
        return f"{self.prefix}:session:"

    def _user_key(self, uid: str) -> str:
        return f"{self.prefix}:sessions:{uid}"

    def _encode(self, session: dict[str, Any]) -> bytes:
        return self._cipher.encrypt(json.dumps(session, separators=(",", ":"), default=str))

    def _decode(self, raw: Any) -> dict[str, Any] | None:
        if raw is None:
            return None
        if isinstance(raw, str):  # client with decode_responses=True cannot hold ciphertext
            return None
        try:
            session = json.loads(self._cipher.decrypt(raw))
        except (DecryptError, ValueError):
            return None
        if not isinstance(session, dict) or "uid" not in session:
            return None
        return session

    # -- public API --------------------------------------------------------
    def create(self, uid: str, account_id: str, **data: Any) -> tuple[str, int]:
        """Start a session; return ``(token, expires)`` with expiry in epoch seconds."""
        for name in _RESERVED:
            if name in data:
                raise ValueError(f"session field {name!r} is reserved")
        token = secrets.token_urlsafe(32)
        hashed = self._hashed(token)
        now = int(time.time())
        expires = now + self.ttl
        session = {
            **data,
            "uid": uid,
            "account_id": account_id,
            "created": now,
            "expires": expires,
        }
        user_key = self._user_key(uid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._session_key(hashed), self._encode(session), ex=self.ttl)
        pipe.sadd(user_key, hashed)
        pipe.expire(user_key, self.ttl)
        self._prune_script(keys=[user_key], args=[self._session_prefix], client=pipe)
        pipe.execute()
        return token, expires

    def get(self, token: str) -> dict[str, Any] | None:
        """Return the session for ``token``, or None if absent/expired/invalid."""
        if not _valid_token(token):
            return None
        session = self._decode(self.redis.get(self._session_key(self._hashed(token))))
        if session is None:
            return None
        expires = session.get("expires")
        if isinstance(expires, (int, float)) and expires < time.time():
            return None
        return session

    def update(self, token: str, **data: Any) -> dict[str, Any] | None:
        """Merge ``data`` into the session, keeping its TTL.

        Returns the updated session, or None if there is no valid session.
        """
        for name in _RESERVED:
            if name in data:
                raise ValueError(f"session field {name!r} is reserved")
        session = self.get(token)
        if session is None:
            return None
        session.update(data)
        key = self._session_key(self._hashed(token))
        if not self._update_script(keys=[key], args=[self._encode(session)]):
            return None
        return session

    def delete(self, token: str) -> bool:
        """Revoke one session; True if it existed."""
        if not _valid_token(token):
            return False
        hashed = self._hashed(token)
        key = self._session_key(hashed)
        session = self._decode(self.redis.get(key))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if session is not None:
            pipe.srem(self._user_key(str(session["uid"])), hashed)
        return bool(pipe.execute()[0])

    def delete_all(self, uid: str) -> int:
        """Revoke every session of ``uid`` (log out everywhere); return how many existed."""
        return int(
            self._delete_all_script(keys=[self._user_key(uid)], args=[self._session_prefix])
        )
