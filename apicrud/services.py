"""Read the declarations (spec, models, rbac.yaml), check them, and start the services.

:func:`load_declarations` needs no database or Redis: ``apicrud check`` and
``apicrud routes`` use it alone. :class:`Services` adds the live connections.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apicrud import connexion_conventions
from apicrud.access.conditions import resolve_policy
from apicrud.access.decide import AccessControl
from apicrud.access.fields import check_field_rules
from apicrud.access.policy import Policy, PolicyError, load_policy
from apicrud.access.roles import MembershipRoles
from apicrud.access.scope import Scopes
from apicrud.auth.schemes import credential_methods, serve_cookie_name
from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec, build_resources, check_related, import_object
from apicrud.db import query as q
from apicrud.db.countcache import CountCache
from apicrud.errors import StartupError, required
from apicrud.pipeline import Pipeline
from apicrud.spec.loader import SpecError, load_spec_with_sources
from apicrud.spec.operations import Operation, compile_operations
from apicrud.spec.validate import document_problems

if TYPE_CHECKING:  # pragma: no cover - the components' types, for the slots below
    from apicrud.audit.trail import AuditTrail
    from apicrud.auth.apikeys import KeyHasher
    from apicrud.auth.external.bearer import JwtVerifier
    from apicrud.auth.external.ldap import LdapDirectory
    from apicrud.auth.sessions import SessionManager
    from apicrud.auth.totp import SecondFactor
    from apicrud.config import Settings
    from apicrud.db.engine import Database
    from apicrud.files.storage import Storage
    from apicrud.metrics.grants import Grants
    from apicrud.metrics.prometheus import Exposition
    from apicrud.metrics.usage import Metrics
    from apicrud.ratelimit.middleware import RateLimit
    from apicrud.redis_client import RedisProvider
    from apicrud.registry import ServiceRegistry
    from apicrud.webhooks import Webhooks
    from apicrud.worker.outbox import Outbox

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


@dataclass
class Offline:
    """What code outside a request needs (commands, the worker's tasks, the first start):
    the settings, the models, the database and, when asked for, the declarations and
    Redis; no HTTP. Built by :func:`open_offline`; :meth:`close` releases what it opened.
    """

    settings: Any
    models: Any
    db: Any
    decl: Declarations | None = None
    redis: Any = None
    #: no controller instances here: code that needs a resource's controller class
    #: imports it (see apicrud.trashcan.purge_expired)
    controllers: dict[str, Any] = field(default_factory=dict)
    #: apicrud.files' storage, made on first use (a purge deletes objects through it)
    file_storage: Any = None

    @property
    def resources(self) -> dict[str, ResourceSpec]:
        return self.decl.resources if self.decl is not None else {}

    @property
    def id_prefix(self) -> str:
        return self.settings.id_prefix

    def close(self) -> None:
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()


def open_offline(settings: Settings, *, declarations: bool = False, redis: bool = False,
                 pool_size: int | None = None) -> Offline:
    """Open the database (and Redis, and load the declarations, when asked) for work
    without HTTP.

    :raises StartupError: ``declarations`` and they have problems
    """
    from apicrud.db.engine import Database
    from apicrud.redis_client import RedisProvider

    decl = None
    if declarations:
        decl = load_declarations(settings)
        if decl.problems:
            raise StartupError(decl.problems)
    models = decl.models if decl is not None else \
        importlib.import_module(settings.models_module)
    options: dict[str, Any] = {"pool_size": pool_size} if pool_size else {}
    db = Database(settings.sqlalchemy_url, **options)
    provider = RedisProvider(settings.redis_url, settings.path("data_dir")) if redis else None
    if decl is not None and provider is not None:
        # its writes invalidate kept counts too (without Redis: only purges of trashed
        # records, which no count counts)
        count_cache(decl, db, provider.client)
    return Offline(settings, models, db, decl, provider)


def count_cache(decl: Declarations, db: Any, client: Any) -> CountCache | None:
    """Exact counts kept in Redis, when a resource declares ``count_cache``: its
    engine's writes are tracked from here on (apicrud.db.countcache)."""
    if not any(r.count_cache for r in decl.resources.values()):
        return None
    return CountCache(db.engine, client)


def _path(settings: Settings, value: str) -> str:
    return value if os.path.isabs(value) else os.path.join(settings.root, value)


def _check_cascades(policy: Policy, resources: dict[str, ResourceSpec],
                    rbac_file: str) -> list[str]:
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


def load_declarations(settings: Settings) -> Declarations:
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
    except Exception as exc:  # noqa: BLE001  a schema the validator refuses
        raise StartupError([f"{spec_file}: {exc}"]) from None
    serve_cookie_name(spec, settings.cookie_name)
    problems += document_problems(spec)
    problems += connexion_conventions.scheme_problems(spec)  # x-bearerInfoFunc & co.
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    for op in operations:
        op.credential_methods, found = credential_methods(
            op.security, schemes, f"{op.method.upper()} {op.path}")
        problems += found
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
        if connexion_conventions.applies(op, decl.spec, decl.resources):
            # a connexion handler (x-openapi-router-controller, a dotted function name)
            problem = connexion_conventions.bind(op, decl.spec)
            if problem:
                decl.problems.append(f"{where}: operationId {op.operation_id!r} {problem}{at}")
            if op.operation_id in seen:
                decl.problems.append(f"{where}: duplicate operationId {op.operation_id}{at}")
            seen.add(op.operation_id)
            decl.problems.extend(_security_problems(op, where, at))
            continue
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
        cls = controller_class(res, decl.problems)
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
        decl.problems.extend(_security_problems(op, where, at))
    for name in decl.resources:
        if name not in routed:
            decl.problems.append(
                f"resource {name}: declared in x-apicrud-resources of {spec_file} but no "
                f"path routes to it (no operationId {name}.<method>); add its paths or "
                "remove it")


def _security_problems(op: Operation, where: str, at: str) -> list[str]:
    if not op.security and not op.public:
        return [f"{where}: declares no security; add security or mark it 'x-public: true'{at}"]
    if op.public and op.security and any(op.security):
        return [f"{where}: is 'x-public' but declares security{at}"]
    return []


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


def backend_problems(settings: Settings) -> list[str]:
    """Can the database and a configured Redis (``redis_url``) be reached? One line for
    each that cannot; the embedded Redis is started, not probed."""
    from apicrud.db.schema import database_problem

    problems = [p for p in [database_problem(settings)] if p]
    if settings.redis_url:
        problem = redis_problem("redis_url", settings.redis_url)
        if problem:
            problems.append(problem)
    return problems


def controller_class(res: ResourceSpec, problems: list[str]) -> type[Any] | None:
    """The class of the controller a resource names (BasicCRUD when none), or None with
    the reason added to ``problems``."""
    if not res.controller_path:
        return BasicCRUD
    try:
        return import_object(res.controller_path)
    except (ImportError, AttributeError) as exc:
        problems.append(f"resource {res.name}: controller {res.controller_path!r} cannot be "
                        f"imported ({exc})")
        return None


class Services:
    """Live state of one process: settings, database, Redis, sessions, policies, controllers,
    and the components ``create_app`` installs (apicrud.app.COMPONENTS).

    Every component's slot is declared here, with its type; a component that is not
    installed, or is switched off by its settings, leaves its slot ``None``, and readers
    test for that (never ``getattr`` with a default).
    """

    # -- components (each set by its init_app; None when absent or switched off) --------
    #: apicrud.auth.apikeys: hashes API-key secrets (HMAC-SHA256 under secret_key)
    apikey_hasher: KeyHasher | None = None
    #: apicrud.auth.external.bearer: verifies trusted issuers' JWTs
    jwt_verifier: JwtVerifier | None = None
    #: apicrud.auth.external.oidc: the OpenID Connect providers by name
    oidc_providers: dict[str, Any] | None = None
    #: apicrud.auth.external.ldap: the directory of POST /auth method ldap
    ldap: LdapDirectory | None = None
    #: apicrud.auth.totp: the second factor checked at login
    second_factor: SecondFactor | None = None
    #: apicrud.audit: one entry per write, in its transaction
    audit: AuditTrail | None = None
    #: apicrud.worker.outbox: messages queued for the worker
    outbox: Outbox | None = None
    #: apicrud.webhooks: change events queued for the worker
    webhooks: Webhooks | None = None
    #: apicrud.metrics: usage metrics, grants, the Prometheus exposition, usage notices
    metrics: Metrics | None = None
    grants: Grants | None = None
    prometheus: Exposition | None = None
    notify: Callable[..., Any] | None = None
    #: apicrud.ratelimit.middleware: the rate-limit guard
    ratelimit: RateLimit | None = None
    #: apicrud.registry: this instance's entry in the service registry
    registry: ServiceRegistry | None = None
    #: apicrud.files: where uploaded files are stored (made on first use)
    file_storage: Storage | None = None
    #: apicrud.db.countcache: exact counts of resources declaring count_cache
    counts: CountCache | None = None
    #: outages, logged once per interval with a count (set by create_app)
    redis_outage: Any = None
    database_outage: Any = None
    unavailable: Any = None

    def __init__(self, settings: Settings, decl: Declarations, db: Database,
                 redis: RedisProvider, sessions: SessionManager) -> None:
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
        self.cursor_signer = q.cursor_signer(settings.secret_key,
                                             settings.secret_key_fallbacks)
        policy = required(decl.policy, "the policy (rbac.yaml)")  # declarations have one
        self.access = AccessControl(
            policy,
            owners={n: r.owner for n, r in decl.resources.items()},
            privacy={n: r.privacy for n, r in decl.resources.items()},
            columns={n: set(r.columns) for n, r in decl.resources.items()},
            resources=decl.resources)
        self.roles = MembershipRoles(policy, decl.resources, db, redis.client,
                                     ttl=settings.roles_cache_ttl)
        self.counts = count_cache(decl, db, redis.client)
        self.pipeline = Pipeline()
        self.closers: list = []  # components register what to stop on close()
        self._by_table = {r.table: r for r in decl.resources.values() if r.table}
        self.controllers: dict[str, Any] = {}
        for name, res in decl.resources.items():
            # the declarations were checked: every controller imports
            cls = required(controller_class(res, []), f"the controller of resource {name}")
            self.controllers[name] = cls(res, self)
        for op in decl.operations:
            if op.resource:  # else a connexion handler, bound already (connexion_conventions)
                op.handler = getattr(self.controllers[op.resource], op.action)

    def resource_for_table(self, table: str) -> ResourceSpec | None:
        return self._by_table.get(table)

    def close(self) -> None:
        """Stop components (last started, first stopped), then the database and Redis."""
        if self.registry is not None:  # its thread writes to Redis: stop it before Redis
            self.registry.stop()
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # one component's failure must not keep the rest open
                log.warning("closing %r failed", closer, exc_info=True)
        self.db.dispose()
        self.redis.close()
