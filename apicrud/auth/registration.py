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

No enumeration. When a caller who is not an administrator registers (``open`` or
``onrequest``), the answer is the same whether or not the username or the address is
taken: a 201 with a pending account of the same shape. For a taken name or address
nothing is made; instead the owner of an existing address gets a message (a new
confirmation token if their account is still pending under ``open``, else a reminder
of their username and how to reset the password), and the address given with a taken
username gets a message saying so. Administrators still get 409s: they see every
account anyway. Likewise a user changing their own person's ``identity`` (address)
under ``open``/``onrequest`` never gets a 409: the address stays as it is, the new
address gets a token for ``POST /auth/identity {token}``, which makes the change, and
the owner of an address already in use is told instead.

Accounts are suspended and enabled again by administrators: ``PATCH /account/{id}
{"status": "suspended" | "active"}`` or ``apicrud account disable|enable NAME``. A
suspended account cannot log in, its sessions and API keys end at once
(:mod:`apicrud.auth.cutoff`), and its name stays taken.

Tokens are single-use, expire after ``token_ttl`` seconds and are kept only as hashes
(:mod:`apicrud.auth.tokens`). A password is checked against the rules before its
token is used up, so a refused password does not cost the user the token. Requests
only queue messages (:mod:`apicrud.worker.outbox`); none waits for SMTP.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from apicrud import redis_keys
from apicrud.auth.account_settings import AccountSettings
from apicrud.auth.accounts import (
    ACCOUNT_STATES,
    NAME_HOLDING,
    SUSPENDED,
    address_holder,
    username_taken,
    valid_email,
)
from apicrud.auth.password_rules import PasswordRules
from apicrud.auth.passwords import hash_password
from apicrud.auth.tokens import OneTimeTokens
from apicrud.context import Reply, RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.db.base import new_id, utcnow
from apicrud.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Unauthorized,
    ValidationProblem,
    required,
)
from apicrud.i18n import N_, language_of, translate, translations
from apicrud.messaging.render import duration_text

if TYPE_CHECKING:
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services
    from apicrud.worker.outbox import Outbox

__all__ = ["AccountController", "CONFIRM", "RESET"]

log = logging.getLogger("apicrud.auth")
CONFIRM, RESET, IDENTITY = "confirm", "reset", "identity"  # token purposes
RESET_ANSWER = N_("If an account matches, a message with instructions is on its way.")


def _bad_token() -> ValidationProblem:
    # the field named "token" gets an error message: no password here
    return ValidationProblem(
        {"token": N_("is invalid, used or expired")})  # nosec B105 # a message, not a secret


