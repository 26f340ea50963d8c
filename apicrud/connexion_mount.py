"""apicrud's resources inside a connexion 3 application (the ``apicrud[connexion]`` extra).

:func:`add_apicrud_api` builds apicrud's WSGI application (:func:`apicrud.app.create_app`)
and registers its spec with connexion's own ``add_api``, so connexion knows the
operations (its router and resolver hold them), lists them in its Swagger UI and serves
the document, while every request under the mount's base path is answered by apicrud's
staged request path (authentication, schemes, RBAC, validation, problem documents,
headers: one copy of each, apicrud's). The user's other APIs keep connexion's stock
behaviour.

How a request goes: connexion's ``SwaggerUIMiddleware`` serves ``{base}/ui/`` and
``{base}/openapi.json`` (its own UI, listing apicrud's operations, with the 3.0 document);
then :class:`ApicrudMiddleware`, inserted just before connexion's routing
(``MiddlewarePosition.BEFORE_ROUTING``), hands every other request under the mount's
base path to apicrud's Flask application through a2wsgi's bridge (the one connexion's
``FlaskApp`` uses for its own Flask app), where apicrud's Werkzeug map routes it as under
``apicrud serve``. connexion's security, validation and parameter handling never see
these requests; nor does connexion's Flask app. Why before connexion's router rather
than after it: the router answers a known path with a method the spec lacks (405, and
every CORS preflight ``OPTIONS``) in its own words, before any later middleware runs.
A path another connexion API owns (a base path inside the mount's) stays connexion's.

The resolver (:func:`apicrud_resolver`) maps every operationId of the mounted spec to a
view that hands the request to the same apicrud application: the operations resolve in
connexion's terms, and answer alike should connexion's own stack ever call the view.

connexion 3.3 refuses OpenAPI 3.1 (spec-first/connexion#1396): the document connexion
gets is converted to 3.0 by :func:`apicrud.spec.downgrade.to_openapi_30`; apicrud keeps
validating against the 3.1 original. What 3.0 cannot say is logged once at mount time.

Works with ``connexion.FlaskApp`` and ``connexion.AsyncApp`` (both route with the same
middleware stack); the middleware must be added before the application starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from apicrud.spec.downgrade import to_openapi_30

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.wrappers import Response

#: an ASGI application's arguments
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]

log = logging.getLogger("apicrud")

__all__ = ["add_apicrud_api", "ApicrudMiddleware", "apicrud_resolver", "connexion_document"]


def connexion_document(services: Any) -> dict[str, Any]:
    """The served spec as connexion reads it: OpenAPI 3.0, without apicrud's own keys."""
    doc, lost = to_openapi_30(services.spec)
    doc.pop("x-apicrud-resources", None)
    doc.pop("servers", None)  # the mount's base_path decides
    if lost:
        log.info("connexion mount: OpenAPI 3.0 cannot say %s (apicrud still checks them)",
                 ", ".join(lost))
    return doc


def apicrud_resolver(wsgi_app: Any) -> Any:
    """A connexion ``Resolver`` for an apicrud spec: every operationId resolves to a view
    that hands the request to apicrud's application (see the module docstring). Made
    on call: connexion is an optional dependency."""
    from connexion.resolver import Resolver

    class ApicrudResolver(Resolver):
        def resolve_function_from_operation_id(self, operation_id: str) \
                -> Callable[[], Response]:
            return _view(wsgi_app, operation_id)

    return ApicrudResolver()


class _Deferred:
    """connexion's security handler for every scheme of a mount: apicrud authenticates
    (connexion would warn that the spec names no ``x-bearerInfoFunc`` otherwise)."""

    def get_fn(self, _scheme: Any, _scopes: Any) -> Callable[[Any], dict[str, Any]]:
        return lambda _request: {}


#: connexion's scheme types and http schemes, all deferred to apicrud
_SECURITY_MAP = dict.fromkeys(("basic", "bearer", "apiKey", "oauth2", "openIdConnect"), _Deferred)


def _view(wsgi_app: Any, operation_id: str) -> Callable[[], Response]:
    """A Flask view answering with apicrud's WSGI application for the same request."""

    def apicrud_operation() -> Response:
        import flask
        from werkzeug.wrappers import Response

        return Response.from_app(wsgi_app, flask.request.environ)

    apicrud_operation.__name__ = apicrud_operation.__qualname__ = \
        "apicrud_" + operation_id.replace(".", "_")
    return apicrud_operation


