"""Same-scope rules: a payload id must name a record of the record's own scope.

Declared in rbac.yaml::

    same_scope:
      task: {file_id: project}

A task's ``file_id`` must name a file of the task's own project: the scope of each side
is found by following foreign keys (the resources' ``references``) from the record, and
from the record the field names, up to the scope resource (task -> job -> project,
file -> project). The shortest such path is chosen at start-up; a rule without one is a
start-up error. Pointing at a record of another scope, even one the caller may read, is
the same 404 for that field as pointing at no record.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from apicrud.db.repository import Repository

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from apicrud.access.policy import Policy

#: a chain of foreign keys: ((resource, attribute naming the next record), ...)
Steps = tuple[tuple[str, str], ...]


class Scopes:
    """resource -> {field: (scope resource, path of the record, path of the target)}."""

    def __init__(self, policy: Policy, resources: dict[str, Any]) -> None:
        self.resources = resources
        self._by_table = {r.model.__tablename__: n for n, r in resources.items()
                          if getattr(r, "model", None) is not None}
        self.rules: dict[str, dict[str, tuple[str, str, Steps, Steps]]] = {}
        self.problems: list[str] = []
        for resource, fields in policy.same_scope.items():
            res = resources.get(resource)
            if res is None or getattr(res, "model", None) is None:
                self.problems.append(f"same_scope.{resource}: no such resource")
                continue
            for name, scope in fields.items():
                where = f"same_scope.{resource}.{name}"
                target_table = res.references.get(name)
                target = self._by_table.get(target_table) if target_table else None
                if target is None:
                    self.problems.append(f"{where}: not an id of another resource")
                    continue
                own = self.path(resource, scope, skip=name)
                other = self.path(target, scope)
                if own is None or other is None:
                    self.problems.append(f"{where}: no chain of ids leads from "
                                         f"{resource if own is None else target} to {scope}")
                    continue
                self.rules.setdefault(resource, {})[name] = (scope, target, own, other)

    def path(self, start: str, goal: str, skip: str | None = None) -> Steps | None:
        """The shortest ((resource, attr), ...) from ``start`` to ``goal``; () if equal."""
        if start == goal:
            return ()
        seen = {start}
        todo: deque[tuple[str, Steps]] = deque([(start, ())])
        while todo:
            name, steps = todo.popleft()
            for attr, table in sorted(self.resources[name].references.items()):
                nxt = self._by_table.get(table)
                if nxt is None or nxt in seen or attr == "uid" or \
                        (name == start and attr == skip):
                    continue
                out: Steps = (*steps, (name, attr))
                if nxt == goal:
                    return out
                seen.add(nxt)
                todo.append((nxt, out))
        return None

    def fields(self, resource: str) -> set[str]:
        """Every field whose change may change a same-scope answer of ``resource``."""
        out: set[str] = set()
        for name, (_, _, own, _) in self.rules.get(resource, {}).items():
            out.add(name)
            if own:
                out.add(own[0][1])
        return out

    def _follow(self, session: Session, value: Any, steps: Steps) -> Any:
        for name, attr in steps:
            if value is None:
                return None
            row = Repository(self.resources[name].model).get_live(session, value, attr)
            value = row[0] if row is not None else None
        return value

    def mismatch(self, session: Session, resource: str,
                 values: dict[str, Any]) -> tuple[str, str] | None:
        """(field, target resource) of the first rule ``values`` break, else None."""
        for name, (_scope, target, own, other) in self.rules.get(resource, {}).items():
            value = values.get(name)
            if value is None:
                continue
            mine = self._follow(session, values.get(own[0][1]), own[1:]) if own else \
                values.get("id")
            theirs = self._follow(session, value, other)
            if mine is None or theirs is None or mine != theirs:
                return name, target
        return None
