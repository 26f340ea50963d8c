"""Server-side login sessions stored encrypted in Redis.

A session token is ``secrets.token_urlsafe(32)`` and is only ever given to the
client.  Redis stores, under ``<prefix>:session:<sha256(token)>``, the session
JSON encrypted with ``AESEncrypt(secret, context="session")``; a leaked Redis
dump therefore reveals neither the tokens nor the session contents.  Each
user's hashed keys are also kept in the set ``<prefix>:sessions:<uid>`` so
that :meth:`SessionManager.delete_all` can log a user out everywhere.

Expiry is ``fixed`` (a session ends ``ttl`` seconds after login) or ``sliding`` (each
use pushes the end to ``ttl`` seconds from now, never past ``max_lifetime`` after
login). A sliding session is rewritten only once more than half of its ``ttl`` has
passed, so most requests cost one GET, as with fixed expiry. ``limit`` caps the
sessions of one user: the session closest to its end (the oldest under fixed expiry,
the least recently used under sliding expiry) is ended when a new one would exceed it.

:meth:`SessionManager.lookup` reads other keys in the session's own round trip (one MGET):
the caller's membership roles, whose key is made from the uid inside the encrypted
session. The uid of a hashed token is remembered in the process (a token's session
never changes user) once it has been read or created here, and the keys are only
answered when the session just read names that very uid: the session and the other
keys are still read from Redis on every request, so a revoked session or a dropped
cache shows on the very next request, whichever process served the earlier ones.

Malformed tokens and undecryptable or corrupt stored values read as "no
session".  Redis failures (``redis.exceptions.ConnectionError`` etc.) are not
swallowed: callers map them to 503.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from apicrud import redis_keys
from apicrud.crypto import AESEncrypt, DecryptError, token_hash

__all__ = ["SessionManager"]

# token_urlsafe(32) yields 43 chars; accept a generous range of the same alphabet.
_TOKEN_MIN, _TOKEN_MAX = 16, 256
_TOKEN_RE = re.compile(f"[A-Za-z0-9_-]{{{_TOKEN_MIN},{_TOKEN_MAX}}}")
#: hashed tokens whose uid the process remembers (see :meth:`SessionManager.lookup`);
#: past this many the memory starts again empty
_UIDS_KEPT = 10_000
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

# Store a new session, add it to its user's set, drop members whose session is gone,
# then end the sessions nearest their end while the user holds more than ARGV[5]
# (0: no limit). KEYS: session key, user set; ARGV: value, ttl, hashed token, key
# prefix, limit. Returns the number of sessions ended.
_CREATE_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[4] .. h) == 0 then
        redis.call('SREM', KEYS[2], h)
    end
end
local limit = tonumber(ARGV[5])
local ended = 0
while limit > 0 and redis.call('SCARD', KEYS[2]) > limit do
    local victim, least = nil, nil
    for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do
        local left = redis.call('PTTL', ARGV[4] .. h)
        if h ~= ARGV[3] and (least == nil or left < least) then
            victim, least = h, left
        end
    end
    if victim == nil then break end
    redis.call('DEL', ARGV[4] .. victim)
    redis.call('SREM', KEYS[2], victim)
    ended = ended + 1
end
return ended
"""

# Rewrite a live session with a new TTL (sliding expiry) and keep its user's set alive
# at least as long. KEYS: session key, user set; ARGV: value, ttl, user set ttl.
_REFRESH_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('SET', KEYS[1], ARGV[1], 'XX', 'EX', ARGV[2])
    redis.call('EXPIRE', KEYS[2], ARGV[3])
    return 1
end
return 0
"""

# Atomically delete every session listed in a user's set but the one hashed ARGV[2]
# ("" keeps none), then the set itself (or all of it but that one).
_DELETE_ALL_LUA = """
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if h ~= ARGV[2] then
        n = n + redis.call('DEL', ARGV[1] .. h)
        redis.call('SREM', KEYS[1], h)
    end
