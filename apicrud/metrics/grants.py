"""Grants: what each account may use, and the create check that enforces them.

``default_grants`` (a setting) gives every user the same allowance: record counts per
resource (``lists``, ``messages``, ``contacts``, ``apikeys``...), the request rate
(``ratelimit``, read by the rate limiter) and per-period allowances named after a
grant-style metric (``messages_daily``). Rows of the ``grant`` resource override a
default for one user, optionally until ``expires``.

A user's overrides are cached in Redis (one small JSON value), dropped by
:meth:`Grants.uncache` whenever a grant row of theirs changes, so every instance sees a
change on the user's next request.

Record counts are checked in SQL inside the creating transaction: exact, and with the
owner's person row locked first (``SELECT ... FOR UPDATE`` on PostgreSQL and MariaDB,
SQLite's database write lock) two concurrent creates of one owner cannot both take the
last place. A Redis counter would need reconciling with deletes, restores, purges and
direct SQL, so the database stays the one source of truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from apicrud.cache import ReadThrough
from apicrud.db.repository import live
from apicrud.errors import Forbidden, TooManyRequests
from apicrud.i18n import N_

if TYPE_CHECKING:
    from apicrud.context import RequestContext
    from apicrud.crud.registry import ResourceSpec
    from apicrud.db.engine import Database
    from apicrud.metrics.keys import MetricDef
    from apicrud.metrics.usage import Metrics
    from apicrud.redis_client import RedisProvider
    from apicrud.services import Services

log = logging.getLogger("apicrud.metrics")

#: the largest grant value: a SQL BIGINT and a Redis counter hold it, its text fits the
#: grant row's value column, and a limit above it means "unlimited" anyway
MAX_GRANT = 2 ** 63 - 1
NUMBER_RULE = N_("must be a number from 0 to %(most)s", most=MAX_GRANT)


def number(value: Any) -> int | float | None:
    """A grant value as a number: int when integral; None unless 0 <= value <= MAX_GRANT."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, int):  # exact: a float would round 2**63 - 1 up
        return value if 0 <= value <= MAX_GRANT else None
    try:
        out = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if out != out or out < 0 or out > MAX_GRANT:  # NaN, negative, huge or infinite
        return None
    if out.is_integer():
        n = int(out)
        return n if n <= MAX_GRANT else None
    return out


def check_defaults(raw: Mapping[str, Any]) -> tuple[dict[str, int | float], list[str]]:
    out, problems = {}, []
    for name, value in (raw or {}).items():
        n = number(value)
        if n is None:
            problems.append(f"setting default_grants.{name}: {NUMBER_RULE}")
        else:
            out[str(name)] = n
    return out, problems


def plural(name: str) -> str:
    if name.endswith("y") and name[-2:-1] not in tuple("aeiou"):
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    return name + "s"


class Grants:
    """Effective grants of a user: their unexpired overrides over ``default_grants``."""

    def __init__(self, defaults: Mapping[str, int | float], db: Database,
                 provider: RedisProvider, grant_model: Any, ttl: int = 300) -> None:
        self.defaults = dict(defaults)
        self.db = db
        self.provider = provider
        self.model = grant_model
        self.ttl = ttl
        self.cache = ReadThrough(lambda: provider.client, "grants", ttl)

    def record_grant(self, resource: str) -> str | None:
        """The grant limiting how many records of ``resource`` a user may hold."""
        for name in (plural(resource), resource):
            if name in self.defaults:
                return name
        return None

    def get(self, uid: str | None, name: str) -> int | float | None:
        """The value of grant ``name`` for ``uid`` (None: no such grant, no limit)."""
        if uid:
            override = self.overrides(uid).get(name)
            if override is not None:
                return override
        return self.defaults.get(name)

    def for_uid(self, uid: str | None) -> dict[str, int | float]:
        """Every grant of a user."""
        return {**self.defaults, **(self.overrides(uid) if uid else {})}

    def overrides(self, uid: str) -> dict[str, int | float]:
        def until_first_end(entries: dict) -> int:
            # an override that runs out must not outlive itself in the cache
            ends = [e for _, e in entries.values() if e is not None]
            return min(self.ttl, int(min(ends) - time.time()) + 1) if ends else self.ttl

        entries = self.cache.get(uid, lambda: self._load(uid), ttl=until_first_end)
        now = time.time()
        return {name: value for name, (value, ends) in entries.items()
                if ends is None or ends > now}

    def _load(self, uid: str) -> dict[str, tuple[int | float, float | None]]:
        model = self.model
        out: dict[str, tuple[int | float, float | None]] = {}
        if model is None:
            return out
        with self.db.session() as session:
            rows = session.execute(select(model.name, model.value, model.expires).where(
                model.uid == uid, live(model)))
            for name, value, expires in rows:
                n = number(value)
                if n is None:
                    log.warning("grant %s of %s has a value that is not a number", name, uid)
                    continue
                ends = expires.replace(tzinfo=UTC).timestamp() if expires else None
                if ends is not None and ends <= time.time():
                    continue
                out[name] = (n, ends)
        return out

    def uncache(self, *uids: str | None) -> None:
        """Forget cached grants: call whenever a user's grant rows change."""
        self.cache.drop(*uids)


