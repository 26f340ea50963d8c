"""``can-i``: may this principal do this action to that resource (record)? And why.

Used by ``GET /auth/can-i`` and ``apicrud rbac can-i``. The answer names the policy
entry or privacy rule that decided it, like ``kubectl auth can-i``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from apicrud.access.policy import ACTIONS
from apicrud.db.query import active_only


@dataclass(frozen=True)
class Answer:
    allowed: bool
    reason: str

    def to_dict(self, action: str, resource: str, id_: str | None) -> dict:
        out = {"allowed": self.allowed, "answer": "yes" if self.allowed else "no",
               "action": action, "resource": resource, "reason": self.reason}
        if id_:
            out["id"] = id_
        return out


def can_i(services, session, principal, action: str, resource: str,
          id_: str | None = None) -> Answer:
    """Explain one decision. For ``c``, ``id`` names the membership (e.g. the list) the new
    record would belong to; for other actions it names the record itself."""
    if action not in ACTIONS or len(action) != 1:
        raise ValueError(f"action must be one letter of {ACTIONS}")
    spec = services.resources.get(resource)
    if spec is None or spec.model is None:
        raise KeyError(resource)
    access = services.access
    if action == "c":
        proposed = {}
        if spec.owner and spec.owner != "id":
            proposed[spec.owner] = principal.uid
        attr = access.membership_attr(resource)
        if id_ and attr and attr != "id":
            proposed[attr] = id_
        d = access.decide(principal, "c", resource, proposed)
        return Answer(d.allowed, d.reason)
    if not id_:
        if action == "l":
            if access.may_list(principal, resource):
                return Answer(True, f"{resource} lists are filtered to the records you may "
                                    "read")
            return Answer(False, f"no policy of {resource!r} lets you list")
        return Answer(False, f"action {action!r} needs a record id")
    record = session.execute(select(spec.model).where(
        spec.model.id == id_, active_only(spec.model))).scalar_one_or_none()
    if record is None:
        return Answer(False, f"no {resource} {id_} (or it is in the trashcan)")
    if action != "r" and not access.allows(principal, "r", resource, record):
        return Answer(False, f"you may not read {resource} {id_}, so you may not "
                             f"{action!r} it")
    d = access.decide(principal, action, resource, record)
    return Answer(d.allowed, d.reason)
