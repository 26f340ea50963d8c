"""One request, from a routed operation to a response: a list of named stages, and a map
from exceptions to problem documents.

:func:`dispatch` runs ``services.pipeline.stages`` in order on a :class:`Call` (the
request's state), renders the reply, and turns any exception into a problem document
through ``services.pipeline.problems`` (a :class:`ProblemMap`, looked up by the
exception's class hierarchy, as Flask's ``errorhandler`` is). The default stages:

1. ``authenticate``: the pipeline's credential guards and authenticators; 401 unless the
   operation is public (there invalid credentials are ignored);
2. ``check_scheme``: only the security schemes the operation lists may authenticate it
   (see :mod:`apicrud.auth.schemes`);
3. ``load_roles``: the caller's membership levels (apicrud.access.roles);
4. ``open_context``: the :class:`~apicrud.context.RequestContext`;
   ``choose_language``: the language of the request's messages (problems, mails), decided
   on first use (see :func:`request_language`), so a request that needs none pays nothing;
5. ``run_guards``: rate limits, API-key scopes (``pipeline.guards``);
6. ``read_parameters``: query, path and header parameters (react-admin's query
   translated first on its base path);
7. ``read_body``: a JSON body validated against the spec, or an upload opened as a
   stream;
8. ``handle``: the controller method bound to the operation;
9. ``commit``: commit (with the audit entries), then the after-commit steps.

A failure at any stage rolls the transaction back. Components may insert stages of
their own (``services.pipeline.stages``) and map their own exceptions
(``services.pipeline.problems.register``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
from flask import Response, current_app, request
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.context import Reply, RequestContext
from apicrud.db.integrity import integrity_problem
from apicrud.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from apicrud.files.data_url import is_json, open_data_url
from apicrud.files.upload import is_multipart, open_raw, open_upload
from apicrud.i18n import N_, SOURCE_LANGUAGE, N_as, choose_locale, language_of, negotiate
from apicrud.pipeline import ROLES_READ, RequestRecord
from apicrud.react_admin import shape_reply, translate_query

log = logging.getLogger("apicrud")

MAX_BODY = 1024 * 1024
JSON_TYPE = "application/json"


@dataclass
class Call:
    """What the stages of one request share."""

    services: Any
    operation: Any
    path_args: dict[str, str]
    react_admin: bool
    request_id: str
    principal: Principal = ANONYMOUS
    ctx: RequestContext | None = None
    reply: Reply | None = None
    query: Any = None  # the query arguments the parameters are read from
    ra_list: bool = False  # a react-admin list request (its query translated)
    state: dict[str, Any] = field(default_factory=dict)  # for stages of components
    language: str | None = None  # the messages' language, once decided (request_language)
    #: the request (Werkzeug's object itself: each use of Flask's ``request`` proxy
    #: looks it up in the context again); set by dispatch
    request: Any = None


Stage = Callable[[Call], None]


# -- the default stages ---------------------------------------------------------------
def authenticate(call: Call) -> None:
    op = call.operation
    call.principal = call.services.pipeline.authenticate(call.request or request, op)
    if not op.public and not call.principal.authenticated:
        raise Unauthorized()


def check_scheme(call: Call) -> None:
    op, principal = call.operation, call.principal
    accepted = op.credential_methods
    if accepted is None or not principal.authenticated or principal.method in accepted:
        return
    if op.public:  # credentials it doesn't take are ignored, as invalid ones are
        call.principal = ANONYMOUS
        return
    raise Unauthorized(N_("this operation does not accept %(method)s credentials "
                          "(it takes: %(accepted)s)", method=principal.method,
                          accepted=", ".join(sorted(accepted))))


def load_roles(call: Call) -> None:
    roles = call.services.roles
    principal = call.principal
    if principal.authenticated and roles.sources:
        # read with the session, in this request, when the authenticator could
        read = (call.request or request).environ.pop(ROLES_READ, None)
        raw = read.get(principal.uid) if read else None
        levels, kinds, via = roles.for_uid_via(principal.uid, raw)
        call.principal = principal.with_memberships(levels, kinds, via)


def open_context(call: Call) -> None:
    req = call.request or request
    call.ctx = RequestContext(call.services, call.operation, call.principal, {}, None,
                              req.headers, req.remote_addr, req.scheme,
                              call.request_id, req.method)


def _ctx(call: Call) -> RequestContext:
    """The request's context, which the stages after open_context rely on."""
    if call.ctx is None:
        raise RuntimeError("a stage ran before open_context")
    return call.ctx


