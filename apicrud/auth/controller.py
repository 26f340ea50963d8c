"""``/auth``: log in (POST), who am I (GET), log out (DELETE).

Guessing protection without a lockout of other people. Every login attempt is counted
in Redis before its password is checked (one Lua script: increment, then compare), so
parallel attempts cannot all pass a read-then-increment check. Two counters hold for
``login_lockout_interval`` seconds from the first attempt they count:

- per (account name, client address): ``login_attempts_max`` failures, then 429 from
  that address (an attacker at one address cannot lock the owner out from another);
- per account name, from every address together: ten times ``login_attempts_max``
  (``ACCOUNT_CEILING``), the bound on distributed guessing; past it the name is locked
  for everyone until the interval ends.

An attempt that does not fail (a success, or the first step of a login with a second
factor) gives its place back; a success also clears its address's counter. The client
address is the one the rate limits use (``X-Forwarded-For`` only from
``trusted_proxies``). Unknown names are counted like known ones.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from apicrud import redis_keys
from apicrud.access.explain import can_i
from apicrud.auth.cutoff import PERSON_LIVE
from apicrud.auth.passwords import hash_password, needs_rehash, verify_password
from apicrud.auth.totp import check_second_factor, mfa_required
from apicrud.context import Reply, RequestContext
from apicrud.crypto import token_hash
from apicrud.db.base import utcnow
from apicrud.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized, required
from apicrud.i18n import N_, text_of

if TYPE_CHECKING:
    from apicrud.audit.trail import AuditTrail
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services

log = logging.getLogger("apicrud.auth")
LOGIN_STATES = ("active", "pending")
ACCOUNT_CEILING = 10  # times login_attempts_max: failures per account from all addresses

# KEYS: (name, address) counter, name counter; ARGV: their limits, ttl.
# Count the attempt first; past either limit, give the place back and answer the
# seconds until the counter that is over ends. Returns 0 when the attempt may go on.
_ATTEMPT_LUA = """
local wait = 0
for i = 1, 2 do
    local n = redis.call('INCR', KEYS[i])
    if n == 1 then
        redis.call('EXPIRE', KEYS[i], ARGV[3])
    end
    if n > tonumber(ARGV[i]) then
        local left = redis.call('TTL', KEYS[i])
        if left < 1 then
            left = 1
        end
        if left > wait then
            wait = left
        end
    end
end
if wait > 0 then
    redis.call('DECR', KEYS[1])
    redis.call('DECR', KEYS[2])
end
return wait
"""

# KEYS: as above; ARGV[1]: "1" to clear the address's counter (a success).
_RELEASE_LUA = """
if ARGV[1] == '1' then
    redis.call('DEL', KEYS[1])
elseif tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    redis.call('DECR', KEYS[1])
end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
    redis.call('DECR', KEYS[2])