def _when(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    at = datetime.fromtimestamp(time.time() + seconds, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class GrantChecks:
    """The create check (record counts, per-period grants); a per-period unit used by a
    request whose write is not committed is given back (RequestContext.on_rollback)."""

    def __init__(self, services: Services, grants: Grants, metrics: Metrics,
                 notify: Callable[..., Any] | None = None) -> None:
        self.services = services
        self.grants = grants
        self.metrics = metrics
        self.notify = notify
        self.by_resource: dict[str, list] = {}
        for d in metrics.definitions.values():
            if d.style == "grant" and d.resource:
                self.by_resource.setdefault(d.resource, []).append(d)

    def __call__(self, ctx: RequestContext, res: ResourceSpec, values: dict[str, Any]) -> None:
        principal = ctx.principal
        if principal.is_admin or principal.uid is None:  # (not authenticated)
            return  # operators are not customers; anonymous creates have no account
        owner = values.get(res.owner) if res.owner and res.owner != "id" else None
        uid = owner or principal.uid
        self._check_count(ctx, res, uid)
        for d in self.by_resource.get(res.name, ()):
            self._use(ctx, d, uid)

    def _check_count(self, ctx: RequestContext, res: ResourceSpec, uid: str) -> None:
        name = self.grants.record_grant(res.name)
        if name is None or res.model is None or not res.owner or res.owner == "id":
            return
        limit = self.grants.get(uid, name)
        if limit is None:
            return
        # the records of this owner an earlier create of this request counted (a batch:
        # each record that passed is created, or the request fails as a whole)
        key = ("held", res.name, uid)
        held = ctx.memo.get(key)
        if held is None:
            model = res.model
            owner_col = getattr(model, res.owner)
            self._lock_owner(ctx, res, uid)
            stmt = select(func.count()).select_from(model).where(owner_col == uid,
                                                                 live(model))
            if ctx.services.db.dialect in ("mysql", "mariadb"):
                # InnoDB's plain reads see the snapshot of the transaction's first read,
                # maybe older than the create we waited for; a locking read sees the
                # latest rows
                stmt = stmt.with_for_update(read=True)
            held = ctx.db.execute(stmt).scalar_one()
        if held >= limit:
            self._count_refusal(name)
            raise Forbidden(N_("grant %(grant)s exceeded: at most %(limit)s %(resource)s records "
                               "(held: %(held)s)", grant=name, limit=limit, resource=res.name,
                               held=held), slug="grant-exceeded", grant=name, limit=limit)
        ctx.memo[key] = held + 1

    def _lock_owner(self, ctx: RequestContext, res: ResourceSpec, uid: str) -> None:
        """Serialize creates of one owner: lock their person row until commit."""
        table = res.references.get(res.owner) if res.owner else None
        target = self.services.resource_for_table(table) if table else None
        if target is None or target.model is None:
            return
        if ctx.services.db.dialect == "sqlite":
            # no row locks: a no-op write takes SQLite's write lock before the count
            # (a plain read would run outside the transaction pysqlite opens lazily).
            # Columns with an onupdate default are set to themselves, so no value moves.
            table = target.model.__table__
            same = {c: c for c in table.c if c.primary_key or c.onupdate is not None}
            ctx.db.execute(update(table).where(table.c.id == uid).values(same))
            return
        ctx.db.execute(select(target.model.id).where(target.model.id == uid)
                       .with_for_update())

    def _use(self, ctx: RequestContext, d: MetricDef, uid: str) -> None:
        limit = self.grants.get(uid, d.name)
        if limit is None:
            return
        used = self.metrics.consume(d.name, uid, limit)
        if not used.ok:
            self._count_refusal(d.name)
            headers = {"Retry-After": str(max(used.reset_in or 0, 1))} \
                if used.reset_in is not None else {}
            at = _when(used.reset_in)
            raise TooManyRequests(
                N_("grant %(grant)s used up: %(limit)s per %(period)s", grant=d.name,
                   limit=limit, period=d.period) if at is None else
                N_("grant %(grant)s used up: %(limit)s per %(period)s; it resets at %(time)s",
                   grant=d.name, limit=limit, period=d.period, time=at),
                slug="grant-exceeded", headers=headers, grant=d.name, limit=limit)
        # the unit is given back if the request's transaction is not committed
        ctx.on_rollback.append(lambda: self._refund(d.name, uid, 1))
        if d.notify and limit and used.used >= limit * d.notify / 100:
            ctx.after_commit.append(lambda: self._notify(d, uid, used.used, limit))

    def _count_refusal(self, name: str) -> None:
        if "grant_exceeded" in self.metrics.definitions:
            try:
                self.metrics.add("grant_exceeded", labels={"grant": name})
            except Exception:  # a metric must never change the answer
                log.warning("cannot count grant refusal", exc_info=True)

    def _notify(self, d: MetricDef, uid: str, used: float, limit: float) -> None:
        """Tell the user once per period that they used ``notify`` percent of a grant."""
        try:
            if self.notify is None or not self.metrics.notify_once(d.name, uid):
                return
            self.notify(uid=uid, template="usage_notify", grant=d.name, percent=d.notify,
                        period=d.period, used=used, limit=limit)
        except Exception:  # the request succeeded; a lost notice is only logged
            log.warning("usage notice for %s of %s failed", d.name, uid, exc_info=True)

    def _refund(self, name: str, uid: str, amount: float) -> None:
        """Give back per-period units used by a request whose write was not committed."""
        self.metrics.refund(name, uid, amount)
