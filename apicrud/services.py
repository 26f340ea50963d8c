"""Read the declarations (spec, models, rbac.yaml), check them, and start the services.

:func:`load_declarations` needs no database or Redis: ``apicrud check`` and
``apicrud routes`` use it alone. :class:`Services` adds the live connections.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from apicrud.access.decide import AccessControl
from apicrud.access.policy import Policy, PolicyError, load_policy
from apicrud.access.roles import MembershipRoles
from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec, build_resources, check_related, import_object
from apicrud.errors import StartupError
from apicrud.pipeline import Pipeline
from apicrud.spec.loader import SpecError, load_spec
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


def load_declarations(settings) -> Declarations:
    """Load and cross-check spec, models and policies; problems are collected, not raised."""
    problems: list[str] = []
    spec_file = os.path.join(_path(settings, settings.openapi_dir), settings.openapi_file)
    try:
        spec = load_spec(spec_file)
        operations = compile_operations(spec)
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
    decl = Declarations(spec, operations, resources, policy, models, problems=problems)
    _check_operations(decl)
    return decl


def _check_operations(decl: Declarations) -> None:
    seen: set[str] = set()
    for op in decl.operations:
        where = f"{op.method.upper()} {op.path}"
        if not op.operation_id:
            decl.problems.append(f"{where}: no operationId")
            continue
        if op.operation_id in seen:
            decl.problems.append(f"{where}: duplicate operationId {op.operation_id}")
        seen.add(op.operation_id)
        resource, _, action = op.operation_id.partition(".")
        op.resource, op.action = resource, action
        res = decl.resources.get(resource)
        if res is None or not action:
            decl.problems.append(f"{where}: operationId {op.operation_id!r} resolves to nothing "
                                 "(expected <resource>.<method> of x-apicrud-resources)")
            continue
        cls = _controller_class(res, decl.problems)
        if cls is None:
            continue
        if not callable(getattr(cls, action, None)) or action.startswith("_"):
            decl.problems.append(f"{where}: operationId {op.operation_id!r} resolves to nothing "
                                 f"({cls.__name__} has no method {action!r})")
        if not op.security and not op.public:
            decl.problems.append(f"{where}: declares no security; add security or mark it "
                                 "'x-public: true'")
        if op.public and op.security and any(op.security):
            decl.problems.append(f"{where}: is 'x-public' but declares security")


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
            columns={n: set(r.columns) for n, r in decl.resources.items()})
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