end
return 1
"""


class AuthController:
    """Login sessions kept encrypted in Redis (see :class:`SessionManager`)."""

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        from apicrud.ratelimit.middleware import parse_networks

        self.services = services
        self.settings = services.settings
        self.trusted = parse_networks(services.settings.trusted_proxies)
        redis = services.redis.client
        self._attempt = redis.register_script(_ATTEMPT_LUA)
        self._release = redis.register_script(_RELEASE_LUA)

    def _lockout_keys(self, ctx: RequestContext, username: str) -> list[str]:
        from apicrud.ratelimit.middleware import client_address

        name = redis_keys.key("lockout", token_hash(username.lower()))
        addr = client_address(ctx.remote_addr, ctx.headers.get("X-Forwarded-For"),
                              self.trusted)
        return [f"{name}:{token_hash(addr)}", name]

    def reserve(self, ctx: RequestContext, username: str) -> list[str]:
        """Count this attempt, or 429 when its address or its account is locked out; the
        counters' keys, for :meth:`release`."""
        keys = self._lockout_keys(ctx, username)
        most = int(self.settings.login_attempts_max)
        wait = int(self._attempt(keys=keys, args=[most, most * ACCOUNT_CEILING,
                                                  int(self.settings.login_lockout_interval)]))
        if wait:
            log.warning("login locked out", extra={"event": "login_lockout"})
            raise TooManyRequests(N_("too many failed logins; try again later"),
                                  headers={"Retry-After": str(wait)})
        return keys

    def release(self, keys: list[str], succeeded: bool) -> None:
        """Take back the attempt :meth:`reserve` counted; a success also clears the
        address's failures."""
        self._release(keys=keys, args=["1" if succeeded else "0"])

    def login(self, ctx: RequestContext) -> Reply:
        body = ctx.body
        if body.get("method", "password") != "password":  # a directory checks it
            from apicrud.auth.external.ldap import ldap_login

            return ldap_login(self, ctx)
        if "password" not in self.settings.auth_methods:
            raise Forbidden(N_("password login is disabled; see GET /auth/methods"))
        username, password = body["username"], body["password"]
        keys = self.reserve(ctx, username)
        models = self.services.models
        account_model, person_model = models.Account, models.Person
        live = (account_model.status.in_(LOGIN_STATES), person_model.status.in_(PERSON_LIVE))
        account = ctx.db.execute(select(account_model).join(
            person_model, person_model.id == account_model.uid).where(
            account_model.name == username, *live)).scalar_one_or_none()
        # verify against a dummy hash when the user is unknown: same answer, similar time
        if not verify_password(account.password if account else None, password) or \
                account is None:  # (verify_password refuses None: never reached)
            log.info("login failed", extra={"event": "login_failed"})
            self._audit_failure(ctx, account)
            raise Unauthorized(N_("invalid username or password"))  # the attempt stays counted
        if account.totp_enabled:
            # no otp yet is the client's first step, not a failure; a wrong one counts
            # toward the lockout, or six digits could be guessed
            if not body.get("otp"):
                self.release(keys, succeeded=False)
                raise mfa_required()
            if not check_second_factor(self.services, account, body["otp"]):
                log.info("login failed: wrong one-time code",
                         extra={"event": "login_failed", "uid": account.uid})
                self._audit_failure(ctx, account, "password; wrong one-time code")
                raise mfa_required(N_("invalid or already used one-time code"))
        self.release(keys, succeeded=True)
        # a plain UPDATE, not the ORM's versioned one: two concurrent logins of one
        # account must not fail each other with a stale row version
        changes = {"last_login": utcnow(), "modified": account_model.modified}
        if needs_rehash(account.password):  # hashed with older parameters: upgrade it now
            changes["password"] = hash_password(password)
        ctx.db.execute(update(account_model).where(account_model.id == account.id)
                       .values(**changes))
        csrf = secrets.token_urlsafe(24)
        token, expires = self.services.sessions.create(
            account.uid, account.id, username=account.name, is_admin=account.is_admin,
            status=account.status, csrf=csrf)
        # suspended or trashed while this login checked its password? The suspension
        # ends sessions after its commit; read the committed state once the session
        # exists (a connection of its own: this transaction's snapshot may be older)
        with self.services.db.session() as fresh:
            still = fresh.execute(select(account_model.id).join(
                person_model, person_model.id == account_model.uid).where(
                account_model.id == account.id, *live)).first()
        if still is None:
            self.services.sessions.delete(token)
            raise Unauthorized(N_("invalid username or password"))
        log.info("login", extra={"event": "login", "uid": account.uid})
        self._audit.note(ctx, "account", account.id, "login",
                         "password and one-time code" if account.totp_enabled
                         else "password", uid=account.uid, method="password")
        roles = (["pending"] if account.status == "pending" else ["user"]) + \
            (["admin"] if account.is_admin else [])
        cookie = {"key": self.settings.cookie_name, "value": token,
                  "max_age": max(int(expires - time.time()), 0), "httponly": True,
                  "samesite": "Lax", "secure": ctx.scheme == "https",
                  "path": self.services.base_url}
        return Reply({"uid": account.uid, "account_id": account.id, "username": account.name,
                      "token": token, "expires": int(expires), "roles": roles,
                      "csrf_token": csrf}, 201, cookies=[cookie])

    def _audit_failure(self, ctx: RequestContext, account: Any, why: str = "wrong password "
                       "or unknown name") -> None:
        """A failed login is recorded although its request fails (its own transaction);
        the name tried is not kept (people type passwords into it)."""
        self._audit.write_alone(ctx, "account", account.id if account else None,
                                "login_failed", uid=account.uid if account else None,
                                rule=why, method="password")

    @property
    def _audit(self) -> AuditTrail:
        return required(self.services.audit, "the audit trail (apicrud.audit)")

    def get(self, ctx: RequestContext) -> Reply:
        principal = ctx.principal
        if not principal.authenticated:
            raise Unauthorized()
        body: dict[str, Any] = {"uid": principal.uid, "account_id": principal.account_id,
                                "username": principal.username, "roles": principal.roles,
                                "method": principal.method}
        if principal.method == "cookie" and principal.csrf:
            # a page signed in by the cookie alone (the OpenID callback's redirect) needs
            # the CSRF token for its writes; only same-origin scripts (and cors_origins)
            # can read this answer
            body["csrf_token"] = principal.csrf
        registry = self.services.registry
        if registry is not None:  # resource -> public URL of the instances serving it (UI)
            body["resources"] = registry.url_map()
        return Reply(body, 200, {"Cache-Control": "no-store"} if "csrf_token" in body else {})

    def logout(self, ctx: RequestContext) -> Reply:
        """End the caller's session; with ``all=true`` every session of the caller."""
        principal = ctx.principal
        if principal.uid is None or not principal.token:  # not authenticated, or not by a session
            raise Unauthorized()
        if ctx.params.get("all"):
            ended = self.services.sessions.delete_all(principal.uid)
            log.info("logout everywhere", extra={"event": "logout_all", "uid": principal.uid,
                                                  "sessions": ended})
            self._audit.note(ctx, "account", principal.account_id, "logout_all")
        else:
            self.services.sessions.delete(principal.token)
            log.info("logout", extra={"event": "logout", "uid": principal.uid})
            self._audit.note(ctx, "account", principal.account_id, "logout")
        cookie = {"key": self.settings.cookie_name, "value": "", "max_age": 0,
                  "httponly": True, "samesite": "Lax", "path": self.services.base_url}
        return Reply(None, 204, cookies=[cookie])

    def can_i(self, ctx: RequestContext) -> Reply:
        """Whether the caller may do an action, and the rule or privacy level that decided."""
        params = ctx.params
        try:
            answer = can_i(self.services, ctx.db, ctx.principal, params["action"],
                           params["resource"], params.get("id"), field=params.get("field"))
        except KeyError:
            raise BadRequest(N_("resource: no such resource"),
                             errors={"resource": N_("no such resource")}) from None
        except ValueError as exc:
            raise BadRequest(N_("action: %(problem)s", problem=text_of(exc)),
                             errors={"action": text_of(exc)}) from None
        except LookupError:
            raise BadRequest(N_("field: unknown field"), errors={"field": N_("unknown field")}) \
                from None
        out = answer.to_dict(params["action"], params["resource"], params.get("id"))
        if params.get("field"):
            out["field"] = params["field"]
        return Reply(out, 200)
