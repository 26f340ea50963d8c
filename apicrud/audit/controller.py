"""Reading the audit trail: ``GET /audit``, ``GET /audit/{id}`` and
``GET /{resource}/{id}/history``.

An entry is about one record; who may see it is decided by the evaluator's rules for
*that record's* resource, now: the entries about a list are visible to those who may
read the list today (a member removed from it no longer sees them), those about a
secret message to its author. One who may read every record of a resource (an admin,
through ``{resource}:*``) sees every entry about it, those of purged records included;
entries about no record (a failed login of an unknown name) are for those who may read
every record of their resource. Of an entry's ``changes`` a reader sees the fields the
record's controller lets them read (``readable_fields``); its client address only
when the entry is their own or they may read every record of its resource.

Listing reuses BasicCRUD's ``find`` (filter, sort, cursor, count), narrowed by
:meth:`AuditController.visible`; the default order is newest first.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, or_, select

from apicrud.context import Reply, RequestContext
from apicrud.crud.controller import BasicCRUD, json_value
from apicrud.db.repository import live
from apicrud.errors import NotFound
from apicrud.i18n import N_

if TYPE_CHECKING:
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services

NOT_FILTERABLE = ("changes",)  # values of fields: not to be probed by filters


class AuditController(BasicCRUD):
    """Read-only controller of the ``Audit`` model (see the module docstring)."""

    operations = ("find", "get", "history")

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        super().__init__(resource, services)
        for name in NOT_FILTERABLE:
            resource.fields.pop(name, None)

    def _kinds(self) -> dict[str, Any]:
        """Audited resource -> its ResourceSpec (resources with a model)."""
        kinds = self.__dict__.get("_kind_map")
        if kinds is None:
            kinds = {name: res for name, res in self.services.resources.items()
                     if res.model is not None and res.name != self.resource.name}
            self._kind_map = kinds
        return kinds

    def _readable_ids(self, ctx: RequestContext, name: str, res: ResourceSpec) -> Any:
        """SELECT of the ids of ``name`` records the caller may read now: live ones by
        ``r``; trashed ones as the trashcan shows them (``d`` and ``r``)."""
        principal = ctx.principal
        model: Any = res.model  # _kinds: resources with a model
        readable = self.access.where(principal, name, model, "r")
        if "status" in res.columns:
            shown = or_(live(model), self.access.where(principal, name, model, "d"))
            return select(model.id).where(readable, shown)
        return select(model.id).where(readable)

    def visible(self, ctx: RequestContext, action: str) -> list:
        principal = ctx.principal
        entry = self.model
        clauses = []
        for name, res in self._kinds().items():
            if self.access.allows_every(principal, "r", name):
                clauses.append(entry.resource == name)
            else:
                clauses.append(and_(entry.resource == name,
                                    entry.record_id.in_(self._readable_ids(ctx, name, res))))
        about = or_(*clauses) if clauses else false()
        return [self.access.where(principal, self.resource.name, entry, "r"), about]

    # -- shown fields -------------------------------------------------------------------
    def serialize(self, ctx: RequestContext, record: Any) -> dict[str, Any]:
        out = {name: json_value(getattr(record, name)) for name in self.resource.exposed}
        changes = json.loads(record.changes) if record.changes else None
        principal = ctx.principal
        everything = self.access.allows_every(principal, "r", record.resource)
        if changes and not everything:
            controller = self.services.controllers.get(record.resource)
            readable = controller.readable_fields(ctx) if controller is not None else ()
            changes = {k: v for k, v in changes.items()
                       if k in readable and "changed" not in v}
        out["changes"] = changes or None
        if not everything and record.uid != principal.uid:
            out["client_addr"] = None  # where others were is theirs and the admins'
        return out

    # -- operations ---------------------------------------------------------------------
    def find(self, ctx: RequestContext) -> Reply:
        if not ctx.params.get("sort") and not ctx.params.get("cursor_next"):
            ctx.params["sort"] = "created:desc"
        return super().find(ctx)

    def get(self, ctx: RequestContext) -> Reply:
        fields = self.selected_fields(ctx)
        entry = ctx.db.execute(select(self.model).where(
            self.model.id == ctx.params["id"], *self.visible(ctx, "r"))).scalar_one_or_none()
        if entry is None:
            raise NotFound(N_("audit %(id)s not found", id=ctx.params['id'][:40]))
        body = self.serialize(ctx, entry)
        if fields:
            body = {k: body[k] for k in fields if k in body}
        return Reply(body, 200)

    def history(self, ctx: RequestContext) -> Reply:
        """``GET /{resource}/{id}/history``: the record's entries, newest first; 404
        unless the caller may read the record now (as ``GET /{resource}/{id}``
        answers), or every record of its resource (then purged ones too)."""
        name, record_id = ctx.params["resource"], ctx.params["id"]
        res = self._kinds().get(name)
        if res is None:
            raise NotFound(N_("%(resource)s: no such resource", resource=name[:32]),
                           errors={"resource": N_("not found")})
        principal = ctx.principal
        if not self.access.allows_every(principal, "r", name):
            found = ctx.db.execute(self._readable_ids(ctx, name, res)
                                   .where(res.model.id == record_id)).first()
            if found is None:
                raise NotFound(N_("%(resource)s %(id)s not found", resource=name,
                                  id=record_id[:40]))
        ctx.params["filter"] = json.dumps({"resource": name, "record_id": record_id})
        return self.find(ctx)


__all__ = ["AuditController"]
