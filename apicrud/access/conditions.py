"""Conditions of policy entries (``where:``): on a record's own columns and on columns of
the records it points at through foreign keys, several hops up.

Syntax (rbac.yaml)::

    - principal: "*"
      resource: "speaker:*"
      actions: rl
      where: {session.state: [approved, accepted], session.event.state: published}

A key is a column of the record (``state``) or a path through references
(``session.event.state``: the record's ``session_id`` names a session, whose
``event_id`` names an event, whose ``state`` is compared); each hop is a reference
attribute without its ``_id`` (or the attribute itself). A value is a constant, a list of
constants (any of them), ``null``, or ``"{{uid}}"`` (the caller's id: never true for an
anonymous caller). All conditions of an entry hold together (AND). A record pointed at
must be live (not trashed) to satisfy a condition.

The same condition compiles into SQL (``IN`` subqueries, one per hop, whatever the page
size) and is evaluated on one record or on proposed values (a dict): own columns from
the values, each hop by one query in the request's session (:data:`SESSION`), whose
answers are memoized in that session for the request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, or_, select, true
from sqlalchemy.orm import aliased

from apicrud.db.query import TRASHED

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

    from apicrud.access.policy import Rule

UID = "{{uid}}"
#: A callable giving the database session of the request being decided (set by the
#: request context): conditions reaching records through foreign keys read them in it.
#: Without one such a condition does not hold (deny).
SESSION: contextvars.ContextVar[Callable[[], Session | None] | None] = \
    contextvars.ContextVar("apicrud_access_session", default=None)


@dataclass(frozen=True)
class Compare:
    """``column`` equals one of ``values`` (None: IS NULL); ``uid``: the caller's id."""

    column: str
    values: tuple[Any, ...]
    uid: bool = False

    def text(self) -> str:
        shown = UID if self.uid else (list(self.values) if len(self.values) != 1
                                      else self.values[0])
        return f"{self.column}={shown}"


@dataclass(frozen=True)
class Where:
    """Conditions on one resource's records: its own columns, and per reference
    attribute the conditions on the record that attribute names."""

    resource: str
    own: tuple[Compare, ...] = ()
    hops: tuple[tuple[str, Where], ...] = ()  # (attribute, conditions there)

    def text(self, prefix: str = "") -> str:
        parts = [prefix + c.text() for c in self.own]
        for attr, sub in self.hops:
            parts.append(sub.text(f"{prefix}{_hop_name(attr)}."))
        return ", ".join(parts)


def _hop_name(attr: str) -> str:
    return attr[:-3] if attr.endswith("_id") else attr


def parse_where(value: Any) -> dict[tuple[str, ...], Any] | str:
    """The raw ``where:`` of an entry as {path: value}; a string says what is wrong."""
    if not isinstance(value, dict) or not value:
        return "where must map columns (or paths a.b.column) to values"
    out: dict[tuple[str, ...], Any] = {}
    for key, val in value.items():
        path = tuple(str(key).split("."))
        if not all(p and p.replace("_", "a").isalnum() and p[0].isalpha() for p in path):
            return f"where: {key!r} is not a column or a path a.b.column"
        if isinstance(val, list):
            if not val or not all(_scalar(v) for v in val):
                return f"where: {key!r} needs constants"
        elif not _scalar(val):
            return f"where: {key!r} needs a constant, a list of them, null or {UID!r}"
        if isinstance(val, str) and "{{" in val and val != UID:
            return f"where: {key!r}: only {UID!r} may be substituted"
        out[path] = val
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def resolve(resource: str, raw: dict[tuple[str, ...], Any],
            links: dict[str, dict[str, tuple[str, str]]],
            columns: dict[str, set[str]]) -> Where | str:
    """Bind paths to reference attributes and resources: ``links`` maps a resource to
    {hop name: (attribute, target resource)}. A string says what is wrong."""
    own: list[Compare] = []
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in raw.items():
        if len(path) == 1:
            if path[0] not in columns.get(resource, set()):
                return f"where: {path[0]!r} is not a column of {resource}"
            values = tuple(value) if isinstance(value, list) else (value,)
            own.append(Compare(path[0], () if value == UID else values, value == UID))
            continue
        hop = links.get(resource, {}).get(path[0])
        if hop is None:
            return (f"where: {'.'.join(path)!r}: {path[0]!r} is no reference of "
                    f"{resource}")
        nested.setdefault(path[0], {})[path[1:]] = value
    hops = []
    for name, sub in nested.items():
        attr, target = links[resource][name]
        inner = resolve(target, sub, links, columns)
        if isinstance(inner, str):
            return inner
        hops.append((attr, inner))
    return Where(resource, tuple(own), tuple(hops))