def choose_language(call: Call) -> None:
    _ctx(call).language_of = lambda: request_language(call)


def request_language(call: Call) -> str:
    """The language of the caller's messages: a signed-in account's ``settings.locale``
    when a catalog is shipped for it, else the best of ``Accept-Language``, else the
    setting ``default_locale``. Decided once per request, when first needed."""
    if call.language is None:
        principal = call.ctx.principal if call.ctx is not None else call.principal
        header = request.headers.get("Accept-Language")
        locale = None
        if principal.authenticated and principal.account_id:
            session = call.ctx.open_session if call.ctx is not None else None
            locale = _account_locale(call.services, principal.account_id, session)
        default = call.services.settings.default_locale
        if locale is None and not header:  # the common case: nothing to negotiate
            call.language = language_of(default) or SOURCE_LANGUAGE
        else:
            call.language = choose_locale(locale, header, default)
    return call.language


def _account_locale(services: Any, account_id: str, session: Any) -> str | None:
    """Through the request's open transaction when there is one: a second session
    could wait for its locks (SQLite's writer, a row it holds FOR UPDATE)."""
    from apicrud.auth.account_settings import AccountSettings

    if getattr(services.models, "Settings", None) is None:
        return None  # an application without account settings: the header decides
    try:
        settings = AccountSettings(account_id, services)
        return settings.locale_in(session) if session is not None else settings.locale
    except Exception:  # Redis or the database away, the account gone: the header decides
        log.warning("settings of account %s unreadable; language from the request",
                    account_id, exc_info=True)
        return None


def run_guards(call: Call) -> None:
    for guard in call.services.pipeline.guards:
        guard(call.ctx)


def read_parameters(call: Call) -> None:
    op = call.operation
    req = call.request or request
    call.query = req.args
    call.ra_list = call.react_admin and op.lists
    if call.ra_list:
        res = call.services.resources.get(op.resource)
        call.query = translate_query(call.query, req.headers, res.fields if res else {})
    _ctx(call).params = op.parse_params(call.path_args, call.query, req.headers)


def read_body(call: Call) -> None:
    op, ctx = call.operation, _ctx(call)
    req = call.request or request
    if op.multipart_schema is not None and call.react_admin and \
            is_json(req.content_type) and op.body_validator is None:
        # react-admin's JSON recipe: the file as a base64 data: URL (apicrud.files)
        ctx.upload = open_data_url(req.environ, call.services.settings, op)
    elif op.multipart_schema is not None and (is_multipart(req.content_type) or
                                            op.body_validator is None):
        # an upload: its controller reads the parts as they arrive (apicrud.files)
        ctx.upload = open_upload(req.environ, call.services.settings)
    elif op.binary_body:  # raw bytes, read by the controller as they arrive
        ctx.upload = open_raw(req.environ, call.services.settings)
    elif op.body_validator is not None:
        present, ctx.body = json_body(op, req)
        if present:  # a JSON null is present, and fails an object schema
            op.validate_body(ctx.body, partial=req.method in ("PUT", "PATCH"))


def handle(call: Call) -> None:
    call.reply = call.operation.handler(call.ctx)
    if call.ra_list:
        call.reply = shape_reply(call.reply, call.operation.resource,
                                 _ctx(call).params.get("offset") or 0)


def commit(call: Call) -> None:
    _ctx(call).finish(True)


