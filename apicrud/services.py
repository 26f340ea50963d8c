"""Read the declarations (spec, models, rbac.yaml), check them, and start the services.

:func:`load_declarations` needs no database or Redis: ``apicrud check`` and
``apicrud routes`` use it alone. :class:`Services` adds the live connections.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from apicrud.access.decide import AccessControl
from apicrud.access.conditions import resolve_policy
from apicrud.access.fields import check_field_rules
from apicrud.access.policy import Policy, PolicyError, load_policy
from apicrud.access.roles import MembershipRoles
from apicrud.access.scope import Scopes
from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec, build_resources, check_related, import_object
from apicrud.errors import StartupError
from apicrud.pipeline import Pipeline
from apicrud.spec.loader import SpecError, load_spec_with_sources
from apicrud.spec.operations import Operation, compile_operations

log = logging.getLogger("apicrud")


@dataclass
class Declarations:
    """Everything the developer declared, compiled and cross-checked."""

    spec: dict[str, Any]
    operations: list[Operation]
    resources: dict[str, ResourceSpec]
    policy: Policy | None
    models: Any
    controllers: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _path(settings, value: str) -> str:
    return value if os.path.isabs(value) else os.path.join(settings.root, value)


def _check_cascades(policy, resources, rbac_file: str) -> list[str]:
    """Each private resource naming a parent has the column that names it."""
    out = []
    for ms in policy.memberships.values():
        if not ms.parent or ms.parent not in policy.memberships:
            continue
        attr = policy.memberships[ms.parent].attr
        res = resources.get(ms.resource)
        if res is None or res.model is None or not hasattr(res.model, attr):
            out.append(f"{rbac_file}: private_resources: {ms.resource} has no column "
                       f"{attr} naming its parent {ms.parent}")
    return out


def load_declarations(settings) -> Declarations:
    """Load and cross-check spec, models and policies; problems are collected, not raised."""
    problems: list[str] = []
    spec_file = os.path.join(_path(settings, settings.openapi_dir), settings.openapi_file)
    try:
        spec, sources = load_spec_with_sources(spec_file)
        operations = compile_operations(spec, {
            path: os.path.relpath(f, settings.root)
            if os.path.abspath(f).startswith(str(settings.root) + os.sep) else f
            for path, f in sources.items()})
    except SpecError as exc:
        raise StartupError([str(exc)]) from None
    except Exception as exc:  # a schema the validator refuses
        raise StartupError([f"{spec_file}: {exc}"]) from None
    models = importlib.import_module(settings.models_module)
    resources = build_resources(spec, settings.models_module)
    for res in resources.values():
        problems += res.problems
    problems += check_related(resources)
    policy = None
    try:
        policy = load_policy(_path(settings, settings.rbac_file))
    except PolicyError as exc:
        problems += exc.problems
    if policy is not None:
        for name in policy.rules:
            if name not in resources:
                problems.append(f"{settings.rbac_file}: policies.{name}: no such resource in "
                                "x-apicrud-resources")
        for name, res in resources.items():
            if res.model is not None and not policy.for_resource(name):
                problems.append(f"resource {name}: no policy in {settings.rbac_file}")
        problems += check_field_rules(policy, resources, settings.rbac_file)
        problems += resolve_policy(policy, resources)[1]
        problems += [f"{settings.rbac_file}: {p}" for p in Scopes(policy, resources).problems]
        problems += _check_cascades(policy, resources, settings.rbac_file)
    decl = Declarations(spec, operations, resources, policy, models, problems=problems)
    _check_operations(decl, os.path.relpath(spec_file, settings.root)
                      if spec_file.startswith(str(settings.root) + os.sep) else spec_file)
    decl.problems[:] = list(dict.fromkeys(decl.problems))  # once each (per operation)
    return decl


#: the operations of BasicCRUD; everything else it defines is a hook or a helper
CRUD_OPERATIONS = ("create", "get", "update", "patch", "delete", "find", "groups",
                   "update_many", "delete_many")


def _check_operations(decl: Declarations, spec_file: str = "the spec") -> None:
    seen: set[str] = set()
    routed: set[str] = set()
    for op in decl.operations:
        where = f"{op.method.upper()} {op.path}"
        at = f" ({op.source})" if op.source else ""
        if not op.operation_id:
            decl.problems.append(f"{where}: no operationId{at}")
            continue
        if op.operation_id in seen:
            decl.problems.append(f"{where}: duplicate operationId {op.operation_id}{at}")
        seen.add(op.operation_id)
        resource, _, action = op.operation_id.partition(".")
        op.resource, op.action = resource, action
        res = decl.resources.get(resource)
        if res is None or not action:
            decl.problems.append(f"{where}: operationId {op.operation_id!r} resolves to nothing "
                                 f"(expected <resource>.<method> of x-apicrud-resources){at}")
            continue
        routed.add(resource)
        cls = _controller_class(res, decl.problems)
        if cls is None:
            continue
        if not callable(getattr(cls, action, None)) or action.startswith("_"):
            decl.problems.append(f"{where}: operationId {op.operation_id!r} resolves to nothing "
                                 f"({cls.__name__} has no method {action!r}){at}")
        elif not is_operation(cls, action):
            decl.problems.append(
                f"{where}: operationId {op.operation_id!r} names {cls.__name__}.{action}, "
                f"which is not an operation (a hook or helper; routable: "
                f"{', '.join(sorted(operation_names(cls)))}){at}")
        if not op.security and not op.public:
            decl.problems.append(f"{where}: declares no security; add security or mark it "
                                 f"'x-public: true'{at}")
        if op.public and op.security and any(op.security):
            decl.problems.append(f"{where}: is 'x-public' but declares security{at}")
    for name in decl.resources:
        if name not in routed:
            decl.problems.append(
                f"resource {name}: declared in x-apicrud-resources of {spec_file} but no "
                f"path routes to it (no operationId {name}.<method>); add its paths or "
                "remove it")


def is_operation(cls: type, name: str) -> bool:
    """May an operationId route to ``cls.<name>``?

    BasicCRUD's operations (:data:`CRUD_OPERATIONS`), and the names a controller lists in
    its ``operations`` attribute when it has one. Without that attribute, a method the
    controller itself adds whose only argument is the request context (``def
    approve(self, ctx)``) is one too. Hooks and helpers (``before_create``,
    ``serialize``, ``find_records``, ...) never are.
    """
    if name.startswith("_"):
        return False
    static = inspect.getattr_static(cls, name, None)
    if not inspect.isfunction(static):  # properties, static/class methods, data
        return False
    if name in CRUD_OPERATIONS:  # BasicCRUD's own, or a controller's of the same name
        return True
    declared = getattr(cls, "operations", None)
    if isinstance(declared, (list, tuple, set, frozenset)):
        return name in declared
    if hasattr(BasicCRUD, name):  # one of BasicCRUD's hooks or helpers, overridden or not
        return False
    try:
        params = list(inspect.signature(static).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return len(params) == 2 and all(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def operation_names(cls: type) -> set[str]:
    """Every name an operationId may route to on ``cls``."""
    return {name for name in dir(cls) if is_operation(cls, name)}


def redis_problem(setting: str, url: str) -> str | None:
    """Why the Redis server at ``url`` cannot be used, in one line naming ``setting``."""
    import redis as redis_lib

    from apicrud.config import mask_url

    try:
        client = redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    except ValueError as exc:  # not a Redis URL
        return f"{setting}: {mask_url(url)} is not a Redis URL ({exc})"
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        password = client.connection_pool.connection_kwargs.get("password")
        if password:
            reason = reason.replace(str(password), "***")
        return f"{setting}: cannot reach {mask_url(url)}: {reason}"
    finally:
        client.close()
    return None


def backend_problems(settings) -> list[str]:
    """Can the database and a configured Redis (``redis_url``) be reached? One line for
    each that cannot; the embedded Redis is started, not probed."""
    from apicrud.db.schema import database_problem

    problems = [p for p in [database_problem(settings)] if p]
    if settings.redis_url:
        problem = redis_problem("redis_url", settings.redis_url)
        if problem:
            problems.append(problem)
    return problems


def _controller_class(res: ResourceSpec, problems: list[str]):
    if not res.controller_path:
        return BasicCRUD
    try:
        return import_object(res.controller_path)
    except (ImportError, AttributeError) as exc:
        problems.append(f"resource {res.name}: controller {res.controller_path!r} cannot be "
                        f"imported ({exc})")
        return None


class Services:
    """Live state of one process: settings, database, Redis, sessions, policies, controllers."""

    def __init__(self, settings, decl: Declarations, db, redis, sessions) -> None:
        from apicrud.db.schema import check_at_start

        try:  # after any migrations at start: a missing table or column refuses to start
            check_at_start(settings, db.engine)
        except StartupError:
            db.dispose()  # ours to close, as in close()
            redis.close()
            raise
        self.settings = settings
        self.decl = decl
        self.spec = decl.spec
        self.models = decl.models
        self.resources = decl.resources
        self.db = db
        self.redis = redis
        self.sessions = sessions
        self.base_url = settings.base_url.rstrip("/")
        self.cursor_secret = hmac.new(settings.secret_key.encode(), b"apicrud cursor",
                                      hashlib.sha256).digest()
        self.access = AccessControl(
            decl.policy,
            owners={n: r.owner for n, r in decl.resources.items()},
            privacy={n: r.privacy for n, r in decl.resources.items()},
            columns={n: set(r.columns) for n, r in decl.resources.items()},
            resources=decl.resources)
        self.roles = MembershipRoles(decl.policy, decl.resources, db, redis.client,
                                     ttl=settings.roles_cache_ttl)
        self.pipeline = Pipeline()
        self.closers: list = []  # components register what to stop on close()
        self._by_table = {r.table: r for r in decl.resources.values() if r.table}
        self.controllers: dict[str, Any] = {}
        for name, res in decl.resources.items():
            cls = _controller_class(res, [])
            self.controllers[name] = cls(res, self)
        for op in decl.operations:
            op.handler = getattr(self.controllers[op.resource], op.action)

    def resource_for_table(self, table: str) -> ResourceSpec | None:
        return self._by_table.get(table)

    def close(self) -> None:
        """Stop components (last started, first stopped), then the database and Redis."""
        registry = getattr(self, "registry", None)
        if registry is not None:  # its thread writes to Redis: stop it before closing Redis
            registry.stop()
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # one component's failure must not keep the rest open
                log.warning("closing %r failed", closer, exc_info=True)
        self.db.dispose()
        self.redis.close()