end
if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
end
return n
"""


def _valid_token(token: Any) -> bool:
    return isinstance(token, str) and _TOKEN_RE.fullmatch(token) is not None


class SessionManager:
    """Create, read, update and revoke encrypted sessions in Redis."""

    def __init__(
        self, redis_client: Any, secret: str, ttl: int = 86400, prefix: str = redis_keys.NAMESPACE,
        *, expiry: str = "fixed", limit: int = 0, max_lifetime: int = 0,
    ) -> None:
        """``ttl`` is the session lifetime in seconds; ``prefix`` namespaces the keys.

        :param expiry: ``fixed`` or ``sliding`` (see the module docstring)
        :param limit: most sessions one user may hold at once; 0 means no limit
        :param max_lifetime: sliding sessions end this many seconds after login at the
            latest; 0 means no such bound
        """
        if int(ttl) <= 0:
            raise ValueError("session ttl must be positive")
        if expiry not in ("fixed", "sliding"):
            raise ValueError("session expiry must be 'fixed' or 'sliding'")
        self.redis = redis_client
        self.ttl = int(ttl)
        self.prefix = prefix
        self.expiry = expiry
        self.limit = max(int(limit), 0)
        self.max_lifetime = max(int(max_lifetime), 0)
        self._cipher = AESEncrypt(secret, context="session")
        self._create_script = redis_client.register_script(_CREATE_LUA)
        self._refresh_script = redis_client.register_script(_REFRESH_LUA)
        self._update_script = redis_client.register_script(_UPDATE_LUA)
        self._delete_all_script = redis_client.register_script(_DELETE_ALL_LUA)
        self._uids: dict[str, str] = {}  # hashed token -> the uid of its session

    def _remember(self, hashed: str, uid: Any) -> None:
        if isinstance(uid, str) and self._uids.get(hashed) != uid:
            if len(self._uids) >= _UIDS_KEPT:
                self._uids.clear()
            self._uids[hashed] = uid

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
        token = secrets.token_urlsafe(32)  # 256 bits
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
        self._create_script(
            keys=[self._session_key(hashed), self._user_key(uid)],
            args=[self._encode(session), self.ttl, hashed, self._session_prefix, self.limit])
        self._remember(hashed, uid)
        return token, expires

    def get(self, token: str) -> dict[str, Any] | None:
        """Return the session for ``token``, or None if absent/expired/invalid."""
        return self.lookup(token)[0]

    def lookup(self, token: str, keys_of: Callable[[str], list[str]] | None = None
               ) -> tuple[dict[str, Any] | None, list[Any] | None]:
        """(the session for ``token`` or None, the replies to ``keys_of(uid)`` for its
        user, read in the same round trip as the session, or None when they were not).

        They are read when the process knows the token's uid already (it created or
        read this session before), and answered only when the session read names that
        uid; else the caller reads them itself."""
        if not _valid_token(token):
            return None, None
        hashed = self._hashed(token)
        key = self._session_key(hashed)
        uid = self._uids.get(hashed) if keys_of is not None else None
        more = keys_of(uid) if keys_of is not None and uid is not None else None
        if more:
            raw, *extra = self.redis.mget([key, *more])
        else:
            raw, extra = self.redis.get(key), None
        session = self._decode(raw)
        if session is None:
            self._uids.pop(hashed, None)
            return None, None
        expires = session.get("expires")
        now = time.time()
        if isinstance(expires, (int, float)) and expires < now:
            return None, None
        if session["uid"] != uid:
            extra = None  # read for another uid (never for a live token): not its user's
            if keys_of is not None:
                self._remember(hashed, session["uid"])
        if self.expiry == "sliding" and isinstance(expires, (int, float)):
            self._slide(token, session, expires, now)
        return session, extra

    def _slide(self, token: str, session: dict[str, Any], expires: float, now: float) -> None:
        """Push a sliding session's end to now + ttl once half of its ttl has passed."""
        if expires - now > self.ttl / 2:
            return
        new_end = int(now) + self.ttl
        created = session.get("created")
        if self.max_lifetime and isinstance(created, (int, float)):
            new_end = min(new_end, int(created) + self.max_lifetime)
        if new_end <= expires:
            return  # at its maximum lifetime: it ends as planned
        session["expires"] = new_end
        key = self._session_key(self._hashed(token))
        self._refresh_script(keys=[key, self._user_key(str(session["uid"]))],
                             args=[self._encode(session), max(new_end - int(now), 1),
                                   self.ttl])

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
        self._uids.pop(hashed, None)
        session = self._decode(self.redis.get(key))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if session is not None:
            pipe.srem(self._user_key(str(session["uid"])), hashed)
        return bool(pipe.execute()[0])

    def delete_all(self, uid: str, keep: str | None = None) -> int:
        """Revoke every session of ``uid`` (log out everywhere) except the session of the
        token ``keep``, if given; return how many were ended."""
        kept = self._hashed(keep) if keep and _valid_token(keep) else ""
        return int(
            self._delete_all_script(keys=[self._user_key(uid)],
                                    args=[self._session_prefix, kept])
        )
