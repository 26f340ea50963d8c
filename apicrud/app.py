"""create_app(): settings -> declarations -> services -> a WSGI application.

Request path, in order (one function, no per-request reflection):

1. route match (Werkzeug map built from the spec at start-up);
2. authentication (API key, Bearer, Basic, cookie + CSRF); 401 unless the operation is
   public (there invalid credentials are ignored: the request runs anonymous);
3. parameter coercion and validation, JSON body parsing and validation (400 naming fields);
4. the controller method bound to the operation at start-up;
5. commit on success, rollback on any error; every error rendered as problem+json.

Every response says ``X-Content-Type-Options: nosniff``; one to a signed-in caller, or
one setting a cookie (``POST /auth``), says ``Cache-Control: no-store``. ``HEAD`` runs
the ``GET`` operation of its path and sends no body.

Why not connexion's ASGI stack: measured on this machine it serves about half the
requests of plain Flask handlers (see README, "Serving stack"); this path keeps the
spec-first behaviour (validation, security, problem documents) at WSGI speed.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import uuid
from dataclasses import replace
from collections.abc import Iterator
from typing import Any

import redis.exceptions
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from apicrud.auth.principal import ANONYMOUS
from apicrud.auth.sessions import SessionManager
from apicrud.config import load_settings
from apicrud.context import Reply, RequestContext
from apicrud.db.engine import Database
from apicrud.files.upload import is_multipart, open_raw, open_upload
from apicrud.errors import (
    BadRequest,
    Conflict,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    StartupError,
    Unauthorized,
    UnsupportedMediaType,
)
from apicrud.redis_client import OutageLog, RedisProvider
from apicrud.pipeline import RequestRecord
from apicrud.react_admin import shape_reply, translate_query
from apicrud.services import Services, load_declarations
from apicrud.spec.operations import Operation, flask_rule

log = logging.getLogger("apicrud")

#: Components that hook into the request path (see apicrud.pipeline), in this order:
#: authenticators first (API keys before sessions: a key is the more specific
#: credential), then guards (rate limits need the principal; scopes need the
#: operation), then observers (metrics count every response, errors included).
COMPONENTS = (
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
MAX_BODY = 1024 * 1024
JSON_TYPE = "application/json"


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
        return _problem(NotFound("no such URL"))

    @app.errorhandler(405)
    def _not_allowed(exc):
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        return _problem(MethodNotAllowed(f"{request.method} is not allowed here",
                                         headers={"Allow": allowed} if allowed else None))

    @app.errorhandler(413)
    def _too_large(_exc):
        return _problem(PayloadTooLarge("request body is too large"))

    @app.errorhandler(500)
    def _internal(_exc):
        return _problem(Problem("internal error"))

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


def _problem(problem: Problem) -> Response:
    body, status, headers = problem.render(request.path)
    return Response(body, status, headers)


def _render(reply: Reply) -> Response:
    if reply.body is None:
        resp = Response(status=reply.status)
    elif isinstance(reply.body, bytes):  # encoded by the controller (Content-Type header)
        resp = Response(reply.body, reply.status)
    elif isinstance(reply.body, Iterator):  # streamed (a file download): chunks of bytes
        resp = Response(reply.body, reply.status, direct_passthrough=True)
    else:
        resp = Response(json.dumps(reply.body, separators=(",", ":")) + "\n", reply.status,
                        mimetype=JSON_TYPE)
    for key, value in reply.headers.items():
        resp.headers[key] = value
    for cookie in reply.cookies:
        resp.set_cookie(**cookie)
    return resp


def _read_body(op: Operation) -> tuple[bool, Any]:
    """(whether a body was sent, the parsed JSON).

    :raises PayloadTooLarge: more than MAX_BODY bytes, declared or (chunked) streamed
    """
    limit = request.max_content_length or MAX_BODY
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        # a chunked body: Werkzeug would cut it at the limit and hand back the first
        # part as if it were all; read one byte more than allowed to tell
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    else:
        raw = request.get_data(cache=False)  # 413 past a declared Content-Length
    if not raw:
        if op.body_required:
            raise BadRequest("a JSON request body is required",
                             errors={"body": "is required"})
        return False, None
    ctype = (request.mimetype or "").lower()
    if ctype != JSON_TYPE and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"send {JSON_TYPE}, not {ctype or 'no content type'}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON: {exc}"[:200], errors={"body": "malformed JSON"}) \
            from None
    bad = _unstorable(body)
    if bad is not None:
        raise BadRequest(f"{bad}: contains a NUL character or an unpaired surrogate",
                         errors={bad: "contains a NUL character or an unpaired surrogate"})
    return True, body


def _unstorable(value: Any, path: str = "body", depth: int = 0) -> str | None:
    """The first field holding text no database can store (NUL, lone surrogates)."""
    if depth > 32:
        return path
    if isinstance(value, str):
        if "\x00" in value:
            return path
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, path, depth + 1) or \
                _unstorable(item, key if path == "body" else f"{path}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


def _request_id() -> str:
    given = request.headers.get("X-Request-ID", "")
    # accept a caller's id only if it is short and plain: it goes into logs and headers
    if 0 < len(given) <= 64 and all(c.isalnum() or c in "-_.:" for c in given):
        return given
    return uuid.uuid4().hex


def _dispatch(services: Services, op: Operation, path_args: dict[str, str],
              react_admin: bool = False) -> Response:
    started = time.perf_counter()
    request_id = _request_id()
    ctx: RequestContext | None = None
    principal = ANONYMOUS
    try:
        principal = services.pipeline.authenticate(request, op)
        if not op.public and not principal.authenticated:
            raise Unauthorized()
        if principal.authenticated and services.roles.sources:
            levels, kinds, via = services.roles.for_uid_via(principal.uid)
            principal = replace(principal, memberships=levels, membership_kinds=kinds,
                                membership_via=via)
        ctx = RequestContext(services, op, principal, {}, None, request.headers,
                             request.remote_addr, request.scheme, request_id, request.method)
        for guard in services.pipeline.guards:
            guard(ctx)
        args = request.args
        is_list = react_admin and op.method == "get" and any(
            p.name == "filter" for p in op.params) and not path_args
        if is_list:
            res = services.resources.get(op.resource)
            args = translate_query(args, request.headers, res.fields if res else {})
        ctx.params = op.parse_params(path_args, args, request.headers)
        if op.multipart_schema is not None and (is_multipart(request.content_type) or
                                                op.body_validator is None):
            # an upload: its controller reads the parts as they arrive (apicrud.files)
            ctx.upload = open_upload(request.environ, services.settings)
        elif op.binary_body:  # raw bytes, read by the controller as they arrive
            ctx.upload = open_raw(request.environ, services.settings)
        elif op.body_validator is not None:
            present, ctx.body = _read_body(op)
            if present:  # a JSON null is present, and fails an object schema
                op.validate_body(ctx.body, partial=request.method in ("PUT", "PATCH"))
        reply = op.handler(ctx)
        if is_list:
            reply = shape_reply(reply, op.resource, ctx.params.get("offset") or 0)
        ctx.finish(True)
        response = _render(reply)
    except Problem as exc:
        if isinstance(exc, ServiceUnavailable):  # an outage: once per interval, counted
            services.unavailable(request.method, request.path, exc.detail)
        elif exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc.detail)
        response = _fail(ctx, exc)
    except IntegrityError:
        response = _fail(ctx, Conflict("conflicts with an existing record"))
    except StaleDataError:  # a concurrent change surfacing only at commit
        response = _fail(ctx, Conflict("changed by another request at the same time; retry"))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        services.redis_outage(request.method, request.path)
        response = _fail(ctx, ServiceUnavailable("redis is unavailable"))
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not (isinstance(exc, OperationalError) or
                                                exc.connection_invalidated):
            log.exception("database error during %s %s", request.method, request.path)
            response = _fail(ctx, Problem("internal error"))
        else:
            services.database_outage(request.method, request.path)
            response = _fail(ctx, ServiceUnavailable("database is unavailable"))
    except HTTPException as exc:  # from reading the body: too large (413), cut off (400)
        code = exc.code or 400
        if code >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        if code == 413:
            problem: Problem = PayloadTooLarge(f"request body is larger than {MAX_BODY} bytes")
        else:
            problem = Problem(exc.description, status=code, title=exc.name,
                              slug="bad-request" if code == 400 else "http-error")
        response = _fail(ctx, problem)
    except Exception:
        log.exception("unhandled error during %s %s", request.method, request.path)
        response = _fail(ctx, Problem("internal error"))
    if ctx is not None:
        principal = ctx.principal
        for key, value in ctx.response_headers.items():
            response.headers.setdefault(key, value)
    if principal.authenticated or "Set-Cookie" in response.headers:
        # a signed-in caller's data, or a session credential: no cache may keep it
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Request-ID"] = request_id
    services.pipeline.observe(RequestRecord(
        request.method, request.path, op.operation_id, op.resource, op.action,
        response.status_code, time.perf_counter() - started, principal, request_id,
        request.remote_addr))
    return response


def _fail(ctx: RequestContext | None, problem: Problem) -> Response:
    if ctx is not None:
        try:
            ctx.finish(False)
        except Exception:  # the connection may be gone already; the error stands
            log.warning("rollback failed", exc_info=True)
    return _problem(problem)


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
                    return _problem(MethodNotAllowed(
                        f"{request.method} is not allowed here",
                        headers={"Allow": ", ".join(sorted(_ops))}))
                return _dispatch(services, op, path_args, _ra)

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
