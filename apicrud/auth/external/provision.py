"""Accounts for identities proven elsewhere (an OpenID provider, a directory), and the
apicrud session that follows.

:func:`account_for_identity` finds the account of an external identity, or makes one
as the setting ``account_policy`` allows:

1. a link (``IdentityLink``: issuer + subject) names the account;
2. else, when the identity comes with a verified email address, the account of the
   live person holding that address (the link is made, so later logins take step 1);
3. else ``open`` creates a person and an active account, ``onrequest`` a pending one
   (the administrator is told by mail, as for a registration), ``closed`` refuses.

An email address the provider does not vouch for is never used to find an account nor
stored on a new person: anyone may type any address at a provider.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from apicrud.auth.cutoff import PERSON_LIVE
from apicrud.context import Reply, RequestContext
from apicrud.db.base import new_id, utcnow
from apicrud.errors import Forbidden, StartupError, Unauthorized
from apicrud.i18n import N_

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from apicrud.services import Services

__all__ = ["account_for_identity", "session_reply", "require_link_model", "LOGIN_STATES"]

log = logging.getLogger("apicrud.auth")
LOGIN_STATES = ("active", "pending")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.@-]+")


def require_link_model(services: Services, what: str) -> Any:
    """The models module's ``IdentityLink`` class.

    :raises StartupError: the models module declares none
    """
    model = getattr(services.models, "IdentityLink", None)
    if model is None:
        raise StartupError([f"{what} needs an IdentityLink model in "
                            f"{services.settings.models_module} (see "
                            "apicrud.auth.external.models)"])
    return model


def _free_username(db: Session, account_model: Any, wanted: str) -> str:
    """``wanted`` cleaned up, or with a random suffix when an account holds it."""
    base = _NAME_CHARS.sub("-", wanted).strip("-.")[:24] or "user"
    name = base
    for _ in range(5):
        taken = db.execute(select(account_model.id).where(
            func.lower(account_model.name) == name.lower())).first()
        if taken is None:
            return name
        name = f"{base}-{secrets.token_hex(3)}"
    return f"user-{secrets.token_hex(6)}"


def account_for_identity(services: Services, db: Session, *, provider: str, issuer: str,
                         subject: str, username: str | None, email: str | None,
                         email_verified: bool, name: str | None = None,
                         link_uid: str | None = None) -> Any:
    """The live account of this identity, made or linked as the policy allows.

    :param link_uid: the person whose account the identity is to be linked to (a
        signed-in user linking a provider), instead of finding or making one
    :raises Unauthorized: the linked account is no longer live
    :raises Forbidden: no account, and the policy makes none
    """
    models = services.models
    link_model = require_link_model(services, "external login")
    account_model, person_model = models.Account, models.Person
    live = (account_model.status.in_(LOGIN_STATES), person_model.status.in_(PERSON_LIVE))
    link = db.execute(select(link_model).where(
        link_model.issuer == issuer, link_model.subject == subject,
        link_model.status == "active")).scalar_one_or_none()
    if link is not None:
        if link_uid is not None and link.uid != link_uid:
            raise Forbidden(N_("this identity is already linked to another account"))
        account = db.execute(select(account_model).join(
            person_model, person_model.id == account_model.uid).where(
            account_model.id == link.account_id, *live)).scalar_one_or_none()
        if account is None:
            raise Unauthorized(N_("the account of this identity is not active"))
        db.execute(update(link_model).where(link_model.id == link.id).values(
            last_login=utcnow(), modified=link_model.modified))
        return account
    verified = email if email and email_verified else None
    account = None
    if link_uid is not None:
        account = db.execute(select(account_model).join(
            person_model, person_model.id == account_model.uid).where(
            account_model.uid == link_uid, *live)).scalars().first()
        if account is None:
            raise Unauthorized(N_("the account to link is not active"))
    elif verified:
        account = db.execute(select(account_model).join(
            person_model, person_model.id == account_model.uid).where(
            func.lower(person_model.identity) == verified.lower(),
            person_model.status == "active", *live)
            .order_by(account_model.created)).scalars().first()
    if account is None:
        account = _provision(services, db, username or subject, verified, name)
    db.add(link_model(id=new_id(services.settings.id_prefix), provider=provider,
                      issuer=issuer, subject=subject, email=verified,
                      account_id=account.id, uid=account.uid, last_login=utcnow()))
    db.flush()
    log.info("external identity linked", extra={
        "event": "identity_linked", "uid": account.uid, "provider": provider})
    return account


def _provision(services: Services, db: Session, username: str, email: str | None,
               name: str | None) -> Any:
    policy = services.settings.account_policy
    if policy == "closed":
        raise Forbidden(N_("no account matches this identity (by link or verified email), and "
                           "accounts are created by administrators"), slug="no-account")
    models = services.models
    prefix = services.settings.id_prefix
    login = _free_username(db, models.Account, username)
    person = models.Person(id=new_id(prefix), name=(name or login)[:64], identity=email,
                           privacy="member")
    db.add(person)
    db.flush()
    status = "active" if policy == "open" else "pending"
    account = models.Account(id=new_id(prefix), name=login, uid=person.id, password=None,
                             is_admin=False, status=status)
    db.add(account)
    db.flush()
    if status == "pending":
        outbox = services.outbox
        if outbox is not None:
            base = services.settings.public_url.rstrip("/") or \
                f"http://{services.settings.host}:{services.settings.port}"
            outbox.send(services.settings.admin_email, "account_request", username=login,
                        name=person.name, email=email or "", account_id=account.id,
                        service=services.spec.get("info", {}).get("title", "apicrud"),
                        api_url=base + services.base_url)
    log.info("account provisioned", extra={"event": "account_provisioned",
                                           "account_id": account.id, "status": status})
    return account


def session_reply(services: Services, ctx: RequestContext, account: Any, *, method: str,
                  status: int = 201, location: str | None = None,
                  extra_cookies: list[dict] | None = None) -> Reply:
    """Start an apicrud session for ``account``: the body, cookie and headers of
    ``POST /auth`` (or a redirect to ``location`` carrying the cookie)."""
    settings = services.settings
    models = services.models
    ctx.db.execute(update(models.Account).where(models.Account.id == account.id)
                   .values(last_login=utcnow(), modified=models.Account.modified))
    csrf = secrets.token_urlsafe(24)
    token, expires = services.sessions.create(
        account.uid, account.id, username=account.name, is_admin=account.is_admin,
        status=account.status, csrf=csrf, login_method=method)
    log.info("login", extra={"event": "login", "uid": account.uid, "method": method})
    roles = (["pending"] if account.status == "pending" else ["user"]) + \
        (["admin"] if account.is_admin else [])
    cookie = {"key": settings.cookie_name, "value": token,
              "max_age": max(int(expires - time.time()), 0), "httponly": True,
              "samesite": "Lax", "secure": ctx.scheme == "https", "path": services.base_url}
    cookies = [cookie, *(extra_cookies or [])]
    headers = {"Cache-Control": "no-store"}
    if location is not None:
        return Reply(None, 303, {**headers, "Location": location}, cookies=cookies)
    return Reply({"uid": account.uid, "account_id": account.id, "username": account.name,
                  "token": token, "expires": int(expires), "roles": roles,
                  "csrf_token": csrf}, status, headers, cookies=cookies)
