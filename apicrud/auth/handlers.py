"""Turn request credentials into a :class:`Principal`.

Accepted, in this order: ``Authorization: Bearer <token>``, ``Authorization: Basic
base64(<uid>:<token>)``, the session cookie. A cookie alone cannot change state: unsafe
methods authenticated by cookie must also send ``X-CSRF-Token`` (returned at login),
which a cross-site form cannot supply.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.crypto import constant_time_equals
from apicrud.errors import Forbidden, Unauthorized
from apicrud.i18n import N_
from apicrud.pipeline import ROLES_READ

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
                 cookies: Mapping[str, str] | _Cookies,
                 keys_of: Callable[[str], list[str]] | None = None,
                 read: dict[str, list[Any]] | None = None) -> Principal:
    """The caller's Principal; ANONYMOUS when no credentials; 401 for bad ones.

    :param keys_of: more Redis keys of the user to read with the session (see
        :meth:`~apicrud.auth.sessions.SessionManager.lookup`); their replies go into
        ``read`` under the session's uid when they were read
    """
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            return _from_token(sessions, value, "bearer", keys_of, read)
        if scheme == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized(N_("malformed Basic credentials")) from None
            uid, sep, token = decoded.partition(":")
            if not sep or not token:
                raise Unauthorized(N_("Basic credentials must be <uid>:<token>"))
            principal = _from_token(sessions, token, "basic", keys_of, read)
            if not constant_time_equals(principal.uid or "", uid):
                raise Unauthorized(N_("invalid credentials"))
            return principal
        raise Unauthorized(N_("unsupported Authorization scheme"))
    cookie = cookies.get(cookie_name)
    if cookie:
        principal = _from_token(sessions, cookie, "cookie", keys_of, read)
        if method not in SAFE_METHODS:
            sent = headers.get("X-CSRF-Token") or ""
            if not principal.csrf or not constant_time_equals(sent, principal.csrf):
                raise Forbidden(N_("cookie-authenticated requests that change state need the "
                                   "X-CSRF-Token header returned at login"))
        return principal
    return ANONYMOUS


def _from_token(sessions: SessionManager, token: str, method: str,
                keys_of: Callable[[str], list[str]] | None = None,
                read: dict[str, list[Any]] | None = None) -> Principal:
    if len(token) > 512:
        raise Unauthorized(N_("invalid or expired credentials"))
    if keys_of is None:
        session, extra = sessions.get(token), None
    else:
        session, extra = sessions.lookup(token, keys_of)
    if not session or "uid" not in session:
        raise Unauthorized(N_("invalid or expired credentials"))
    if extra is not None and read is not None:
        read[session["uid"]] = extra
    return principal_from_session(session, token, method)


class _Cookies:
    """A request's cookies, parsed only when asked for: a request with an Authorization
    header never is."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def get(self, name: str, default: Any = None) -> Any:
        return self._request.cookies.get(name, default)


def init_app(services: Services) -> None:
    """Register login sessions (Bearer, Basic, cookie) as an authenticator, and end a
    user's sessions and keys when their account or person stops being live.

    The caller's cached membership roles are read in the session's round trip when the
    process knows the token's uid; the replies wait in the WSGI environ
    (:data:`~apicrud.pipeline.ROLES_READ`) for the ``load_roles`` stage."""
    from apicrud.auth import cutoff

    cookie_name = services.settings.cookie_name
    cutoff.install(services.db, services.models, services.sessions)

    def keys_of(uid: str) -> list[str]:
        return services.roles.cache_keys(uid)

    def from_session(request: Request) -> Principal | None:
        read: dict[str, list[Any]] = {}
        principal = authenticate(services.sessions, cookie_name, request.method,
                                 request.headers, _Cookies(request), keys_of, read)
        if read:
            request.environ[ROLES_READ] = read
        return principal if principal.authenticated else None

    services.pipeline.authenticators.append(from_session)