DEFAULT_STAGES: tuple[Stage, ...] = (authenticate, check_scheme, load_roles, open_context,
                                     choose_language, run_guards, read_parameters, read_body,
                                     handle, commit)


# -- exceptions -> problems -------------------------------------------------------------
Handler = Callable[[BaseException, Call], Problem]


class ProblemMap:
    """Exception class -> the problem it becomes; the nearest class in the exception's
    method resolution order wins (an ``IntegrityError`` before the ``DBAPIError`` it is)."""

    def __init__(self) -> None:
        self._handlers: dict[type[BaseException], Handler] = {}

    def register(self, exc_class: type[BaseException], handler: Handler) -> None:
        self._handlers[exc_class] = handler

    def problem_for(self, exc: BaseException, call: Call) -> Problem:
        for klass in type(exc).__mro__:
            handler = self._handlers.get(klass)
            if handler is not None:
                return handler(exc, call)
        raise exc  # nothing maps it (not even Exception): not ours to answer


def _where() -> tuple[str, str]:
    return request.method, request.path


def _known_problem(exc: Problem, call: Call) -> Problem:
    if isinstance(exc, ServiceUnavailable):  # an outage: once per interval, counted
        call.services.unavailable(*_where(), exc.detail)
    elif exc.status >= 500:
        log.error("%s %s: %s", *_where(), exc.detail)
    return exc


def _redis_down(_exc: BaseException, call: Call) -> Problem:
    call.services.redis_outage(*_where())
    return ServiceUnavailable(N_("redis is unavailable"))


def _database_down(_exc: BaseException, call: Call) -> Problem:
    call.services.database_outage(*_where())
    return ServiceUnavailable(N_("database is unavailable"))


def _database_error(exc: BaseException, call: Call) -> Problem:
    if getattr(exc, "connection_invalidated", False):  # the connection broke mid-request
        return _database_down(exc, call)
    log.error("database error during %s %s", *_where(), exc_info=exc)
    return Problem(N_("internal error"))


def _http_exception(exc: BaseException, _call: Call) -> Problem:
    """Werkzeug's, from reading the body: too large (413), cut off (400)."""
    code = getattr(exc, "code", None) or 400
    if code >= 500:
        log.error("%s %s: %s", *_where(), exc)
    if code == 413:
        return PayloadTooLarge(N_("request body is larger than %(limit)s bytes",
                                  limit=MAX_BODY))
    return Problem(getattr(exc, "description", None) or str(exc), status=code,
                   title=getattr(exc, "name", None),
                   slug="bad-request" if code == 400 else "http-error")


def _integrity(exc: BaseException, _call: Call) -> Problem:
    return integrity_problem(exc)  # type: ignore[arg-type]


def _unexpected(exc: BaseException, _call: Call) -> Problem:
    log.error("unhandled error during %s %s", *_where(), exc_info=exc)
    return Problem(N_("internal error"))


def default_problems() -> ProblemMap:
    problems = ProblemMap()
    problems.register(Problem, _known_problem)  # type: ignore[arg-type]
    problems.register(IntegrityError, _integrity)
    problems.register(StaleDataError, lambda _exc, _call: Conflict(
        N_("changed by another request at the same time; retry")))
    problems.register(redis.exceptions.ConnectionError, _redis_down)
    problems.register(redis.exceptions.TimeoutError, _redis_down)
    problems.register(OperationalError, _database_down)
    problems.register(DBAPIError, _database_error)
    problems.register(HTTPException, _http_exception)
    problems.register(Exception, _unexpected)
    return problems


# -- the request ------------------------------------------------------------------------
def request_id(req: Any = None) -> str:
    given = (req or request).headers.get("X-Request-ID", "")
    # accept a caller's id only if it is short and plain: it goes into logs and headers
    if 0 < len(given) <= 64 and given.isascii() and \
            all(c.isalnum() or c in "-_.:" for c in given):
        return given
    return os.urandom(16).hex()  # 128 random bits, as uuid4 gave, at a fifth of its cost