def _compare_sql(column: Any, cmp: Compare, uid: str | None) -> ColumnElement[bool]:
    if cmp.uid:
        return column == uid if uid else false()
    values = [v for v in cmp.values if v is not None]
    clause: ColumnElement[bool] | None = column.in_(values) if len(values) > 1 else (
        column == values[0] if values else None)
    if None in cmp.values:
        return or_(column.is_(None), clause) if clause is not None else column.is_(None)
    # a condition's list is never empty (parse_where): clause is None only with a null
    return clause if clause is not None else false()


def where_sql(where: Where, model: Any, models: dict[str, Any],
              uid: str | None) -> ColumnElement[bool]:
    """The condition as a SQL clause on ``model`` (the entry's resource, or an alias)."""
    parts = [_compare_sql(getattr(model, c.column), c, uid) for c in where.own]
    for attr, sub in where.hops:
        target = aliased(models[sub.resource])
        parts.append(getattr(model, attr).in_(
            select(target.id).where(target.status != TRASHED,
                                    where_sql(sub, target, models, uid))))
    return and_(*parts) if parts else true()


def _value(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def holds(where: Where, record: Any, models: dict[str, Any], uid: str | None) -> bool:
    """Does the condition hold for ``record`` (an ORM record or a dict of values)?"""
    for cmp in where.own:
        value = _value(record, cmp.column)
        if cmp.uid:
            if not uid or value != uid:
                return False
        elif value not in cmp.values:
            return False
    for attr, sub in where.hops:
        ref = _value(record, attr)
        if ref is None or not _parent_holds(sub, ref, models, uid):
            return False
    return True


def _session() -> Session | None:
    get = SESSION.get()
    return get() if get is not None else None


def _parent_holds(sub: Where, ref: Any, models: dict[str, Any], uid: str | None) -> bool:
    session = _session()
    if session is None:
        return False
    memo = session.info.setdefault("apicrud_conditions", {})
    key = (sub, ref, uid)
    if key not in memo:
        model = models[sub.resource]
        memo[key] = session.execute(select(model.id).where(
            model.id == ref, model.status != TRASHED,
            where_sql(sub, model, models, uid))).first() is not None
    return bool(memo[key])


def prefetch(where: Where, records: list[Any], models: dict[str, Any],
             uid: str | None) -> None:
    """Answer the hops of ``where`` for a page of records in one query per hop (what
    :func:`holds` then finds memoized): no query per row."""
    session = _session() if records else None
    if session is None:
        return
    memo = session.info.setdefault("apicrud_conditions", {})
    for attr, sub in where.hops:
        refs = sorted({v for v in (_value(r, attr) for r in records) if v is not None}
                      - {k[1] for k in memo if k[0] == sub and k[2] == uid})
        if not refs:
            continue
        model = models[sub.resource]
        found = {row[0] for row in session.execute(select(model.id).where(
            model.id.in_(refs), model.status != TRASHED, where_sql(sub, model, models, uid)))}
        for ref in refs:
            memo[(sub, ref, uid)] = ref in found


def columns_read(where: Where) -> set[str]:
    """The record's own attributes the condition reads (own columns, hop attributes)."""
    return {c.column for c in where.own} | {attr for attr, _ in where.hops}


def build_links(resources: dict[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """resource -> {hop name: (reference attribute, target resource)} from the declared
    resources (their ``references``: attribute -> table); a hop is named by its attribute
    without ``_id``, and by the attribute itself."""
    by_table = {r.table: name for name, r in resources.items()
                if getattr(r, "model", None) is not None}
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for name, res in resources.items():
        for attr, table in (getattr(res, "references", None) or {}).items():
            target = by_table.get(table)
            if target is not None:
                out.setdefault(name, {})[_hop_name(attr)] = (attr, target)
                out[name].setdefault(attr, (attr, target))
    return out


def resolve_policy(policy: Any, resources: dict[str, Any]) -> tuple[dict[Rule, Where], list[str]]:
    """Every entry's condition bound to attributes and resources: ({rule: Where},
    problems)."""
    links = build_links(resources)
    columns = {name: set(getattr(r, "columns", ()) or ()) for name, r in resources.items()}
    out, problems = {}, []
    for resource, rules in policy.rules.items():
        for rule in rules:
            if rule.where is None:
                continue
            raw = {path: list(v) if isinstance(v, tuple) else v for path, v in rule.where}
            found = resolve(resource, raw, links, columns)
            if isinstance(found, str):
                problems.append(f"{rule.source.split(': ')[0]}: "
                                f"{rule.source.split(': ')[1]}: {found}")
            else:
                out[rule] = found
    return out, problems
