"""MembershipController: who may add, change or remove members of a private resource.

For the members resource of a ``private_resources`` entry (e.g. ``listmember`` of
``list``), beyond what rbac.yaml grants on the members resource itself:

- ``h`` (manager) on the list: add anyone at any level, change levels, remove anyone;
- ``i`` (invite) on the list: add someone as an invitee (the lowest level);
- ``j`` (join) on the list: add yourself as a member, or turn your own invitation into
  a membership.

Everything else (validation, storage, paging, cache invalidation) is BasicCRUD's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apicrud.crud.controller import BasicCRUD
from apicrud.db.repository import Repository
from apicrud.errors import Forbidden, NotFound
from apicrud.i18n import N_

if TYPE_CHECKING:
    from apicrud.context import RequestContext
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services


class MembershipController(BasicCRUD):
    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        super().__init__(resource, services)
        policy = services.access.policy
        ms = next((m for m in policy.memberships.values() if m.members == resource.name),
                  None)
        if ms is None:
            raise ValueError(f"{resource.name} is not the members resource of any "
                             "private_resources entry in rbac.yaml")
        self.membership = ms
        self.levels = policy.privacy_levels[1:-1]  # invitee, member, manager

    def _parent(self, ctx: RequestContext, parent_id: Any, action: str = "c") -> Any:
        """The live record a membership names, if the caller may read it. Else: for a
        new membership a 404 naming the field (as if it did not exist); for a change or
        removal of a membership the caller reads (e.g. their own), a 403."""
        res = self.services.resources[self.membership.resource]
        record = Repository(res.model).get_live(ctx.db, parent_id)
        attr = self.membership.attr
        if record is None or not self.access.allows(ctx.principal, "r", res.name, record):
            if action != "c":
                raise Forbidden(N_("not allowed to change this %(resource)s",
                                   resource=self.resource.name))
            raise NotFound(N_("%(field)s: not found", field=attr), errors={attr: N_("not found")})
        return record

    def _holds(self, ctx: RequestContext, action: str, parent: Any) -> bool:
        return self.access.allows(ctx.principal, action, self.membership.resource, parent)

    def _check_references(self, ctx: RequestContext, data: dict[str, Any]) -> None:
        # The person being added need not be readable by the one adding them (a manager
        # does not see strangers' person records): h/i/j on the list authorize it.
        # The person must exist, though.
        uid = data.get("uid")
        rest = {k: v for k, v in data.items() if k != "uid"}
        super()._check_references(ctx, rest)
        if uid is not None:
            person = self.services.resource_for_table(self.resource.references.get("uid", ""))
            if person is not None and \
                    Repository(person.model).get_live(ctx.db, uid, "id") is None:
                raise NotFound(N_("uid: not found"), errors={"uid": N_("not found")})

    def check_owner(self, ctx: RequestContext, values: dict[str, Any], action: str,
                    moved: bool = False) -> None:
        # who a new membership is for is decided by h/i/j on the list (authorize); an
        # existing one never moves to another person (see before_update)
        if moved:
            super().check_owner(ctx, values, action, moved)

    def authorize(self, ctx: RequestContext, action: str, record: Any) -> str:
        principal = ctx.principal
        decision = self.access.decide(principal, action, self.resource.name, record)
        if decision.allowed:
            return decision.reason  # rbac.yaml grants it on the members resource (admin)
        attr, level_attr = self.membership.attr, self.membership.level_attr
        get: Callable[[str], Any] = record.get if isinstance(record, dict) else \
            lambda k: getattr(record, k, None)
        parent = self._parent(ctx, get(attr), action)
        level = get(level_attr) or "member"
        name = self.membership.resource
        if self._holds(ctx, "h", parent):
            return f"membership rules: you manage (h) this {name}"
        own = get("uid") == principal.uid
        if action == "c":
            if level == self.levels[0] and self._holds(ctx, "i", parent):
                return f"membership rules: you may invite (i) to this {name}"
            if own and level == "member" and self._holds(ctx, "j", parent):
                return f"membership rules: you may join (j) this {name}"
        elif action == "u" and own and self._holds(ctx, "j", parent):
            # accepting an invitation; the level itself is checked in before_update
            return f"membership rules: you may join (j) this {name}"
        if action == "c":  # a list you may not add to is, for this field, no list at all
            raise NotFound(N_("%(field)s: not found", field=attr), errors={attr: N_("not found")})
        raise Forbidden(N_("not allowed to add this %(resource)s", resource=self.resource.name)
                        if action == "c" else
                        N_("not allowed to change this %(resource)s", resource=self.resource.name))

    def record_actions(self, ctx: RequestContext, record: Any) -> str:
        held = set(super().record_actions(ctx, record))
        list_id = getattr(record, self.membership.attr, None)
        if list_id is not None:
            # h and j are membership rules on the list: they depend on its id alone
            parent = {"id": list_id}
            if self._holds(ctx, "h", parent):
                held |= {"u", "d"}
            elif record.uid == ctx.principal.uid and self._holds(ctx, "j", parent):
                held.add("u")
        return "".join(sorted(held))

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        moved = changes.keys() & {"uid", self.membership.attr}
        if moved and not self.access.allows_every(ctx.principal, "u", self.resource.name):
            # a membership does not move to another list or person; add a new one
            field = sorted(moved)[0]
            raise Forbidden(N_("%(field)s: a %(resource)s does not move; add a new one",
                               field=field, resource=self.resource.name),
                            errors={field: N_("cannot be changed")})
        if changes.keys() - {self.membership.level_attr}:
            self.authorize_manager(ctx, record)
        level = changes.get(self.membership.level_attr)
        if level is not None and level != "member" and record.uid == ctx.principal.uid:
            self.authorize_manager(ctx, record)
        return changes

    def authorize_manager(self, ctx: RequestContext, record: Any) -> None:
        if self.access.allows(ctx.principal, "u", self.resource.name, record):
            return
        parent = self._parent(ctx, getattr(record, self.membership.attr), "u")
        if not self._holds(ctx, "h", parent):
            raise Forbidden(N_("only a manager may change this %(resource)s",
                               resource=self.resource.name))
