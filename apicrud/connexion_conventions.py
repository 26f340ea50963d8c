"""connexion's spec conventions on apicrud's engine: a spec and handlers written for
connexion 3 run under ``apicrud serve`` (connexion itself is not needed).

Handlers. An operation is a connexion handler, not a resource's, when it says
``x-openapi-router-controller`` (on the operation or its path item), when its
operationId is dotted and its first part names no resource of ``x-apicrud-resources``,
or when it has no operationId and the document's root says ``x-apicrud-resolver:
{resty: MODULE}``. Its function is found as connexion's resolvers find it:

- ``Resolver``: ``<x-openapi-router-controller>.<operationId>``, else the operationId;
- ``RestyResolver(MODULE)`` (no operationId): ``MODULE.<path's fixed parts, dotted>``
  (or the router controller) and ``search`` for a GET of a collection, else the method
  (``get``, ``post``, ``put``, ``patch``, ``delete``);
- the dotted name is imported as connexion does: the longest importable module prefix,
  then attributes (``pkg.module.Class.method``).

A name that does not resolve is a start-up problem, as any unroutable operationId is.

The function is called the way connexion calls it: path and query parameters as keyword
arguments (checked and coerced by apicrud against the spec first; names made
identifiers as connexion's default ``sanitized`` does), the JSON body as ``body`` (or the
request body's ``x-body-name``), ``user`` and ``token_info`` from the security check, and
``context_`` holding both; only the names its signature takes, unless it takes
``**kwargs``. It may return a body, ``(body, status)``, ``(body, status, headers)``,
``(body, headers)`` or a Flask/Werkzeug response; ``None`` is a 204. A raised
connexion ``ProblemException`` keeps its status, title and detail. RBAC does not apply
to such operations (they name no resource); authentication and the operation's security
schemes do, and the transaction the handler may open is committed as any other.

Authenticator hooks. A security scheme with ``x-bearerInfoFunc`` (``http`` bearer),
``x-basicInfoFunc`` (``http`` basic) or ``x-apikeyInfoFunc`` (``apiKey`` in a header,
query or cookie) is checked by that function for the operations listing it (its
Principal method is ``info:<function>``, see apicrud.auth.schemes): bearer ``f(token)``,
basic ``f(username, password)``, API key ``f(key)``, each also given ``required_scopes``
and ``request`` (Flask's) when it takes them. A dict is the caller's token info (its
``sub``, else ``uid``, is the Principal's uid; neither: ``info:<scheme>``); ``None``
refuses with 401, and so does an exception it raises (a connexion ``ProblemException``
keeps its status and detail; another is logged by type only). The credential-failure
hooks (rate limits on failed credentials) see
those 401s as they see apicrud's own. An operation listing such a scheme beside
apicrud's own schemes is authenticated by apicrud's when the scheme's credential is
absent.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
from collections.abc import Callable
from typing import Any, NoReturn

from apicrud.auth.principal import Principal
from apicrud.auth.schemes import info_function
from apicrud.context import Reply
from apicrud.errors import Problem, Unauthorized
from apicrud.i18n import N_
from apicrud.pipeline import CREDENTIAL_GIVEN

ROUTER_KEY = "x-openapi-router-controller"

log = logging.getLogger("apicrud")


# -- which operations, which function --------------------------------------------------
def _path_item(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """The path item's own keys (a bundled one has them inline; a ``$ref`` into the
    document is followed, without inlining what it holds)."""
    from apicrud.spec.loader import dereference

    item = (spec.get("paths") or {}).get(path) or {}
    if isinstance(item, dict) and isinstance(item.get("$ref"), str):
        item = dereference({"$ref": item["$ref"]}, spec)
    return item if isinstance(item, dict) else {}


def applies(op: Any, spec: dict[str, Any], resources: dict[str, Any]) -> bool:
    """Whether ``op`` follows connexion's conventions rather than apicrud's."""
    if ROUTER_KEY in op.spec or ROUTER_KEY in _path_item(spec, op.path):
        return True
    if not op.operation_id:
        return bool(_resty_module(spec))
    first, dot, _ = op.operation_id.partition(".")
    return bool(dot) and first not in resources


def _resty_module(spec: dict[str, Any]) -> str | None:
    resolver = spec.get("x-apicrud-resolver")
    return resolver.get("resty") if isinstance(resolver, dict) else None


def function_name(op: Any, spec: dict[str, Any]) -> str:
    """The dotted name connexion's Resolver (or RestyResolver) would import for ``op``."""
    controller = op.spec.get(ROUTER_KEY) or _path_item(spec, op.path).get(ROUTER_KEY)
    if op.operation_id:
        return f"{controller}.{op.operation_id}" if controller else op.operation_id
    parts = [p for p in op.path.split("/") if p]
    fixed = ".".join(p for p in parts if not (p.startswith("{") and p.endswith("}")))
    fixed = fixed.replace("-", "_")
    module = controller or ".".join(x for x in (_resty_module(spec), fixed) if x)
    collection = op.method == "get" and fixed and not parts[-1].startswith("{")
    return f"{module}.{'search' if collection else op.method}"