class AccountController(BasicCRUD):
    """The ``account`` resource: BasicCRUD reads plus registration and password reset."""

    @property
    def outbox(self) -> Outbox:
        """The mail queue (apicrud.worker.outbox, which create_app always installs)."""
        return required(self.services.outbox, "outbox")

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
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

    def _send_token(self, ctx: RequestContext, account: Any, person: Any, purpose: str,
                    language: str | None = None) -> None:
        token = self.tokens.issue(purpose, account.id)
        self.outbox.send(person.identity, purpose, token=token,
                         username=account.name, name=person.name,
                         language=language or self._language_of(ctx, account.id),
                         **self._mail_context())

    def _language_of(self, ctx: RequestContext, account_id: str | None) -> str:
        """The language of mails to an account's owner: their ``settings.locale`` when a
        catalog is shipped for it, else the setting ``default_locale``. Read through the
        request's transaction (which may hold the account's row)."""
        locale = None
        if account_id:
            try:
                locale = AccountSettings(account_id, self.services).locale_in(ctx.db)
            except Exception:  # the settings unreadable: the default language
                log.warning("settings of account %s unreadable; default language",
                            account_id, exc_info=True)
        return language_of(locale) or language_of(self.settings.default_locale) or "en"

    def _remember_language(self, ctx: RequestContext, account: Any) -> None:
        """A new account's ``settings.locale`` starts as the language its registration
        was asked in, when that is not the default: its later mails use it too."""
        language = ctx.language
        model = getattr(self.services.models, "Settings", None)
        if model is None or language == (language_of(self.settings.default_locale) or "en"):
            return
        ctx.db.add(model(id=new_id(self.settings.id_prefix), account_id=account.id,
                         uid=account.uid, locale=language))
        self._flush(ctx)

    def _may_create(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        """True for callers rbac.yaml lets create accounts (admins); else the policy decides."""
        if self.access.allows(ctx.principal, "c", self.resource.name, data):
            return True
        policy = self.settings.account_policy
        if policy == "closed":
            if not ctx.principal.authenticated:
                raise Unauthorized(N_("accounts are created by administrators"))
            raise Forbidden(N_("accounts are created by administrators"))
        if data.get("is_admin"):
            raise Forbidden(N_("only administrators may create administrators"),
                            errors={"is_admin": N_("only administrators may set this")})
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
            raise ValidationProblem({"email": N_("is not an email address")})
        person_model = self.person_model
        name_taken = username_taken(ctx.db, self.model, username)
        holder = address_holder(ctx.db, person_model, email)
        if by_admin:
            if name_taken:
                raise Conflict(N_("username: already taken"),
                               errors={"username": N_("already taken")})
            if holder is not None:
                raise Conflict(N_("email: already registered"),
                               errors={"email": N_("already registered")})
        elif name_taken or holder is not None:
            return self._refuse_quietly(ctx, username, email, name, holder)
        prefix = self.settings.id_prefix
        person = person_model(id=new_id(prefix), name=name, identity=email, privacy="member")
        ctx.db.add(person)
        self._flush(ctx)  # the account refers to the person
        account = self.model(id=new_id(prefix), name=username, uid=person.id, password=None,
                             is_admin=data["is_admin"], status="pending")
        ctx.db.add(account)
        self._flush(ctx)
        self._remember_language(ctx, account)
        if by_admin or self.settings.account_policy == "open":
            self._send_token(ctx, account, person, CONFIRM, ctx.language)
        else:
            self.outbox.send(self.settings.admin_email, "account_request",
                             username=username, name=name, email=email,
                             account_id=account.id,
                             language=self._language_of(ctx, None),
                             **self._mail_context())
        log.info("account registered", extra={"event": "account_registered",
                                               "account_id": account.id,
                                               "by_admin": by_admin})
        headers = {"Location": f"{self.services.base_url}/account/{account.id}",
                   "ETag": self.etag(account)}
        return Reply({"id": account.id, **self.serialize(ctx, account)}, 201, headers)

    def _refuse_quietly(self, ctx: RequestContext, username: str, email: str, name: str,
                        holder: Any) -> Reply:
        """A taken name or address: tell the address's owner by mail, and answer as a
        registration that went through (a pending account that is never made)."""
        if holder is not None:
            account = ctx.db.execute(select(self.model).where(
                self.model.uid == holder.id, self.model.status.in_(NAME_HOLDING))
                .order_by(self.model.created).limit(1)).scalar_one_or_none()
            if account is not None and account.status == "pending" and \
                    self.settings.account_policy == "open":
                self._send_token(ctx, account, holder, CONFIRM)
            else:
                self.outbox.send(
                    holder.identity, "account_exists", name=holder.name,
                    username=account.name if account is not None else "",
                    status=account.status if account is not None else "",
                    language=self._language_of(ctx, account.id if account is not None else None),
                    **self._mail_context())
        else:  # to the address the caller gave: in the caller's language
            self.outbox.send(email, "username_taken", name=name,
                             username=username, language=ctx.language,
                             **self._mail_context())
        log.info("registration refused quietly", extra={"event": "account_not_registered"})
        prefix = self.settings.id_prefix
        lookalike = self.model(id=new_id(prefix), name=username, uid=new_id(prefix),
                               password=None, is_admin=False, status="pending",
                               created=utcnow(), modified=None, last_login=None, version=1)
        headers = {"Location": f"{self.services.base_url}/account/{lookalike.id}",
                   "ETag": self.etag(lookalike)}
        return Reply({"id": lookalike.id, **self.serialize(ctx, lookalike)}, 201, headers)

    # -- suspension -----------------------------------------------------------------
    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        """Only ``status`` changes: ``suspended`` (cut off) or ``active`` (enabled again;
        ``pending`` when the account never chose a password)."""
        if "status" not in changes:
            return changes
        wanted = changes["status"]
        if wanted not in ("active", SUSPENDED):
            raise BadRequest(N_("status: set 'suspended' or 'active'"),
                             errors={"status": N_("must be suspended or active")})
        if record.id == ctx.principal.account_id:
            raise Forbidden(N_("status: you cannot suspend or enable your own account"),
                            errors={"status": N_("not for your own account")})
        if wanted == "active":
            if record.status != SUSPENDED:
                changes.pop("status")
                return changes
            changes["status"] = "active" if record.password else "pending"
        log.info("account %s", "suspended" if wanted == SUSPENDED else "enabled",
                 extra={"event": f"account_{'suspended' if wanted == SUSPENDED else 'enabled'}",
                        "account_id": record.id, "uid": ctx.principal.uid})
        return changes

    # -- changing a person's address ------------------------------------------------
    def _identity_key(self, person_id: str) -> str:
        return redis_keys.key("identity", person_id)

    def request_identity_change(self, ctx: RequestContext, person: Any, address: str) -> None:
        """Mail a token to ``address`` that makes it the person's address; if another
        person holds it, tell that person instead. The caller's answer is the same."""
        address = address.strip()
        if not valid_email(address):
            raise ValidationProblem({"identity": N_("is not an email address")})
        holder = ctx.db.execute(select(self.person_model).where(
            func.lower(self.person_model.identity) == address.lower(),
            self.person_model.status == "active", self.person_model.id != person.id)
            .limit(1)).scalar_one_or_none()
        if holder is not None:
            holder_account = ctx.db.execute(select(self.model.id).where(
                self.model.uid == holder.id, self.model.status.in_(NAME_HOLDING))
                .limit(1)).scalar_one_or_none()
            self.outbox.send(holder.identity, "identity_taken", name=holder.name,
                             language=self._language_of(ctx, holder_account),
                             **self._mail_context())
        else:
            token = self.tokens.issue(IDENTITY, person.id)
            self.services.redis.client.set(self._identity_key(person.id), address,
                                           ex=self.settings.token_ttl)
            self.outbox.send(address, "identity_confirm", token=token,
                             name=person.name, language=ctx.language,
                             **self._mail_context())
        log.info("address change requested", extra={"event": "identity_change_requested",
                                                    "uid": person.id})

    def confirm_identity(self, ctx: RequestContext) -> Reply:
        """``POST /auth/identity {token}``: the address the token was mailed to becomes
        the person's address."""
        token = ctx.body["token"]
        person_id = self.tokens.peek(IDENTITY, token)
        person = ctx.db.get(self.person_model, person_id) if person_id else None
        raw = self.services.redis.client.get(self._identity_key(person_id)) \
            if person_id else None
        if person is None or person.status != "active" or raw is None:
            raise _bad_token()
        if self.tokens.consume(IDENTITY, token) != person_id:
            raise _bad_token()
        address = raw.decode() if isinstance(raw, bytes) else str(raw)
        self.services.redis.client.delete(self._identity_key(person.id))
        person.identity = address
        try:
            ctx.db.flush()
        except IntegrityError:
            ctx.rollback()
            raise Conflict(N_("identity: the address was taken meanwhile"),
                           errors={"identity": N_("already in use")}) from None
        log.info("address changed", extra={"event": "identity_changed", "uid": person.id})
        return Reply({"id": person.id, "identity": address}, 200)

    def approve(self, ctx: RequestContext) -> Reply:
        """``POST /account/{id}/approve``: (re)send the confirmation of a pending account."""
        account = self._load(ctx, ctx.params["id"], for_update=True)
        self.authorize(ctx, "u", account)
        if account.status != "pending":
            raise Conflict(N_("account is not pending"), errors={"status": N_("is not pending")})
        person = ctx.db.get(self.person_model, account.uid)
        self._send_token(ctx, account, person, CONFIRM)
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
            self.model.status.in_(ACCOUNT_STATES), person_model.status == "active")
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
            self._send_token(ctx, account, person, purpose)
            log.info("password reset requested", extra={"event": "reset_requested",
                                                        "uid": account.uid})
        else:  # the same rendering and publishing, for nobody
            self.outbox.send(None, RESET, token=secrets.token_urlsafe(32),
                             username="", name="", **self._mail_context())
        return Reply({"message": translate(RESET_ANSWER, translations(ctx.language))}, 202)

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
        # every session ends, but the caller's own when they are signed in to this account
        keep = ctx.principal.token if ctx.principal.account_id == account.id else None
        ended = self.services.sessions.delete_all(account.uid, keep=keep)
        log.info("password reset", extra={"event": "password_reset", "uid": account.uid,
                                           "sessions_ended": ended})
        return Reply(self._summary(account), 200)

    @staticmethod
    def _summary(account: Any) -> dict[str, Any]:
        return {"id": account.id, "uid": account.uid, "username": account.name,
                "status": account.status}
