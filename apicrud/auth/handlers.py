"""Turn request credentials into a :class:`Principal`.

Accepted, in this order: ``Authorization: Bearer <token>``, ``Authorization: Basic
base64(<uid>:<token>)``, the session cookie. A cookie alone cannot change state: unsafe
methods authenticated by cookie must also send ``X-CSRF-Token`` (returned at login),
which a cross-site form cannot supply.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.crypto import constant_time_equals
from apicrud.errors import Forbidden, Unauthorized
from apicrud.i18n import N_

if TYPE_CHECKING:
    from flask import Request
    from werkzeug.datastructures import Headers

    from apicrud.auth.sessions import SessionManager
    from apicrud.services import Services

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def principal_from_session(session: dict[str, Any], token: str, method: str) -> Principal:
    return Principal(
        uid=session["uid"],
        account_id=session.get("account_id"),
        username=session.get("username"),
        is_admin=bool(session.get("is_admin")),
        status=session.get("status", "active"),
        method=method,
        token=token,
        csrf=session.get("csrf"),
    )


def authenticate(sessions: SessionManager, cookie_name: str, method: str, headers: Headers,
                 cookies: Mapping[str, str]) -> Principal:
    """The caller's Principal; ANONYMOUS when no credentials; 401 for bad ones."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            return _from_token(sessions, value, "bearer")
        if scheme == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized(N_("malformed Basic credentials")) from None
            uid, sep, token = decoded.partition(":")
            if not sep or not token:
                raise Unauthorized(N_("Basic credentials must be <uid>:<token>"))
            principal = _from_token(sessions, token, "basic")
            if not constant_time_equals(principal.uid or "", uid):
                raise Unauthorized(N_("invalid credentials"))
            return principal
        raise Unauthorized(N_("unsupported Authorization scheme"))
    cookie = cookies.get(cookie_name)
    if cookie:
        principal = _from_token(sessions, cookie, "cookie")
        if method not in SAFE_METHODS:
            sent = headers.get("X-CSRF-Token") or ""
            if not principal.csrf or not constant_time_equals(sent, principal.csrf):
                raise Forbidden(N_("cookie-authenticated requests that change state need the "
                                   "X-CSRF-Token header returned at login"))
        return principal
    return ANONYMOUS


def _from_token(sessions: SessionManager, token: str, method: str) -> Principal:
    if len(token) > 512:
        raise Unauthorized(N_("invalid or expired credentials"))
    session = sessions.get(token)
    if not session or "uid" not in session:
        raise Unauthorized(N_("invalid or expired credentials"))
    return principal_from_session(session, token, method)


def init_app(services: Services) -> None:
    """Register login sessions (Bearer, Basic, cookie) as an authenticator, and end a
    user's sessions and keys when their account or person stops being live."""
    from apicrud.auth import cutoff

    cookie_name = services.settings.cookie_name
    cutoff.install(services.db, services.models, services.sessions)

    def from_session(request: Request) -> Principal | None:
        principal = authenticate(services.sessions, cookie_name, request.method,
                                 request.headers, request.cookies)
        return principal if principal.authenticated else None

    services.pipeline.authenticators.append(from_session)
