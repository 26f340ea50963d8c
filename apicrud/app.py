"""create_app(): settings -> services -> a WSGI application of Blueprints.

Flask's application-factory shape: :func:`start_services` checks the declarations,
opens the database and Redis and installs the components (:data:`COMPONENTS`, in
order); :func:`create_app` then registers one Blueprint per surface and the headers
every response gets:

- ``api`` (:mod:`apicrud.api`): the spec's operations at setting ``base_url``;
- ``react_admin`` (:mod:`apicrud.api`, dialects in :mod:`apicrud.react_admin`): the same
  operations at setting ``react_admin_url``, unless it is empty;
- ``docs`` (:mod:`apicrud.swagger_ui`): ``{base_url}/openapi.json`` and the Swagger UI;
- ``admin_ui`` (:mod:`apicrud.admin_ui`): the admin UI at ``/admin/`` (setting
  ``admin_ui``);
- :mod:`apicrud.headers`: CORS (``Vary: Origin`` on every response when it is on) and
  ``X-Content-Type-Options: nosniff``, as hooks of the application, so no surface and no
  error escapes them.

Routes come from the spec (a Werkzeug map built at start-up); each routed request runs
the stages of :mod:`apicrud.request_path` (authentication, the operation's security
schemes, roles, guards, parameters, body, the controller, commit), and every error is
rendered as problem+json through its problem map; a URL or method no view answers gets
its problem document from the handlers here.

A response to a signed-in caller, or one setting a cookie (``POST /auth``), says
``Cache-Control: no-store``. ``HEAD`` runs the ``GET`` operation of its path and sends
no body.

Why not connexion's ASGI stack: measured on this machine it serves about half the
requests of plain Flask handlers (see README, "Serving stack"); this path keeps the
spec-first behaviour (validation, security, problem documents) at WSGI speed.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from apicrud import admin_ui, api, headers, swagger_ui
from apicrud.auth.sessions import SessionManager
from apicrud.config import Settings, load_settings
from apicrud.db.engine import Database
from apicrud.errors import MethodNotAllowed, NotFound, PayloadTooLarge, Problem, StartupError
from apicrud.i18n import N_
from apicrud.redis_client import OutageLog, RedisProvider
from apicrud.request_path import (
    DEFAULT_STAGES,
    MAX_BODY,
    default_problems,
    problem_response,
)
from apicrud.services import Services, load_declarations

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


def create_app(root: str | None = None, *, settings: Settings | None = None,
               migrate: bool | None = None, **overrides: Any) -> Flask:
    """Build the WSGI application: the services, then one Blueprint per surface.

    :param root: project root holding ``service_config.yaml``, ``openapi/``, ``rbac.yaml``
    :param settings: an already loaded Settings (else loaded from root, env and overrides)
    :param migrate: apply pending migrations now (default: setting ``db_migrate_at_start``)
    :raises StartupError: the declarations are inconsistent (lists every problem)
    """
    if settings is None:
        settings = load_settings(root=root, **overrides)
    services = start_services(settings, migrate)

    app = Flask("apicrud", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["apicrud"] = services
    app.register_blueprint(api.blueprint(services))  # the spec's operations at base_url
    react_admin = api.react_admin_blueprint(services)  # the same at react_admin_url
    if react_admin is not None:
        app.register_blueprint(react_admin)
    app.register_blueprint(swagger_ui.blueprint(services))  # /openapi.json, /ui/
    admin = admin_ui.blueprint(services)  # /admin/ (setting admin_ui)
    if admin is not None:
        app.register_blueprint(admin)
    headers.init_app(app, services.settings.cors_origins)  # CORS, nosniff: every response
    _add_error_handlers(app)
    return app


def start_services(settings: Settings, migrate: bool | None = None) -> Services:
    """The live services of one process: declarations checked, database and Redis open
    (migrated first when asked), the request path's stages and problem map set, and every
    component of :data:`COMPONENTS` installed, in order.

    :raises StartupError: the declarations are inconsistent (lists every problem)
    """
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
    return services


def _add_error_handlers(app: Flask) -> None:
    """Problem documents for what no view answers: unknown URLs, methods, big bodies."""

    @app.errorhandler(404)
    def _not_found(_exc: HTTPException) -> Response:
        return problem_response(NotFound(N_("no such URL")))

    @app.errorhandler(405)
    def _not_allowed(exc: HTTPException) -> Response:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        return problem_response(MethodNotAllowed(N_("%(method)s is not allowed here",
                                                            method=request.method),
                                         headers={"Allow": allowed} if allowed else None))

    @app.errorhandler(413)
    def _too_large(_exc: HTTPException) -> Response:
        return problem_response(PayloadTooLarge(N_("request body is too large")))

    @app.errorhandler(500)
    def _internal(_exc: Exception) -> Response:
        return problem_response(Problem(N_("internal error")))


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
