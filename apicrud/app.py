"""create_app(): settings -> declarations -> services -> a WSGI application.

Routes come from the spec (a Werkzeug map built at start-up); each routed request runs
the stages of :mod:`apicrud.request_path` (authentication, the operation's security
schemes, roles, guards, parameters, body, the controller, commit), and every error is
rendered as problem+json through its problem map.

Every response says ``X-Content-Type-Options: nosniff``; one to a signed-in caller, or
one setting a cookie (``POST /auth``), says ``Cache-Control: no-store``. ``HEAD`` runs
the ``GET`` operation of its path and sends no body.

Why not connexion's ASGI stack: measured on this machine it serves about half the
requests of plain Flask handlers (see README, "Serving stack"); this path keeps the
spec-first behaviour (validation, security, problem documents) at WSGI speed.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from flask import Flask, Response, request

from apicrud.auth.sessions import SessionManager
from apicrud.config import load_settings
from apicrud.db.engine import Database
from apicrud.errors import MethodNotAllowed, NotFound, PayloadTooLarge, Problem, StartupError
from apicrud.redis_client import OutageLog, RedisProvider
from apicrud.request_path import (
    DEFAULT_STAGES,
    MAX_BODY,
    default_problems,
    dispatch,
    problem_response,
)
from apicrud.services import Services, load_declarations
from apicrud.spec.operations import Operation, flask_rule
from apicrud.i18n import N_

log = logging.getLogger("apicrud")

#: Components that hook into the request path (see apicrud.pipeline), in this order:
#: authenticators first (API keys before sessions: a key is the more specific
#: credential), then guards (rate limits need the principal; scopes need the
#: operation), then observers (metrics count every response, errors included).
COMPONENTS = (
    # connexion's x-bearerInfoFunc & co. (when the spec names them): checked before the
    # authenticators below, for the operations listing those schemes
    "apicrud.connexion_conventions",
    "apicrud.auth.apikeys",  # X-API-KEY (first authenticator); guard: API-key scopes
    "apicrud.auth.external.bearer",  # Bearer JWTs of trusted issuers (jwt_issuers)
    "apicrud.auth.handlers",  # Bearer, Basic and cookie sessions
    "apicrud.audit",  # services.audit: one entry per write, in its transaction
    "apicrud.auth.external.oidc",  # OpenID Connect providers (oidc_providers)
    "apicrud.auth.external.ldap",  # LDAP directory for POST /auth method ldap (ldap)
    "apicrud.worker.outbox",  # services.outbox: messages queued for the worker
    "apicrud.webhooks",  # services.webhooks: change events queued for the worker
    "apicrud.metrics",  # services.metrics/grants; grant create checks; request metrics
    "apicrud.ratelimit.middleware",  # guard: 429 past the caller's limit (services.ratelimit)
    "apicrud.registry",  # announces this instance in Redis (services.registry)
    "apicrud.logs",  # observer: one structured line per request (logger apicrud.request)
)


def create_app(root: str | None = None, *, settings=None, migrate: bool | None = None,
               **overrides: Any) -> Flask:
    """Build the WSGI application.

    :param root: project root holding ``service_config.yaml``, ``openapi/``, ``rbac.yaml``
    :param settings: an already loaded Settings (else loaded from root, env and overrides)
    :param migrate: apply pending migrations now (default: setting ``db_migrate_at_start``)
    :raises StartupError: the declarations are inconsistent (lists every problem)
    """
    if settings is None:
        settings = load_settings(root=root, **overrides)
    decl = load_declarations(settings)
    if decl.problems:
        raise StartupError(decl.problems)
    redis_provider = RedisProvider(settings.redis_url, settings.path("data_dir"))
    db = Database(settings.sqlalchemy_url, pool_size=settings.db_pool_size,
                  echo=settings.sql_echo)
    if settings.db_migrate_at_start if migrate is None else migrate:
        from apicrud.db.migrate import upgrade_with_lock

        upgrade_with_lock(settings, redis_provider.client)
    sessions = SessionManager(redis_provider.client, settings.secret_key,
                              ttl=settings.session_ttl, expiry=settings.session_expiry,
                              limit=settings.session_limit_per_user,
                              max_lifetime=settings.session_max_lifetime)
    services = Services(settings, decl, db, redis_provider, sessions)
    # an outage fails every request: log it once per interval, with a count
    services.redis_outage = OutageLog(log, "redis unavailable")
    services.database_outage = OutageLog(log, "database unavailable")
    services.unavailable = OutageLog(log, "service unavailable")
    _bind_columns(services)
    for op in decl.operations:
        op.freeze()
    services.pipeline.stages[:] = DEFAULT_STAGES
    services.pipeline.problems = default_problems()
    from apicrud.auth.passwords import warm_up

    warm_up()  # the timing-equalising dummy hash, before the first login
    for name in COMPONENTS:
        importlib.import_module(name).init_app(services)

    app = Flask("apicrud", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["apicrud"] = services
    _add_routes(app, services)
    from apicrud.swagger_ui import add_docs  # /openapi.json and the Swagger UI at /ui/

    add_docs(app, services)
    from apicrud.admin_ui import add_admin_ui  # /admin/ (setting admin_ui)

    add_admin_ui(app, services)

    _add_cors(app, services)
    _add_security_headers(app)

    @app.errorhandler(404)
    def _not_found(_exc):
        return problem_response(NotFound(N_("no such URL")))

    @app.errorhandler(405)
    def _not_allowed(exc):
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        return problem_response(MethodNotAllowed(N_("%(method)s is not allowed here",
                                                            method=request.method),
                                         headers={"Allow": allowed} if allowed else None))

    @app.errorhandler(413)
    def _too_large(_exc):
        return problem_response(PayloadTooLarge(N_("request body is too large")))

    @app.errorhandler(500)
    def _internal(_exc):
        return problem_response(Problem(N_("internal error")))

    return app


#: operations whose JSON body is written to the resource's columns as given
_WRITES = ("create", "update", "patch")


def _bind_columns(services: Services) -> None:
    """Let create and update bodies be checked against the columns they are written to
    (integer ranges, string lengths, date-times: see Operation.bind_columns)."""
    for op in services.decl.operations:
        res = services.resources.get(op.resource)
        if op.action in _WRITES and op.body_schema and res is not None and \
                res.model is not None:
            op.bind_columns(res.fields)


def _add_routes(app: Flask, services: Services) -> None:
    by_path: dict[str, dict[str, Operation]] = {}
    for op in services.decl.operations:
        by_path.setdefault(op.path, {})[op.method.upper()] = op
    bases = [(services.base_url, False)]
    ra_url = services.settings.react_admin_url.rstrip("/")
    if ra_url:
        bases.append((ra_url, True))
    for base, react_admin in bases:
        for path, ops in by_path.items():
            def view(_ops=ops, _ra=react_admin, **path_args):
                method = request.method
                op = _ops.get("GET" if method == "HEAD" and method not in _ops else method)
                if op is None:  # a method Werkzeug routed but the spec lacks
                    return problem_response(MethodNotAllowed(
                        N_("%(method)s is not allowed here", method=request.method),
                        headers={"Allow": ", ".join(sorted(_ops))}))
                return dispatch(services, op, path_args, _ra)

            app.add_url_rule(base + flask_rule(path), endpoint=("ra:" if react_admin else "")
                             + path, view_func=view, methods=list(ops))


CORS_REQUEST_HEADERS = "Authorization, Content-Type, Range, If-Match, X-API-KEY, " \
    "X-CSRF-Token, X-Request-ID"
CORS_EXPOSED_HEADERS = "Content-Range, X-Total-Count, ETag, Location, X-Request-ID, " \
    "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy"


def _add_cors(app: Flask, services: Services) -> None:
    """CORS for the configured origins (setting cors_origins; "*" allows any origin,
    without credentials)."""
    origins = set(services.settings.cors_origins)
    if not origins:
        return

    @app.after_request
    def _cors(response: Response) -> Response:
        # every answer depends on Origin (allowed or not): caches must key on it
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if not origin or (origin not in origins and "*" not in origins):
            return response
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        else:
            response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = \
                "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response


def _add_security_headers(app: Flask) -> None:
    """``X-Content-Type-Options: nosniff`` on every response: a browser must never run a
    JSON answer (or anything else served here) as another content type."""

    @app.after_request
    def _nosniff(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