class ApicrudMiddleware:
    """ASGI middleware before connexion's routing: a request under an apicrud mount's base
    path goes to apicrud's WSGI application; others go on."""

    def __init__(self, app: ASGIApp, mounts: list[tuple[str, Any]], apis: list[Any]) -> None:
        self.app = app
        self.mounts = mounts  # [(base_path, asgi bridge)], shared with add_apicrud_api
        self.apis = apis  # connexion's registered APIs (their base_path)
        self._table: list[tuple[str, Any]] | None = None

    def table(self) -> list[tuple[str, Any]]:
        """(prefix, bridge or None), longest prefix first: None for the other APIs' bases
        inside a mount (theirs)."""
        if self._table is None:
            ours = {base for base, _ in self.mounts}
            bridges = dict(self.mounts)
            others = [(api.base_path or "", None) for api in self.apis
                      if (api.base_path or "") not in ours]
            self._table = sorted([(b, bridges[b]) for b in ours] + others,
                                 key=lambda row: len(row[0]), reverse=True)
        return self._table

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") == "http":
            path = scope.get("path", "")
            for prefix, bridge in self.table():
                if path == prefix or path.startswith(prefix + "/"):
                    if bridge is not None:
                        await bridge(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _mounts(cx_app: Any) -> list[tuple[str, Any]]:
    """The mounts of this connexion app, adding apicrud's middleware on the first."""
    middleware = getattr(cx_app, "middleware", cx_app)
    mounts = getattr(middleware, "_apicrud_mounts", None)
    if mounts is None:
        from connexion.middleware import MiddlewarePosition

        mounts = []
        middleware.add_middleware(ApicrudMiddleware, position=MiddlewarePosition.BEFORE_ROUTING,
                                  mounts=mounts, apis=middleware.apis)
        middleware._apicrud_mounts = mounts
    return mounts


def add_apicrud_api(cx_app: Any, project: Any = None, *, base_path: str | None = None,
                    migrate: bool | None = None, swagger_ui_options: Any = None,
                    **overrides: Any) -> Flask:
    """Mount apicrud's resources in a connexion 3 ``FlaskApp`` or ``AsyncApp``.

    :param cx_app: the connexion application (not started yet)
    :param project: a project directory (``service_config.yaml``, ``openapi/``,
        ``rbac.yaml``) or an already loaded ``Settings``; None: the current directory
    :param base_path: where the operations answer (default: the project's ``base_url``);
        apicrud's ``base_url`` is set to it, so links and ``Location`` headers agree
    :param migrate: apply pending migrations now (default: setting ``db_migrate_at_start``)
    :param overrides: further settings, as ``create_app`` takes them
    :returns: apicrud's Flask application (its ``extensions["apicrud"]`` are the services)
    :raises StartupError: the project's declarations are inconsistent
    :raises RuntimeError: the connexion application has started already
    """
    from a2wsgi import WSGIMiddleware
    from a2wsgi.wsgi_typing import WSGIApp

    from apicrud.app import create_app
    from apicrud.config import load_settings

    if project is None or isinstance(project, (str, os.PathLike)):
        if base_path is not None:
            overrides["base_url"] = base_path
        settings = load_settings(root=str(project) if project is not None else None,
                                 **overrides)
    else:
        settings = project.replace(**overrides, **({"base_url": base_path}
                                                   if base_path is not None else {}))
    middleware = getattr(cx_app, "middleware", cx_app)
    if getattr(middleware, "middleware_stack", None) is not None:
        raise RuntimeError("the connexion application has started: mount apicrud before")
    base = settings.base_url.rstrip("/")
    mounts = _mounts(cx_app)
    if any(m[0] == base for m in mounts):
        raise ValueError(f"an apicrud API is mounted at {base} already")
    app = create_app(settings=settings, migrate=migrate)
    services = app.extensions["apicrud"]
    document = connexion_document(services)
    options = {"swagger_ui_options": swagger_ui_options} if swagger_ui_options else {}
    cx_app.add_api(document, base_path=base, name=f"apicrud{base}",
                   resolver=apicrud_resolver(app), security_map=_SECURITY_MAP, **options)
    # a2wsgi types the environ as a TypedDict, Flask as dict[str, Any]: the same object
    mounts.append((base, WSGIMiddleware(cast("WSGIApp", app))))
    return app
