"""The extension points of the request path, in the order they run (inside the stages of
:mod:`apicrud.request_path`, which ``stages`` lists and components may extend; ``problems``
maps exceptions to problem documents).

0. ``credential_guards``: run before the authenticators with ``(request, operation)``
   (rate limits on failed credentials: see :func:`has_credentials`). Raise a
   Problem to refuse without checking the credentials, or return False to have them
   ignored (the request runs anonymous; only for public operations).
1. ``authenticators``: each looks at the request and returns a Principal, or None when
   the request carries no credentials of its kind; the first answer wins. A bad
   credential raises ``Unauthorized`` (or ``Forbidden``: a cookie without its CSRF
   header). Every ``Unauthorized`` is reported to the ``credential_failures`` hooks with
   ``(request, operation, problem)``. On a public operation a bad credential is ignored
   and the request runs anonymous: a stale cookie must not stop anyone from logging in.
2. ``guards``: run after authentication with the RequestContext (operation, principal),
   before parameters and body are read: rate limits, API-key scopes. Raise a Problem to
   refuse; add response headers through ``ctx.response_headers``.
3. the controller; BasicCRUD runs ``create_checks`` (e.g. record-count grants) before it
   inserts a record, with (ctx, ResourceSpec, values).
4. ``observers``: run after the response is built, with a :class:`RequestRecord`:
   metrics, the request log. They must not raise (failures are logged and ignored).

Components add themselves in their ``init_app(services)``; ``create_app`` calls those in
the documented order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from flask import Request

log = logging.getLogger("apicrud")


@dataclass(frozen=True)
class RequestRecord:
    """One finished request, as observers see it."""

    method: str
    path: str
    operation_id: str | None
    resource: str | None
    action: str | None
    status: int
    duration: float  # seconds
    principal: Principal
    request_id: str
    remote_addr: str | None


#: request headers that carry credentials (besides cookies)
CREDENTIAL_HEADERS = ("Authorization", "X-API-KEY")


#: set in the WSGI environ by an authenticator that found a credential where
#: ``has_credentials`` does not look (an info function's own header, query or cookie:
#: apicrud.connexion_conventions), so its failures are limited as the others are
CREDENTIAL_GIVEN = "apicrud.credential_given"

#: set in the WSGI environ by the session authenticator: {uid: the replies to
#: ``services.roles.cache_keys(uid)``} read in the session's own Redis command, which the
#: ``load_roles`` stage takes instead of reading them again (one round trip, not two)
ROLES_READ = "apicrud.roles_read"


def has_credentials(request: Request, cookie_name: str | None) -> bool:
    """Whether the request carries a credential an authenticator would check."""
    return any(request.headers.get(h) is not None for h in CREDENTIAL_HEADERS) or \
        bool(cookie_name and request.cookies.get(cookie_name)) or \
        bool(request.environ.get(CREDENTIAL_GIVEN))


class Pipeline:
    def __init__(self) -> None:
        self.credential_guards: list[Callable[[Any, Any], bool | None]] = []
        self.authenticators: list[Callable[[Any], Principal | None]] = []
        self.credential_failures: list[Callable[[Any, Any, Exception], None]] = []
        self.guards: list[Callable[[Any], None]] = []
        self.create_checks: list[Callable[[Any, Any, dict], None]] = []
        self.observers: list[Callable[[RequestRecord], None]] = []
        #: the request's stages, in order (apicrud.request_path.DEFAULT_STAGES), and
        #: how exceptions become problems (a request_path.ProblemMap); set by create_app
        self.stages: list[Callable[[Any], None]] = []
        self.problems: Any = None

    def authenticate(self, request: Request, operation: Any = None) -> Principal:
        """The caller's Principal (ANONYMOUS without credentials).

        :param operation: the operation called; on a public one (``operation.public``)
            invalid credentials are ignored instead of refused
        :raises Unauthorized: bad credentials on a secured operation
        """
        public = bool(getattr(operation, "public", False))
        for guard in self.credential_guards:
            if guard(request, operation) is False and public:
                return ANONYMOUS
        try:
            for authenticator in self.authenticators:
                principal = authenticator(request)
                if principal is not None:
                    return principal
        except (Unauthorized, Forbidden) as exc:
            if isinstance(exc, Unauthorized):  # a valid cookie lacking CSRF is no guess
                for hook in self.credential_failures:
                    hook(request, operation, exc)
            if public:
                return ANONYMOUS
            raise
        return ANONYMOUS

    def observe(self, record: RequestRecord) -> None:
        for observer in self.observers:
            try:
                observer(record)
            except Exception:  # an observer never breaks a response
                log.warning("request observer %r failed", observer, exc_info=True)
