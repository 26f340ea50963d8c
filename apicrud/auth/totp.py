"""TOTP second factor (RFC 6238 over RFC 4226 HOTP), backup codes, and ``/auth/totp``.

The algorithm is the one every authenticator app implements: HMAC-SHA1 over the number
of 30-second steps since the epoch, dynamically truncated to 6 digits. It is written
out here with :mod:`hmac` and :mod:`hashlib` (a few lines; no extra dependency).

Life of a second factor:

1. ``POST /auth/totp`` (enrol): a fresh 160-bit secret, returned once in base32 and as
   an ``otpauth://`` URI (for a QR code); stored encrypted with
   ``AESEncryptBin(secret_key, context="totp")``; not yet required at login.
2. ``PUT /auth/totp {"code"}`` (confirm): a first valid code switches it on and returns
   10 backup codes, once. Only keyed hashes of them are kept (HMAC-SHA256 under a key
   derived from ``secret_key``: 40 random bits each are too few to store as plain
   SHA-256, and argon2 would make a login check ten slow hashes).
3. ``POST /auth {"username", "password", "otp"}``: with the factor on, a missing or
   wrong ``otp`` is a 401 whose problem ``type`` ends in ``mfa-required``; ``otp`` is a
   current code or an unused backup code (then used up).
4. ``DELETE /auth/totp {"code"}``: a current code or a backup code switches it off.

A code is accepted one step either side of now (clock drift) and only once: each used
step is remembered in Redis for the length of the window, so a code seen by someone
looking over a shoulder cannot be replayed. Turning the factor on ends the account's
other login sessions (the one that confirmed it stays). Wrong codes at these endpoints
count against the same limits as failed logins (``login_attempts_max`` per
``login_lockout_interval``), so six digits cannot be guessed by brute force. Managing
the factor needs a login session: an API key (a credential left in scripts) must not be
able to lock its owner out by enrolling a device the owner does not have.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import struct
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from apicrud import redis_keys
from apicrud.context import Reply, RequestContext
from apicrud.crypto import AESEncryptBin, DecryptError, derive_key
from apicrud.errors import (
    Conflict,
    Forbidden,
    Problem,
    TooManyRequests,
    Unauthorized,
    ValidationProblem,
)
from apicrud.i18n import N_

if TYPE_CHECKING:
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services

__all__ = ["hotp", "totp", "match", "TotpController", "check_second_factor",
           "mfa_required", "new_secret"]

log = logging.getLogger("apicrud.auth")

STEP = 30  # seconds per code
DIGITS = 6
WINDOW = 1  # steps accepted either side of now
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends for HMAC-SHA1
BACKUP_CODES = 10

# KEYS: failure counter; ARGV: limit, ttl. Count first; past the limit give the place
# back and answer the seconds left (0: go on).
_ATTEMPT_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if n > tonumber(ARGV[1]) then
    redis.call('DECR', KEYS[1])
    local left = redis.call('TTL', KEYS[1])
    if left < 1 then
        left = 1
    end
    return left
end
return 0
"""
# KEYS: failure counter. Give back the place of an attempt that passed.
_RELEASE_LUA = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    redis.call('DECR', KEYS[1])
end
return 1
"""


# -- the algorithm ----------------------------------------------------------------------

def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 HOTP value of ``counter`` under ``key``, zero-padded to ``digits``."""
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def totp(key: bytes, at: float | None = None, step: int = STEP, digits: int = DIGITS) -> str:
    """RFC 6238 TOTP value for time ``at`` (default now)."""
    return hotp(key, int((time.time() if at is None else at) // step), digits)


def match(key: bytes, code: str, at: float | None = None, window: int = WINDOW,
          step: int = STEP, digits: int = DIGITS) -> int | None:
    """The time step whose code equals ``code`` (within ``window`` steps), else None.

    Every candidate is compared, in constant time, so the answer's timing does not say
    which step matched.
    """
    if not isinstance(code, str) or len(code) != digits or not code.isdigit():
        return None
    now = int((time.time() if at is None else at) // step)
    found = None
    for counter in range(now - window, now + window + 1):
        if hmac.compare_digest(hotp(key, counter, digits), code) and found is None:
            found = counter
    return found


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def b32(key: bytes) -> str:
    """Base32 without padding: what authenticator apps expect to be typed in."""
    return base64.b32encode(key).decode("ascii").rstrip("=")


def otpauth_uri(key: bytes, username: str, issuer: str) -> str:
    """Key URI (Google Authenticator format) that authenticator apps read from a QR code."""
    label = quote(f"{issuer}:{username}", safe=":@")
    query = urlencode({"secret": b32(key), "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"


# -- storage helpers ----------------------------------------------------------------------

def _normalize_backup(code: str) -> str:
    return "".join(c for c in code.lower() if c.isalnum())


class SecondFactor:
    """The TOTP state of accounts: encryption, backup-code hashes, replay and guess guards."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.redis = services.redis.client
        secret = services.settings.secret_key
        self.cipher = AESEncryptBin(secret, context="totp")
        self._mac_key = derive_key(secret, b"apicrud totp backup codes")
        self._attempt = self.redis.register_script(_ATTEMPT_LUA)
        self._release = self.redis.register_script(_RELEASE_LUA)

    # secrets
    def seal(self, key: bytes) -> bytes:
        return self.cipher.encrypt(key)

    def unseal(self, blob: bytes | None) -> bytes | None:
        if not blob:
            return None
        try:
            return self.cipher.decrypt(bytes(blob))
        except DecryptError:  # secret_key rotated: the factor must be enrolled again
            log.error("a TOTP secret cannot be decrypted (was secret_key changed?)")
            return None

    # backup codes
    def backup_hash(self, account_id: str, code: str) -> str:
        msg = f"{account_id}:{_normalize_backup(code)}".encode()
        return hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    def new_backup_codes(self, account_id: str) -> tuple[list[str], str]:
        """(codes to show once, JSON list of their hashes to store)."""
        codes = []
        for _ in range(BACKUP_CODES):
            raw = secrets.token_hex(5)  # 40 bits
            codes.append(f"{raw[:5]}-{raw[5:]}")
        return codes, json.dumps([self.backup_hash(account_id, c) for c in codes])

    def _once(self, account_id: str, what: str, ttl: int) -> bool:
        """True the first time ``what`` is used for this account (within ``ttl``)."""
        key = redis_keys.key("totp", "used", account_id, what)
        return bool(self.redis.set(key, b"1", nx=True, ex=ttl))

    # checks
    def check_code(self, account: Any, code: str) -> bool:
        """A current, not yet used TOTP code of the account's (possibly pending) secret."""
        key = self.unseal(account.totp_secret)
        if key is None:
            return False
        counter = match(key, code.strip())
        if counter is None:
            return False
        # a step is accepted at most 2 * WINDOW steps later; remember it that long, per
        # secret (a new secret enrolled within that time starts afresh)
        which = hmac.new(self._mac_key, key, hashlib.sha256).hexdigest()[:16]
        return self._once(account.id, f"step:{which}:{counter}", STEP * (2 * WINDOW + 2))

    def use_backup_code(self, account: Any, code: str) -> bool:
        """Consume an unused backup code (the account row is changed in its session)."""
        if not account.backup_codes or len(code) > 32:
            return False
        try:
            stored = json.loads(account.backup_codes)
        except ValueError:
            return False
        wanted = self.backup_hash(account.id, code)
        hit = None
        for h in stored:
            if hmac.compare_digest(str(h), wanted) and hit is None:
                hit = h
        # Redis guard: two concurrent logins must not both spend the same code
        if hit is None or not self._once(account.id, f"backup:{hit}", 86400):
            return False
        stored.remove(hit)
        account.backup_codes = json.dumps(stored)
        return True

    def check(self, account: Any, otp: str) -> bool:
        """A login's ``otp``: a current code, or else an unused backup code."""
        otp = (otp or "").strip()
        if len(otp) == DIGITS and otp.isdigit():
            return self.check_code(account, otp)
        return self.use_backup_code(account, otp)

    # guessing limits for the /auth/totp endpoints (logins have their own lockout)
    def _failures_key(self, account_id: str) -> str:
        return redis_keys.key("totp", "failures", account_id)

    def guard(self, account_id: str) -> None:
        """Count an attempt before its code is checked (atomic: parallel wrong codes
        cannot all pass), or 429 past ``login_attempts_max``; :meth:`passed` gives the
        place back when the code was right."""
        settings = self.services.settings
        key = self._failures_key(account_id)
        wait = int(self._attempt(keys=[key], args=[settings.login_attempts_max,
                                                   settings.login_lockout_interval]))
        if wait:
            raise TooManyRequests(N_("too many wrong codes; try again later"),
                                  headers={"Retry-After": str(wait)})

    def passed(self, account_id: str) -> None:
        self._release(keys=[self._failures_key(account_id)])


def mfa_required(detail: str = N_("this account needs a one-time code: send otp")
                 ) -> Problem:
    """401 whose problem type ends in ``mfa-required`` (CONTRACT 2)."""
    return Unauthorized(detail, slug="mfa-required", title=N_("One-Time Code Required"))


def check_second_factor(services: Services, account: Any, otp: str | None) -> bool:
    """For login: True when ``otp`` is a valid code or unused backup code of ``account``."""
    if not otp:
        return False
    return _factor(services).check(account, otp)


def _factor(services: Services) -> SecondFactor:
    if services.second_factor is None:
        services.second_factor = SecondFactor(services)
    return services.second_factor


# -- /auth/totp ---------------------------------------------------------------------------

class TotpController:
    """``/auth/totp``: status (GET), enrol (POST), confirm (PUT), disable (DELETE)."""

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        self.services = services
        self.factor = _factor(services)

    def _account(self, ctx: RequestContext) -> Any:
        principal = ctx.principal
        if not principal.authenticated or not principal.account_id:
            raise Unauthorized()
        if principal.method == "apikey":
            raise Forbidden(N_("the second factor is managed with a login session, not an API key"))
        account = ctx.db.get(self.services.models.Account, principal.account_id)
        if account is None or account.status != "active":
            raise Unauthorized(N_("invalid or expired credentials"))
        return account

    def _code(self, ctx: RequestContext, account: Any, backup_ok: bool) -> None:
        """Raise unless the body's ``code`` is valid; wrong ones count toward a lockout."""
        self.factor.guard(account.id)
        code = str((ctx.body or {}).get("code", ""))
        ok = self.factor.check(account, code) if backup_ok else \
            self.factor.check_code(account, code)
        if not ok:  # the attempt stays counted
            raise ValidationProblem({"code": N_("is not a valid current code")})
        self.factor.passed(account.id)

    def status(self, ctx: RequestContext) -> Reply:
        account = self._account(ctx)
        left = len(json.loads(account.backup_codes)) if account.backup_codes else 0
        return Reply({"enabled": bool(account.totp_enabled),
                      "pending": bool(account.totp_secret) and not account.totp_enabled,
                      "backup_codes_left": left}, 200)

    def enrol(self, ctx: RequestContext) -> Reply:
        account = self._account(ctx)
        if account.totp_enabled:
            raise Conflict(N_("a second factor is already enabled; disable it first"))
        key = new_secret()
        account.totp_secret = self.factor.seal(key)
        account.backup_codes = None
        log.info("totp enrolment started", extra={"event": "totp_enrol", "uid": account.uid})
        issuer = self.services.settings.totp_issuer
        return Reply({"secret": b32(key), "uri": otpauth_uri(key, account.name, issuer),
                      "algorithm": "SHA1", "digits": DIGITS, "period": STEP}, 200,
                     {"Cache-Control": "no-store"})

    def confirm(self, ctx: RequestContext) -> Reply:
        account = self._account(ctx)
        if account.totp_enabled:
            raise Conflict(N_("the second factor is already enabled"))
        if not account.totp_secret:
            raise Conflict(N_("nothing to confirm: enrol first (POST /auth/totp)"))
        self._code(ctx, account, backup_ok=False)
        codes, hashes = self.factor.new_backup_codes(account.id)
        account.totp_enabled = True
        account.backup_codes = hashes
        # sessions opened with the password alone end; this one stays (it proved a code)
        token = ctx.principal.token
        ctx.after_commit.append(
            lambda: self.services.sessions.delete_all(account.uid, keep=token))
        ended = self.services.sessions.delete_all(account.uid, keep=token)
        log.info("totp enabled", extra={"event": "totp_enabled", "uid": account.uid,
                                        "sessions_ended": ended})
        return Reply({"enabled": True, "backup_codes": codes}, 200,
                     {"Cache-Control": "no-store"})

    def disable(self, ctx: RequestContext) -> Reply:
        account = self._account(ctx)
        if not account.totp_enabled and not account.totp_secret:
            raise Conflict(N_("no second factor is enabled"))
        self._code(ctx, account, backup_ok=True)
        account.totp_enabled = False
        account.totp_secret = None
        account.backup_codes = None
        log.info("totp disabled", extra={"event": "totp_disabled", "uid": account.uid})
        return Reply({"enabled": False, "pending": False, "backup_codes_left": 0}, 200)