def import_function(name: str) -> Any:
    """``pkg.module.attr.attr``: the longest importable module, then attributes.

    :raises ImportError, AttributeError, ValueError: nothing of that name
    """
    if not name:
        raise ValueError("empty function name")
    module_name, _, rest = name.rpartition(".")
    attrs = [rest]
    while True:
        try:
            obj = importlib.import_module(module_name) if module_name else None
            break
        except ImportError:
            if "." not in module_name:
                raise
            module_name, _, part = module_name.rpartition(".")
            attrs.insert(0, part)
    if obj is None:
        raise ValueError(f"{name!r} names no module")
    for attr in attrs:
        obj = getattr(obj, attr)
    return obj


def bind(op: Any, spec: dict[str, Any]) -> str | None:
    """Resolve ``op``'s function and make it the operation's handler; the problem when it
    does not resolve."""
    name = function_name(op, spec)
    try:
        function = import_function(name)
    except (ImportError, AttributeError, ValueError) as exc:
        return ("resolves to nothing (expected <resource>.<method> of x-apicrud-resources, "
                f"or a function connexion's resolver imports: {name}: {exc})")
    if not callable(function):
        return f"resolves to {name}, which is not callable"
    op.resource, op.action = "", name.rpartition(".")[2]
    op.handler = ConnexionHandler(function, op, name)
    return None


# -- calling the handler ---------------------------------------------------------------
def sanitized(name: str) -> str:
    """A parameter name as connexion's default hands it over: ``a[b]`` -> ``a_b``, other
    characters outside [0-9A-Za-z_] dropped, leading non-letters dropped."""
    name = re.sub(r"\[(?!])", "_", name)
    name = re.sub(r"[^0-9a-zA-Z_]", "", name)
    return re.sub(r"^[^a-zA-Z_]+", "", name)


