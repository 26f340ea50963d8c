"""The extension points of the request path, in the order they run.

1. ``authenticators``: each looks at the request and returns a Principal, or None when
   the request carries no credentials of its kind; the first answer wins. A bad
   credential raises ``Unauthorized``.
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
from dataclasses import dataclass
from typing import Any, Callable

from apicrud.auth.principal import ANONYMOUS, Principal

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


class Pipeline:
    def __init__(self) -> None:
        self.authenticators: list[Callable[[Any], Principal | None]] = []
        self.guards: list[Callable[[Any], None]] = []
        self.create_checks: list[Callable[[Any, Any, dict], None]] = []
        self.observers: list[Callable[[RequestRecord], None]] = []

    def authenticate(self, request) -> Principal:
        for authenticator in self.authenticators:
            principal = authenticator(request)
            if principal is not None:
                return principal
        return ANONYMOUS

    def observe(self, record: RequestRecord) -> None:
        for observer in self.observers:
            try:
                observer(record)
            except Exception:  # an observer never breaks a response
                log.warning("request observer %r failed", observer, exc_info=True)