def dispatch(services: Any, op: Any, path_args: dict[str, str],
             react_admin: bool = False) -> Response:
    started = time.perf_counter()
    req = request._get_current_object()  # type: ignore[attr-defined]
    call = Call(services, op, path_args, react_admin, request_id(req), request=req)
    pipeline = services.pipeline
    try:
        for stage in pipeline.stages:
            stage(call)
        response = render(call.reply)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001  any failure becomes a problem reply
        response = _fail(call, pipeline.problems.problem_for(exc, call))
    principal = call.principal
    if call.ctx is not None:
        principal = call.ctx.principal
        for key, value in call.ctx.response_headers.items():
            response.headers.setdefault(key, value)
    if principal.authenticated or "Set-Cookie" in response.headers:
        # a signed-in caller's data, or a session credential: no cache may keep it
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Request-ID"] = call.request_id
    pipeline.observe(RequestRecord(
        req.method, req.path, op.operation_id, op.resource, op.action,
        response.status_code, time.perf_counter() - started, principal, call.request_id,
        req.remote_addr))
    if call.ctx is not None:
        # the context's language_of closes over the call, which holds the context: left
        # so, each request would wait for the cyclic collector to be freed
        language = call.language or SOURCE_LANGUAGE
        call.ctx.language_of = lambda: language
    return response


def _fail(call: Call, problem: Problem) -> Response:
    ctx = call.ctx
    if ctx is not None:
        try:
            ctx.finish(False)
        except Exception:  # the connection may be gone already; the error stands
            log.warning("rollback failed", exc_info=True)
    try:
        language = request_language(call)
    except Exception:  # never let the choice of words hide the problem itself
        log.warning("no language for the problem; English", exc_info=True)
        language = SOURCE_LANGUAGE
    return problem_response(problem, language)


def problem_response(problem: Problem, language: str | None = None) -> Response:
    """The problem document in ``language``; without one (a request no operation
    answers), in the best language of ``Accept-Language`` or the default."""
    if language is None:
        language = negotiate(request.headers.get("Accept-Language"))
        if language is None:
            services = current_app.extensions.get("apicrud")
            default = services.settings.default_locale if services is not None else ""
            language = language_of(default) or SOURCE_LANGUAGE
    body, status, headers = problem.render(request.path, language)
    return Response(body, status, headers)


def render(reply: Reply) -> Response:
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


def json_body(op: Any, req: Any = None) -> tuple[bool, Any]:
    """(whether a body was sent, the parsed JSON).

    :raises PayloadTooLarge: more than MAX_BODY bytes, declared or (chunked) streamed
    """
    req = req or request
    limit = req.max_content_length or MAX_BODY
    if req.content_length is None and req.environ.get("wsgi.input_terminated"):
        # a chunked body: Werkzeug would cut it at the limit and hand back the first
        # part as if it were all; read one byte more than allowed to tell
        raw = req.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes", limit=limit))
    else:
        raw = req.get_data(cache=False)  # 413 past a declared Content-Length
    if not raw:
        if op.body_required:
            raise BadRequest(N_("a JSON request body is required"),
                             errors={"body": N_("is required")})
        return False, None
    ctype = (req.mimetype or "").lower()
    if ctype != JSON_TYPE and not ctype.endswith("+json"):
        raise UnsupportedMediaType(N_("send %(wanted)s, not %(given)s", wanted=JSON_TYPE,
                                      given=ctype or N_("no content type")))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        english = f"malformed JSON: {exc}"[:200]  # the parser's own words
        raise BadRequest(N_as(english, "malformed JSON: %(problem)s", problem=str(exc)[:160]),
                         errors={"body": N_("malformed JSON")}) from None
    bad = _unstorable(body)
    if bad is not None:
        raise BadRequest(N_("%(field)s: contains a NUL character or an unpaired surrogate",
                            field=bad),
                         errors={bad: N_("contains a NUL character or an unpaired surrogate")})
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
