"""``can-i``: may this principal do this action to that resource (record)? And why.

Used by ``GET /auth/can-i`` and ``apicrud rbac can-i``. The answer names the policy
entry, privacy rule or membership rule that decided it, like ``kubectl auth can-i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apicrud.access.decide import READ_ACTIONS
from apicrud.access.policy import ACTIONS
from apicrud.context import RequestContext
from apicrud.db.repository import live
from apicrud.errors import Problem
from apicrud.i18n import N_

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from apicrud.access.decide import AccessControl
    from apicrud.auth.principal import Principal
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services


@dataclass(frozen=True)
class Answer:
    allowed: bool
    reason: str

    def to_dict(self, action: str, resource: str, id_: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": self.allowed, "answer": "yes" if self.allowed else "no",
               "action": action, "resource": resource, "reason": self.reason}
        if id_:
            out["id"] = id_
        return out


def can_i(services: Services, session: Session, principal: Principal, action: str,
          resource: str,
          id_: str | None = None, field: str | None = None) -> Answer:
    """Explain one decision. For ``c``, ``id`` names the membership (e.g. the list) the new
    record would belong to; for other actions it names the record itself.

    The answer comes from the resource's controller, the same methods a request runs
    (``check_create``, ``authorize``), so "yes" means the request would pass them. A
    record the caller may not read and a missing one get the same answer, and nothing
    about an unreadable record (its privacy, its members) is named.

    With ``field``: may the caller read (r, l) or write (c, u) that field, and which
    entry's field rule decided; ``l`` without an id asks whether the field may be
    filtered, sorted and searched on (read on every record the caller may list).
    """
    if action not in ACTIONS or len(action) != 1:
        raise ValueError(N_("action must be one letter of %(actions)s", actions=ACTIONS))
    spec = services.resources.get(resource)
    controller = services.controllers.get(resource)
    if spec is None or spec.model is None or controller is None:
        raise KeyError(resource)
    if field is not None:
        if action not in "crul":
            raise ValueError(N_("a field is read (r, l) or written (c, u)"))
        known = set(spec.exposed) | set(spec.computed) | set(spec.related) | set(spec.embeds)
        if field not in known:
            raise LookupError(field)
    answer = _can_i(services, session, principal, action, resource, id_, spec, controller,
                    field)
    return answer


def _can_i(services: Services, session: Session, principal: Principal, action: str,
           resource: str, id_: str | None, spec: ResourceSpec, controller: Any,
           field: str | None) -> Answer:
    access = services.access
    ctx = RequestContext.detached(services, principal, session)
    if action == "c":
        proposed: dict[str, Any] = {}
        if spec.owner and spec.owner != "id":
            proposed[spec.owner] = principal.uid
        attr = access.membership_attr(resource)
        if id_ and attr and attr != "id":
            proposed[attr] = id_
        answer = _ask(access, principal, action, resource, proposed,
                      lambda: controller.check_create(ctx, proposed, quotas=False))
        return _field(access, principal, action, resource, proposed, field, answer)
    if not id_:
        if action == "l" and field is not None:
            allowed = access.list_fields(principal, resource, spec.model)
            if not access.may_list(principal, resource):
                return Answer(False, f"no policy of {resource!r} lets you list")
            if allowed is None or field in allowed or field == "id":
                return Answer(True, f"field {field!r} is readable on every {resource} you "
                                    "may list: filter, sort and q may use it")
            return Answer(False, f"field {field!r} is not readable on every {resource} you "
                                 "may list: filter, sort and q treat it as unknown")
        if action == "l":
            if access.may_list(principal, resource):
                return Answer(True, f"{resource} lists are filtered to the records you may "
                                    "read")
            return Answer(False, f"no policy of {resource!r} lets you list")
        return Answer(False, f"action {action!r} needs a record id")
    visible = getattr(controller, "visible", None)  # what its find would show
    where = visible(ctx, "r") if visible is not None else [live(spec.model)]
    model: Any = spec.model  # can_i refused a resource without one
    record = session.execute(select(model).where(
        model.id == id_, *where)).scalar_one_or_none()
    if record is None or not access.allows(principal, "r", resource, record):
        return Answer(False, f"no {resource} {id_} that you may read")
    if action in READ_ACTIONS:
        d = access.decide(principal, action, resource, record)
        return _field(access, principal, action, resource, record, field,
                      Answer(d.allowed, d.reason))
    answer = _ask(access, principal, action, resource, record,
                  lambda: controller.authorize(ctx, action, record))
    return _field(access, principal, action, resource, record, field, answer)


def _field(access: AccessControl, principal: Principal, action: str, resource: str,
           record: Any, field: str | None,
           answer: Answer) -> Answer:
    """The answer for one field, once the action itself is allowed."""
    if field is None or not answer.allowed:
        return answer
    d = access.field_decision(principal, action, resource, record, field)
    return Answer(d.allowed, d.reason)


def _ask(access: AccessControl, principal: Principal, action: str, resource: str,
         record: Any, check: Callable[[], str]) -> Answer:
    try:
        return Answer(True, check())
    except Problem as exc:
        d = access.decide(principal, action, resource, record)
        return Answer(False, exc.detail if d.allowed else d.reason)
