"""Trashcan: the soft-deleted records of every resource that has ``status``.

The only reader of trashed rows. A caller sees and purges exactly the trashed records
they may delete (``d``) and could read were they live (``r``), decided by the same
evaluator as BasicCRUD, in SQL for the list. Restoring needs that and more: it passes
every check a create of the record would pass now (the resource controller's
``check_restore``). Ids are ``<resource>-<record id>``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import String, delete, func, insert, literal, select, union_all
from sqlalchemy.exc import IntegrityError

from apicrud.access import fields as fieldrules
from apicrud.context import Reply, RequestContext
from apicrud.crud import paging
from apicrud.crud.controller import BasicCRUD, json_value
from apicrud.db import query as q
from apicrud.db.base import new_id, utcnow
from apicrud.db.repository import Repository, Status, trashed
from apicrud.errors import BadRequest, Conflict, NotFound, required
from apicrud.i18n import N_

if TYPE_CHECKING:
    from sqlalchemy import CursorResult, Subquery

    from apicrud.auth.principal import Principal
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Offline, Services

log = logging.getLogger("apicrud.trashcan")
LABEL_FIELDS = ("name", "subject", "info", "title")
#: the most records one purge names
PURGE_MAX = 100


class Trashcan:
    """Generic controller for ``/trashcan``; bound to no model of its own."""

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        self.services = services
        self.access = services.access
        self.kinds = {name: res for name, res in services.resources.items()
                      if res.model is not None and "status" in res.columns}

    # -- helpers ------------------------------------------------------------------------
    def _split(self, trash_id: str) -> tuple[ResourceSpec, str]:
        name, sep, record_id = trash_id.partition("-")
        res = self.kinds.get(name)
        if not sep or res is None or not record_id:
            raise NotFound(N_("trashcan %(id)s not found", id=trash_id[:60]))
        return res, record_id

    def _load(self, ctx: RequestContext, trash_id: str) -> tuple[ResourceSpec, Any]:
        res, record_id = self._split(trash_id)
        model: Any = res.model  # kinds: resources with a model
        record = ctx.db.execute(select(model).where(
            model.id == record_id, trashed(model))).scalar_one_or_none()
        if record is None or not self._may_see(ctx, res, record):
            raise NotFound(N_("trashcan %(id)s not found", id=trash_id[:60]))
        return res, record

    def _may_see(self, ctx: RequestContext, res: ResourceSpec, record: Any) -> bool:
        """A trashed record is the caller's to see, restore or purge when they may delete
        it and could read it were it live: ``d`` through a membership does not open
        what privacy closes (a manager never sees a member's secret message)."""
        principal = ctx.principal
        return self.access.allows(principal, "d", res.name, record) and \
            self.access.allows(principal, "r", res.name, record)

    def _shown(self, principal: Principal, res: ResourceSpec, name: str,
               record: Any = None) -> bool:
        """Field rules: may ``principal`` read field ``name`` of the record (of every
        record of ``res`` they may list, without one)?"""
        allowed = self.access.read_fields(principal, res.name, record) if record is not None \
            else self.access.list_fields(principal, res.name, res.model)
        return allowed is None or name in allowed

    def _label(self, res: ResourceSpec, principal: Principal | None = None) -> Any:
        model: Any = res.model  # kinds: resources with a model
        for name in LABEL_FIELDS:
            if name in res.columns:
                if principal is not None and not self._shown(principal, res, name):
                    break
                return getattr(model, name)
        return model.id

    def _entry(self, res: ResourceSpec, record: Any,
               principal: Principal | None = None) -> dict[str, Any]:
        label = next((getattr(record, n) for n in LABEL_FIELDS if n in res.columns), None)
        if principal is not None and label is not None and not self._shown(
                principal, res, next(n for n in LABEL_FIELDS if n in res.columns), record):
            label = None
        owner = res.owner and (principal is None or
                               self._shown(principal, res, res.owner, record))
        return {"id": f"{res.name}-{record.id}", "resource": res.name,
                "record_id": record.id, "label": label,
                "uid": getattr(record, res.owner, None) if owner and res.owner else None,
                "deleted": json_value(record.modified or record.created),
                "status": record.status}

    def _union(self, ctx: RequestContext, kinds: list[str]) -> Subquery | None:
        principal = ctx.principal
        selects = []
        for name in kinds:
            res = self.kinds[name]
            model: Any = res.model
            owner = getattr(model, res.owner) if res.owner and \
                self._shown(principal, res, res.owner) else literal(None, String)
            selects.append(select(
                (literal(name + "-") + model.id).label("id"),
                literal(name).label("resource"),
                model.id.label("record_id"),
                func.coalesce(self._label(res, principal), model.id).label("label"),
                owner.label("uid"),
                func.coalesce(model.modified, model.created).label("deleted"),
            ).where(trashed(model), self.access.where(principal, name, model, "d"),
                    self.access.where(principal, name, model, "r")))
        return union_all(*selects).subquery("trash") if selects else None

    # -- operations ---------------------------------------------------------------------
    def find(self, ctx: RequestContext) -> Reply:
        settings = self.services.settings
        params = ctx.params
        filters = q.parse_filter(params.get("filter"))
        unknown = set(filters) - {"resource", "uid"}
        if unknown:
            raise BadRequest(N_("filter: unknown field %(name)s", name=repr(sorted(unknown)[0])),
                             errors={"filter": N_("unknown field %(name)s",
                                                  name=repr(sorted(unknown)[0]))})
        kinds = sorted(self.kinds)
        wanted = filters.get("resource")
        if wanted is not None:
            wanted = wanted if isinstance(wanted, list) else [wanted]
            kinds = [k for k in kinds if k in wanted]
        trash = self._union(ctx, kinds)
        if trash is None:
            return Reply({"items": [], "count": 0}, 200, {"X-Total-Count": "0"})
        fields = {c.name: c for c in trash.c}
        where = q.build_filter({k: v for k, v in filters.items() if k == "uid"}, fields)
        count = ctx.db.execute(select(func.count()).select_from(trash).where(*where)) \
            .scalar_one()
        sort = q.parse_sort(params.get("sort") or "deleted:desc", fields, max_keys=1)
        limit = paging.page_size(params.get("limit"), settings)
        column = fields[sort.field]
        order = [column.desc() if sort.descending else column.asc(), trash.c.id.asc()]
        rows = ctx.db.execute(select(trash).where(*where).order_by(*order)
                              .limit(limit).offset(params.get("offset") or 0)).mappings()
        items = [{**dict(r), "deleted": json_value(r["deleted"]), "status": Status.TRASHED}
                 for r in rows]
        return Reply({"items": items, "count": count}, 200, {"X-Total-Count": str(count)})

    def get(self, ctx: RequestContext) -> Reply:
        res, record = self._load(ctx, ctx.params["id"])
        body = self._entry(res, record, ctx.principal)
        body["record"] = fieldrules.limit(
            {n: json_value(getattr(record, n)) for n in res.exposed},
            self.access.read_fields(ctx.principal, res.name, record))
        return Reply(body, 200)

    def restore(self, ctx: RequestContext) -> Reply:
        if (ctx.body or {}).get("status") != Status.ACTIVE:
            raise BadRequest(N_("status: only 'active' (restore) is accepted"),
                             errors={"status": N_("must be active")})
        res, record = self._load(ctx, ctx.params["id"])
        values = {n: getattr(record, n) for n in res.columns}
        # the record comes back into the world as if created again, now: what it points
        # at must still be there, and every check of a create of it must pass (policy c
        # for the record as it is, the controller's own rules, references, owner, grants)
        controller = self.services.controllers[res.name]
        self._check_references_live(ctx, res, values)
        ctx.audit_intent(record, "restore", controller.check_restore(ctx, record, values))
        record.status = Status.ACTIVE
        record.live = True
        try:
            ctx.db.flush()
        except IntegrityError:
            ctx.rollback()
            raise Conflict(N_("%(resource)s %(id)s conflicts with a live record; rename or remove "
                              "that one first", resource=res.name, id=record.id)) from None
        controller.roles_changed(ctx, [record])
        log.info("restored %s %s", res.name, record.id,
                 extra={"event": "restore", "uid": ctx.principal.uid})
        return Reply(self._entry(res, record, ctx.principal), 200)

    def _check_references_live(self, ctx: RequestContext, res: ResourceSpec,
                               values: dict[str, Any]) -> None:
        """What a restored record points at must still be there (not trashed, not purged):
        409 naming the field. Whether the caller may use it is :meth:`check_create`'s."""
        for attr, table in res.references.items():
            value = values.get(attr)
            target = self.services.resource_for_table(table)
            if value is None or target is None or target.model is None:
                continue
            if Repository(target.model).get_live(ctx.db, value, "id") is None:
                raise Conflict(N_("%(field)s: the %(resource)s it belongs to is in the trashcan or "
                                  "gone; restore that first", field=attr, resource=target.name),
                               errors={attr: N_("not available")})

    def purge(self, ctx: RequestContext) -> Reply:
        ids = paging.id_list(ctx.params["id"], PURGE_MAX)
        out = []
        for trash_id in ids:
            res, record = self._load(ctx, trash_id)
            out.append((res, record, self._entry(res, record, ctx.principal)))
        for res, record, _ in out:
            hook = getattr(self.services.controllers.get(res.name), "before_purge", None)
            if hook is not None:
                hook(self.services, record, ctx.after_commit)
        for res, record, _ in out:
            # a core DELETE: the database's ON DELETE rules remove what depends on it
            model: Any = res.model
            ctx.db.execute(delete(model).where(model.id == record.id))
        try:
            ctx.db.flush()
        except IntegrityError:
            ctx.rollback()
            raise Conflict(N_("a record to purge is still referenced")) from None
        audit = required(self.services.audit, "the audit trail (apicrud.audit)")
        for res, record, _ in out:
            log.info("purged %s %s", res.name, record.id,
                     extra={"event": "purge", "uid": ctx.principal.uid})
            # a core DELETE passes no ORM listener: its entry is added here
            audit.note(ctx, res.name, record.id, "purge", self.access.decide(
                ctx.principal, "d", res.name, record).reason)
        bodies = [entry for _, _, entry in out]
        return Reply(bodies[0] if len(ids) == 1 else bodies, 200)


def _controller_class(services: Services | Offline, res: ResourceSpec) -> type:
    """The class of a resource's controller (the worker's Offline services have no
    controller instances)."""
    if res.name in services.controllers:
        return type(services.controllers[res.name])
    if res.controller_path:
        from apicrud.crud.registry import import_object

        return import_object(res.controller_path)
    return BasicCRUD


def purge_expired(services: Services | Offline, retention_days: int,
                  now: datetime | None = None) -> int:
    """Purge every record trashed more than ``retention_days`` ago (the scheduled task);
    with an ``Audit`` model among ``services.models``, each purge is audited."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    total = 0
    after_commit: list = []
    audit = getattr(services.models, "Audit", None)  # an application without the trail
    prefix = services.settings.id_prefix
    with services.db.session() as session, session.begin():
        for res in services.resources.values():
            if res.model is None or "status" not in res.columns:
                continue
            model = res.model
            stale = func.coalesce(model.modified, model.created) < cutoff
            hook = getattr(_controller_class(services, res), "before_purge", None)
            if hook is not None and \
                    getattr(hook, "__func__", None) is not \
                    getattr(BasicCRUD.before_purge, "__func__", None):
                for record in session.execute(select(model).where(
                        trashed(model), stale)).scalars():
                    hook(services, record, after_commit)
            if audit is not None:
                ids = list(session.execute(select(model.id).where(
                    trashed(model), stale)).scalars())
                if ids:
                    session.execute(insert(audit.__table__), [{
                        "id": new_id(prefix),
                        "created": utcnow(), "resource": res.name, "record_id": id_,
                        "action": "purge", "auth_method": "worker",
                        "rule": f"setting trash_retention_days: {retention_days}"}
                        for id_ in ids])
            result = cast("CursorResult[Any]",
                          session.execute(delete(model).where(trashed(model), stale)))
            if result.rowcount:
                log.info("retention purged %d %s records", result.rowcount, res.name,
                         extra={"event": "purge_retention"})
                total += result.rowcount
    for callback in after_commit:  # what the purged records kept outside the database
        try:
            callback()
        except Exception:
            log.error("after-purge step failed", exc_info=True,
                      extra={"event": "purge_cleanup_failed"})
    return total