class ConnexionHandler:
    """The operation's handler: ``handler(ctx) -> Reply`` around a connexion function."""

    def __init__(self, function: Callable[..., Any], op: Any, name: str = "") -> None:
        self.function = function
        self.name = name  # the dotted name it was resolved from
        target = inspect.unwrap(function)
        params = inspect.signature(target).parameters.values()
        self.takes_all = any(p.kind is p.VAR_KEYWORD for p in params)
        self.names = {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        body = op.spec.get("requestBody") or {}
        self.body_name = sanitized(body.get("x-body-name", "body")) if body else None
        self.passed = {p.name: sanitized(p.name) for p in op.params
                       if p.location in ("path", "query")}
        self.json_reply = _declares_json(op.spec)

    def wants(self, name: str) -> bool:
        return self.takes_all or name in self.names

    def __call__(self, ctx: Any) -> Reply:
        import flask

        kwargs: dict[str, Any] = {}
        for name, key in self.passed.items():
            if name in ctx.params and self.wants(key):
                kwargs[key] = ctx.params[name]
        if self.body_name and ctx.body is not None and self.wants(self.body_name):
            kwargs[self.body_name] = ctx.body
        info = flask.g.get("apicrud_token_info")
        context = {"user": ctx.principal.uid if info is not None else None,
                   "token_info": info}
        for key, value in context.items():
            if self.wants(key):
                kwargs[key] = value
        if "context_" in self.names:
            kwargs["context_"] = context
        try:
            result = self.function(**kwargs)
        except Exception as exc:
            problem = _connexion_problem(exc)
            if problem is None:
                raise
            raise problem from None
        return self.reply(result)

    def reply(self, result: Any) -> Reply:
        status, headers = None, {}
        if isinstance(result, tuple):
            body, *rest = result
            for part in rest:
                if isinstance(part, int):
                    status = part
                elif isinstance(part, dict):
                    headers = dict(part)
                elif part is not None:
                    headers = dict(part.items())  # Werkzeug Headers, a list of pairs
        else:
            body = result
        if hasattr(body, "status_code") and hasattr(body, "get_data"):  # a Flask response
            out = {k: v for k, v in body.headers.items() if k.lower() != "content-length"}
            return Reply(body.get_data(), status or body.status_code, {**out, **headers})
        if body is None:
            return Reply(None, status or 204, headers)
        if isinstance(body, bytes):
            headers.setdefault("Content-Type", "application/octet-stream")
            return Reply(body, status or 200, headers)
        if isinstance(body, str) and not self.json_reply:
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return Reply(body.encode(), status or 200, headers)
        return Reply(json.loads(json.dumps(body, default=str)), status or 200, headers)


def _declares_json(spec: dict[str, Any]) -> bool:
    for code, response in (spec.get("responses") or {}).items():
        if str(code).startswith("2") and isinstance(response, dict):
            content = response.get("content") or {}
            return not content or any("json" in media for media in content)
    return True


def _connexion_problem(exc: BaseException) -> Problem | None:
    """connexion's ProblemException (and its subclasses) as apicrud's problem."""
    status = getattr(exc, "status", None)
    if type(exc).__module__.split(".")[0] != "connexion" or not isinstance(status, int):
        return None
    detail = getattr(exc, "detail", None) or getattr(exc, "title", None) or "error"
    return Problem(str(detail), status=status, title=getattr(exc, "title", None),
                   headers=getattr(exc, "headers", None))


# -- x-bearerInfoFunc, x-basicInfoFunc, x-apikeyInfoFunc ----------------------------------
def info_schemes(spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """scheme name -> (scheme, its info function's dotted name)."""
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    return {name: (scheme, fn) for name, scheme in schemes.items()
            if isinstance(scheme, dict) and (fn := info_function(scheme))}


def scheme_problems(spec: dict[str, Any]) -> list[str]:
    out = []
    for name, (_, fn) in info_schemes(spec).items():
        try:
            if not callable(import_function(fn)):
                out.append(f"security scheme {name}: {fn} is not callable")
        except (ImportError, AttributeError, ValueError) as exc:
            out.append(f"security scheme {name}: cannot import {fn} ({exc})")
    return out


def _credential(request: Any, scheme: dict[str, Any]) -> tuple[Any, ...] | None:
    """The scheme's credential in the request as its function takes it, or None."""
    kind = str(scheme.get("type", "")).lower()
    if kind == "apikey":
        name, where = scheme.get("name", ""), str(scheme.get("in", ""))
        source = {"header": request.headers, "query": request.args,
                  "cookie": request.cookies}.get(where)
        value = source.get(name) if source is not None else None
        return (value,) if value else None
    given = request.headers.get("Authorization", "")
    kind_given, _, value = given.partition(" ")
    wanted = str(scheme.get("scheme", "")).lower()
    if kind_given.lower() != wanted or not value.strip():
        return None
    if wanted == "basic":
        import base64
        import binascii

        try:
            username, colon, password = base64.b64decode(value.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized(N_("malformed Basic credentials")) from None
        return (username, password) if colon else None
    return (value.strip(),)


class InfoFuncAuthentication:
    """The ``authenticate`` stage for documents with info functions: an operation listing
    such a scheme is checked by its function first, else by ``fallback`` (apicrud's)."""

    def __init__(self, services: Any, fallback: Callable[..., Any]) -> None:
        self.fallback = fallback
        self.schemes = {name: (scheme, fn, import_function(fn))
                        for name, (scheme, fn) in info_schemes(services.spec).items()}

    def __call__(self, call: Any) -> None:
        from flask import g, request

        op = call.operation
        listed = [name for alt in (op.security or []) for name in alt
                  if name in self.schemes]
        pipeline = call.services.pipeline
        for name in listed:
            scheme, fn_name, function = self.schemes[name]
            try:
                credential = _credential(request, scheme)
            except Unauthorized as exc:  # a malformed one
                _refuse(pipeline, request, op, exc)
            if credential is None:
                continue
            request.environ[CREDENTIAL_GIVEN] = True  # counted wherever it came from
            for guard in pipeline.credential_guards:
                guard(request, op)
            info = _call_info(function, fn_name, credential,
                              _extras(function, op.security, name, request), pipeline, op)
            if not isinstance(info, dict):
                _refuse(pipeline, request, op, Unauthorized(N_("the credentials are not valid")))
            g.apicrud_token_info = info
            uid = info.get("sub", info.get("uid"))
            call.principal = Principal(uid=str(uid) if uid is not None else f"info:{name}",
                                       method=f"info:{fn_name}")
            return
        self.fallback(call)


def _call_info(function: Callable[..., Any], fn_name: str, credential: tuple[Any, ...],
               extras: dict[str, Any], pipeline: Any, op: Any) -> Any:
    """The info function's answer. What it raises refuses the credential: connexion's
    ProblemException with its status (a 401 counts as a failed credential, as connexion's
    ``OAuthProblem`` is its way to say no), anything else as a failed credential, logged
    by type only: its message may quote the token or the key that checks it."""
    from flask import request

    try:
        return function(*credential, **extras)
    except Exception as exc:  # noqa: BLE001  a user's function: whatever it raises refuses
        problem = _connexion_problem(exc)
        if problem is not None and problem.status != 401:
            raise problem from None
        if problem is None:
            log.warning("info function %s raised %s: the credential is refused", fn_name,
                        type(exc).__name__)
        _refuse(pipeline, request, op, Unauthorized(
            problem.detail if problem is not None else N_("the credentials are not valid")))


def _refuse(pipeline: Any, request: Any, op: Any, problem: Unauthorized) -> NoReturn:
    """Report a failed credential to the hooks (rate limits), then refuse it."""
    for hook in pipeline.credential_failures:
        hook(request, op, problem)
    raise problem


def _extras(function: Callable[..., Any], security: list[Any], name: str,
            request: Any) -> dict[str, Any]:
    try:
        params = inspect.signature(inspect.unwrap(function)).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return {}
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    if takes_all or "required_scopes" in params:
        out["required_scopes"] = next((alt[name] for alt in security if name in alt), [])
    if takes_all or "request" in params:
        out["request"] = request
    return out


def init_app(services: Any) -> None:
    """Put the info functions' stage in place of ``authenticate`` when the document has
    schemes with them (apicrud.app.COMPONENTS)."""
    from apicrud.request_path import authenticate

    if not info_schemes(services.spec):
        return
    stages = services.pipeline.stages
    stages[stages.index(authenticate)] = InfoFuncAuthentication(services, authenticate)
