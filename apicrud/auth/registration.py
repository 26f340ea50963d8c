"""Accounts by message: registration, confirmation, password reset.

``POST /account`` creates a person and a pending account without a password. Who may
do so is the setting ``account_policy``; administrators always may:

- ``open``: anyone; a confirmation message with a one-time token goes out at once;
- ``onrequest``: anyone may ask; the account stays pending and the administrators
  (setting ``admin_email``) are told. ``POST /account/{id}/approve`` by an admin sends
  the confirmation message (and sends a fresh one when a token expired);
- ``closed``: administrators only.

``POST /auth/confirm {token, password}`` activates the account with that password.
``POST /auth/reset {username} | {email}`` always answers 202 with the same body and the
same work (a stand-in message is queued for unknown accounts); for an active account
the message holds a reset token, for an account still pending under ``open`` a new
confirmation token. ``POST /auth/password {token, password}`` sets the new password
and ends every session of the account.

Tokens are single-use, expire after ``token_ttl`` seconds and are kept only as hashes
(:mod:`apicrud.auth.tokens`). A password is checked against the rules before its
token is used up, so a refused password does not cost the user the token. Requests
only queue messages (:mod:`apicrud.worker.outbox`); none waits for SMTP.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from sqlalchemy import func, select

from apicrud.auth.password_rules import PasswordRules
from apicrud.auth.passwords import hash_password
from apicrud.auth.tokens import OneTimeTokens
from apicrud.context import Reply, RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.db.base import new_id, utcnow
from apicrud.errors import Conflict, Forbidden, Unauthorized, ValidationProblem
from apicrud.messaging.render import duration_text

__all__ = ["AccountController", "CONFIRM", "RESET"]

log = logging.getLogger("apicrud.auth")
CONFIRM, RESET = "confirm", "reset"  # token purposes
#: an address an SMTP relay will take without SMTPUTF8 (the same pattern is in the spec)
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL_PATTERN = (r"^[A-Za-z0-9_%+'-]+(\.[A-Za-z0-9_%+'-]+)*@"
                 rf"{_LABEL}(\.{_LABEL})*\.[A-Za-z]{{2,63}}$")
_EMAIL = re.compile(EMAIL_PATTERN)
RESET_ANSWER = "If an account matches, a message with instructions is on its way."
ACCOUNT_STATES = ("active", "pending")


def valid_email(address: str) -> bool:
    """EMAIL_PATTERN plus the lengths of RFC 5321: local part 64, domain labels 63."""
    local, _, domain = address.rpartition("@")
    return bool(_EMAIL.match(address)) and len(local) <= 64 and \
        all(len(label) <= 63 for label in domain.split("."))


def _bad_token() -> ValidationProblem:
    # the field named "token" gets an error message: no password here
    return ValidationProblem(
        {"token": "is invalid, used or expired"})  # nosec B105 # a message, not a secret


class AccountController(BasicCRUD):
    """The ``account`` resource: BasicCRUD reads plus registration and password reset."""

    def __init__(self, resource, services) -> None:
        super().__init__(resource, services)
        self.settings = services.settings
        self.tokens = OneTimeTokens(services.redis.client, ttl=self.settings.token_ttl)
        self.rules = PasswordRules.from_settings(self.settings)
        self.person_model = services.models.Person

    # -- helpers --------------------------------------------------------------------
    def _mail_context(self) -> dict[str, Any]:
        # never derived from the request's Host header: a forged one would put an
        # attacker's address next to a real token (reset poisoning)
        base = self.settings.public_url.rstrip("/") or \
            f"http://{self.settings.host}:{self.settings.port}"
        return {"service": self.services.spec.get("info", {}).get("title", "apicrud"),
                "api_url": base + self.services.base_url,
                "ttl_text": duration_text(self.settings.token_ttl)}

    def _send_token(self, account: Any, person: Any, purpose: str) -> None:
        token = self.tokens.issue(purpose, account.id)
        self.services.outbox.send(person.identity, purpose, token=token,
                                  username=account.name, name=person.name,
                                  **self._mail_context())

    def _may_create(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        """True for callers rbac.yaml lets create accounts (admins); else the policy decides."""
        if self.access.allows(ctx.principal, "c", self.resource.name, data):
            return True
        policy = self.settings.account_policy
        if policy == "closed":
            if not ctx.principal.authenticated:
                raise Unauthorized("accounts are created by administrators")
            raise Forbidden("accounts are created by administrators")
        if data.get("is_admin"):
            raise Forbidden("only administrators may create administrators",
                            errors={"is_admin": "only administrators may set this"})
        return False

    def _account_for_token(self, ctx: RequestContext, purpose: str, token: str,
                           status: str) -> tuple[Any, Any]:
        account_id = self.tokens.peek(purpose, token)
        account = ctx.db.get(self.model, account_id) if account_id else None
        if account is None or account.status != status:
            raise _bad_token()
        return account, ctx.db.get(self.person_model, account.uid)

    # -- operations -----------------------------------------------------------------
    def register(self, ctx: RequestContext) -> Reply:
        """``POST /account``: a person and a pending account; a message per the policy."""
        body = ctx.body or {}
        username, email = body["username"].strip(), body["email"].strip()
        name = (body.get("name") or "").strip() or username
        data = {"name": username, "is_admin": bool(body.get("is_admin")), "status": "pending"}
        by_admin = self._may_create(ctx, data)
        if not valid_email(email):
            raise ValidationProblem({"email": "is not an email address"})
        person_model = self.person_model
        if ctx.db.execute(select(self.model.id).where(
                func.lower(self.model.name) == username.lower(),
                self.model.status.in_(ACCOUNT_STATES))).first():
            raise Conflict("username: already taken", errors={"username": "already taken"})
        if ctx.db.execute(select(person_model.id).where(
                func.lower(person_model.identity) == email.lower(),
                person_model.status == "active")).first():
            raise Conflict("email: already registered", errors={"email": "already registered"})
        prefix = self.settings.id_prefix
        person = person_model(id=new_id(prefix), name=name, identity=email, privacy="member")
        ctx.db.add(person)
        self._flush(ctx)  # the account refers to the person
        account = self.model(id=new_id(prefix), name=username, uid=person.id, password=None,
                             is_admin=data["is_admin"], status="pending")
        ctx.db.add(account)
        self._flush(ctx)
        if by_admin or self.settings.account_policy == "open":
            self._send_token(account, person, CONFIRM)
        else:
            self.services.outbox.send(self.settings.admin_email, "account_request",
                                      username=username, name=name, email=email,
                                      account_id=account.id, **self._mail_context())
        log.info("account registered", extra={"event": "account_registered",
                                               "account_id": account.id,
                                               "by_admin": by_admin})
        headers = {"Location": f"{self.services.base_url}/account/{account.id}",
                   "ETag": self.etag(account)}
        return Reply({"id": account.id, **self.serialize(ctx, account)}, 201, headers)

    def approve(self, ctx: RequestContext) -> Reply:
        """``POST /account/{id}/approve``: (re)send the confirmation of a pending account."""
        account = self._load(ctx, ctx.params["id"], for_update=True)
        self.authorize(ctx, "u", account)
        if account.status != "pending":
            raise Conflict("account is not pending", errors={"status": "is not pending"})
        person = ctx.db.get(self.person_model, account.uid)
        self._send_token(account, person, CONFIRM)
        log.info("account approved", extra={"event": "account_approved",
                                             "account_id": account.id})
        return Reply(self.serialize(ctx, account), 202, {"ETag": self.etag(account)})

    def confirm(self, ctx: RequestContext) -> Reply:
        """``POST /auth/confirm``: token + new password -> the account is active."""
        token, password = ctx.body["token"], ctx.body["password"]
        account, person = self._account_for_token(ctx, CONFIRM, token, "pending")
        self.rules.check(password, account.name, person.identity if person else None)
        if self.tokens.consume(CONFIRM, token) != account.id:
            raise _bad_token()  # used by a concurrent request a moment ago
        account.password = hash_password(password)
        account.password_changed = utcnow()
        account.status = "active"
        self._flush(ctx)
        log.info("account confirmed", extra={"event": "account_confirmed",
                                              "uid": account.uid})
        return Reply(self._summary(account), 200)

    def reset(self, ctx: RequestContext) -> Reply:
        """``POST /auth/reset``: same answer and same work whether or not the account exists."""
        body = ctx.body or {}
        person_model = self.person_model
        stmt = select(self.model, person_model).join(
            person_model, person_model.id == self.model.uid).where(
            self.model.status.in_(ACCOUNT_STATES))
        if body.get("username"):
            stmt = stmt.where(self.model.name == body["username"].strip())
        else:
            stmt = stmt.where(func.lower(person_model.identity) ==
                              body.get("email", "").strip().lower())
        row = ctx.db.execute(stmt.order_by(self.model.created).limit(1)).first()
        account, person = row if row else (None, None)
        purpose = RESET
        if account is not None and account.status == "pending":
            purpose = CONFIRM if self.settings.account_policy == "open" else ""
        if account is not None and purpose:
            self._send_token(account, person, purpose)
            log.info("password reset requested", extra={"event": "reset_requested",
                                                        "uid": account.uid})
        else:  # the same rendering and publishing, for nobody
            self.services.outbox.send(None, RESET, token=secrets.token_urlsafe(32),
                                      username="", name="", **self._mail_context())
        return Reply({"message": RESET_ANSWER}, 202)

    def set_password(self, ctx: RequestContext) -> Reply:
        """``POST /auth/password``: reset token + new password; ends every session."""
        token, password = ctx.body["token"], ctx.body["password"]
        account, person = self._account_for_token(ctx, RESET, token, "active")
        self.rules.check(password, account.name, person.identity if person else None)
        if self.tokens.consume(RESET, token) != account.id:
            raise _bad_token()
        account.password = hash_password(password)
        account.password_changed = utcnow()
        self._flush(ctx)
        ended = self.services.sessions.delete_all(account.uid)
        log.info("password reset", extra={"event": "password_reset", "uid": account.uid,
                                           "sessions_ended": ended})
        return Reply(self._summary(account), 200)

    @staticmethod
    def _summary(account: Any) -> dict[str, Any]:
        return {"id": account.id, "uid": account.uid, "username": account.name,
                "status": account.status}
