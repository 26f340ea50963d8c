"""``/auth``: log in (POST), who am I (GET), log out (DELETE)."""

from __future__ import annotations

import logging
import secrets
import time

from sqlalchemy import select, update

from apicrud.auth.passwords import verify_password
from apicrud.auth.totp import check_second_factor, mfa_required
from apicrud.context import Reply, RequestContext
from apicrud.crypto import token_hash
from apicrud.db.base import utcnow
from apicrud.access.explain import can_i
from apicrud.errors import BadRequest, TooManyRequests, Unauthorized

log = logging.getLogger("apicrud.auth")
LOGIN_STATES = ("active", "pending")


class AuthController:
    """Login sessions kept encrypted in Redis (see :class:`SessionManager`)."""

    def __init__(self, resource, services) -> None:
        self.services = services
        self.settings = services.settings

    def _lockout_key(self, username: str) -> str:
        return f"apicrud:lockout:{token_hash(username.lower())}"

    def login(self, ctx: RequestContext) -> Reply:
        body = ctx.body
        username, password = body["username"], body["password"]
        redis = self.services.redis.client
        key = self._lockout_key(username)
        failures = int(redis.get(key) or 0)
        if failures >= self.settings.login_attempts_max:
            retry = max(int(redis.ttl(key)), 1)
            log.warning("login locked out", extra={"event": "login_lockout"})
            raise TooManyRequests("too many failed logins; try again later",
                                  headers={"Retry-After": str(retry)})
        account_model = self.services.models.Account
        account = ctx.db.execute(select(account_model).where(
            account_model.name == username,
            account_model.status.in_(LOGIN_STATES))).scalar_one_or_none()
        # verify against a dummy hash when the user is unknown: same answer, similar time
        if not verify_password(account.password if account else None, password):
            self._failed(redis, key)
            log.info("login failed", extra={"event": "login_failed"})
            raise Unauthorized("invalid username or password")
        if account.totp_enabled:
            # no otp yet is the client's first step, not a failure; a wrong one counts
            # toward the lockout, or six digits could be guessed
            if not body.get("otp"):
                raise mfa_required()
            if not check_second_factor(self.services, account, body["otp"]):
                self._failed(redis, key)
                log.info("login failed: wrong one-time code",
                         extra={"event": "login_failed", "uid": account.uid})
                raise mfa_required("invalid or already used one-time code")
        redis.delete(key)
        # a plain UPDATE, not the ORM's versioned one: two concurrent logins of one
        # account must not fail each other with a stale row version
        ctx.db.execute(update(account_model).where(account_model.id == account.id)
                       .values(last_login=utcnow(), modified=account_model.modified))
        csrf = secrets.token_urlsafe(24)
        token, expires = self.services.sessions.create(
            account.uid, account.id, username=account.name, is_admin=account.is_admin,
            status=account.status, csrf=csrf)
        log.info("login", extra={"event": "login", "uid": account.uid})
        roles = (["pending"] if account.status == "pending" else ["user"]) + \
            (["admin"] if account.is_admin else [])
        cookie = {"key": self.settings.cookie_name, "value": token,
                  "max_age": max(int(expires - time.time()), 0), "httponly": True,
                  "samesite": "Lax", "secure": ctx.scheme == "https",
                  "path": self.services.base_url}
        return Reply({"uid": account.uid, "account_id": account.id, "username": account.name,
                      "token": token, "expires": int(expires), "roles": roles,
                      "csrf_token": csrf}, 201, cookies=[cookie])

    def get(self, ctx: RequestContext) -> Reply:
        p = ctx.principal
        if not p.authenticated:
            raise Unauthorized()
        body = {"uid": p.uid, "account_id": p.account_id, "username": p.username,
                "roles": p.roles, "method": p.method}
        registry = getattr(self.services, "registry", None)
        if registry is not None:  # resource -> public URL of the instances serving it (UI)
            body["resources"] = registry.url_map()
        return Reply(body, 200)

    def _failed(self, redis, key: str) -> None:
        """Count a failed login toward the lockout (in Redis: shared by all instances)."""
        pipe = redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.settings.login_lockout_interval)
        pipe.execute()

    def logout(self, ctx: RequestContext) -> Reply:
        """End the caller's session; with ``all=true`` every session of the caller."""
        p = ctx.principal
        if not p.authenticated or not p.token:
            raise Unauthorized()
        if ctx.params.get("all"):
            ended = self.services.sessions.delete_all(p.uid)
            log.info("logout everywhere", extra={"event": "logout_all", "uid": p.uid,
                                                  "sessions": ended})
        else:
            self.services.sessions.delete(p.token)
            log.info("logout", extra={"event": "logout", "uid": p.uid})
        cookie = {"key": self.settings.cookie_name, "value": "", "max_age": 0,
                  "httponly": True, "samesite": "Lax", "path": self.services.base_url}
        return Reply(None, 204, cookies=[cookie])

    def can_i(self, ctx: RequestContext) -> Reply:
        """Whether the caller may do an action, and the rule or privacy level that decided."""
        p = ctx.params
        try:
            answer = can_i(self.services, ctx.db, ctx.principal, p["action"], p["resource"],
                           p.get("id"))
        except KeyError:
            raise BadRequest("resource: no such resource",
                             errors={"resource": "no such resource"}) from None
        except ValueError as exc:
            raise BadRequest(f"action: {exc}", errors={"action": str(exc)}) from None
        return Reply(answer.to_dict(p["action"], p["resource"], p.get("id")), 200)
