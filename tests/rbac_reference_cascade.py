"""A reference evaluator of cascades in rbac.yaml, written from issue #14 item 3 alone.

Shares no code with ``apicrud.access`` (nor with the flat evaluator in
``rbac_reference.py``, to keep the two easy to merge): it reads rbac.yaml itself and
answers, for an in-memory world of records and member rows, which action letters a
caller holds on a record. ``examples/projects/tests/test_projects_matrix.py`` compares
the running example against it.

Rules:

- ``private_resources`` entries ``{resource, attr, members, level_attr, parent}``; a
  caller's level on a record X of a private resource K is the highest of: the level of
  their active member rows naming X (``members`` rows whose ``attr`` is X's id), manager
  when they own X (``uid``), and, when K names a ``parent`` P, their level on the record
  of P that X's column ``<P's attr>`` names; a record that is not active grants nothing,
  and neither do its children through it;
- entries ``{principal, resource: "<res>:<target>", actions}``, ``r`` implying ``l``
  where no entry of the resource names ``l``; ``admin`` an administrator, ``user/{{uid}}``
  a signed-in caller on ``{{uid}}`` (records they own) or ``*``; a membership principal
  ``<K>-{{<attr>}}-<level>`` on ``<res>:{{<attr>}}`` holds on a record whose <attr> (for
  K's own records: their id) names a K record where the caller's level is at least
  <level> (levels ordered as in ``privacy_levels``);
- ``same_scope: {res: {field: scope}}``: following ids up (task -> job -> project,
  file -> project), the record the field names must reach the same scope record;
- ``where: {path: value}`` (item 2): an entry holds on a record only where every
  condition does; a path is a column of the record or ``a.b.col``: the record's ``a_id``
  names an active record, whose ``b_id`` names one, whose ``col`` is compared; a value is
  a constant, a list (any of them) or ``{{uid}}`` (the caller);
- ``read_fields`` (item 1): the fields an entry's read shows (absent: all); the fields of
  every entry granting ``r`` on a record add up, and ``id`` and ``rbac`` always show;
- a create needs ``c`` on the proposed record, and each payload id must name an active
  record the caller may read (and of the same scope, where a rule says so);
- the rows of a ``members`` resource (item 3, and the membership module's rules): beyond
  their own entries, who holds ``h`` (manage) on the record a row names may add rows at
  any level, change and remove them; ``i`` (invite) adds rows at the lowest level; ``j``
  (join) adds one's own row at ``member``. Adding a row needs the record it names to be
  readable (not the person it is for: the callers add rows for existing accounts only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class CascadeWorld:
    """records: id -> (resource, fields, active); rows are records of members resources."""

    records: dict[str, tuple[str, dict[str, Any], bool]] = field(default_factory=dict)

    def add(self, resource: str, fields: dict[str, Any], active: bool = True) -> None:
        self.records[fields["id"]] = (resource, dict(fields), active)


class CascadeReference:
    def __init__(self, rbac_path: str) -> None:
        with open(rbac_path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        self.levels = list(data["privacy_levels"])
        self.private = {e["resource"]: e for e in data.get("private_resources") or []}
        self.scopes = data.get("same_scope") or {}
        self.entries: dict[str, list[tuple]] = {}
        for res, entries in data["policies"].items():
            names_l = any("l" in e["actions"] for e in entries)
            for e in entries:
                actions = e["actions"] + ("l" if "r" in e["actions"] and not names_l else "")
                shown = e.get("read_fields", e.get("fields"))
                self.entries.setdefault(res, []).append(
                    (e["principal"], e["resource"].split(":", 1)[1], actions,
                     dict(e.get("where") or {}), None if shown is None else set(shown)))
        # members resource -> (the private resource its rows name, the attribute naming it)
        self.member_of = {e["members"]: (e["resource"], e["attr"])
                          for e in self.private.values() if e.get("members")}

    def rank(self, level: str | None) -> int:
        return self.levels.index(level) if level in self.levels else -1

    def level(self, world: CascadeWorld, uid: str, kind: str, rid: Any) -> str | None:
        """The caller's level on record ``rid`` of private resource ``kind``."""
        found = world.records.get(rid)
        if found is None or found[0] != kind or not found[2]:
            return None
        fields = found[1]
        spec = self.private[kind]
        best = None
        level_attr = spec.get("level_attr", "authorization")
        for res, row, active in world.records.values():
            if res == spec.get("members") and active and row.get("uid") == uid and \
                    row.get(spec["attr"]) == rid:
                lv = row.get(level_attr) or "member"
                if lv in self.levels[1:-1] and self.rank(lv) > self.rank(best):
                    best = lv
        if fields.get("uid") == uid and self.rank("manager") > self.rank(best):
            best = self.levels[-2]
        parent = spec.get("parent")
        if parent:
            up = self.level(world, uid, parent, fields.get(self.private[parent]["attr"]))
            if self.rank(up) > self.rank(best):
                best = up
        return best

    def _holds(self, world, caller, principal: str, target: str, resource: str,
               record: dict) -> bool:
        uid, admin = caller
        if principal == "*":
            return True
        if uid is None:
            return False
        if principal == "admin":
            return admin
        if principal == "user/{{uid}}":
            return target == "*" or (target == "{{uid}}" and record.get("uid") == uid)
        kind, rest = principal.split("-{{", 1)
        attr, need = rest.split("}}-", 1)
        if target != "{{" + attr + "}}":
            return False
        rid = record.get("id") if kind == resource else record.get(attr)
        held = self.level(world, uid, kind, rid)
        return held is not None and self.rank(held) >= self.rank(need)

    @staticmethod
    def _condition(world: CascadeWorld, caller, record: dict, path: str, wanted) -> bool:
        *hops, column = path.split(".")
        fields = record
        for hop in hops:
            found = world.records.get(fields.get(hop + "_id"))
            if found is None or found[0] != hop or not found[2]:
                return False
            fields = found[1]
        options = wanted if isinstance(wanted, list) else [wanted]
        if "{{uid}}" in options and caller[0] is None:
            return False
        options = [caller[0] if w == "{{uid}}" else w for w in options]
        return fields.get(column) in options

    def _granting(self, world, caller, resource: str, record: dict):
        for principal, target, actions, where, shown in self.entries.get(resource, ()):
            if self._holds(world, caller, principal, target, resource, record) and all(
                    self._condition(world, caller, record, path, wanted)
                    for path, wanted in where.items()):
                yield actions, shown

    def actions(self, world: CascadeWorld, caller: tuple[str | None, bool], resource: str,
                record: dict) -> set[str]:
        out: set[str] = set()
        for actions, _shown in self._granting(world, caller, resource, record):
            out |= set(actions)
        if resource in self.member_of:
            kind, attr = self.member_of[resource]
            parent = world.records.get(record.get(attr))
            if parent is not None and parent[2] and \
                    "h" in self.actions(world, caller, kind, parent[1]):
                out |= set("ud")
        return out

    def read_fields(self, world: CascadeWorld, caller, resource: str,
                    record: dict) -> set[str] | None:
        """The fields a read of ``record`` shows the caller (None: every field)."""
        out: set[str] = {"id", "rbac"}
        for actions, shown in self._granting(world, caller, resource, record):
            if "r" in actions:
                if shown is None:
                    return None
                out |= shown
        return out

    def readable(self, world: CascadeWorld, caller, rid: Any) -> bool:
        found = world.records.get(rid)
        return found is not None and found[2] and \
            "r" in self.actions(world, caller, found[0], found[1])

    def scope_of(self, world: CascadeWorld, fields: dict, scope: str,
                 skip: str | None = None) -> Any:
        """The id of the ``scope`` record reached from a record's fields by following
        ids named ``<resource>_id`` up (``skip``: a field not to follow)."""
        seen = 0
        while fields is not None and seen < 10:
            seen += 1
            ups = sorted((k, v) for k, v in fields.items() if k.endswith("_id") and k != skip
                         and v in world.records and world.records[v][0] == k[:-3])
            if not ups:
                return None
            rid = ups[0][1]
            if world.records[rid][0] == scope:
                return rid
            fields, skip = world.records[rid][1], None
        return None

    def may_add_member(self, world: CascadeWorld, caller, resource: str,
                       proposed: dict) -> bool:
        """May the caller add the row ``proposed`` of members resource ``resource``?"""
        kind, attr = self.member_of[resource]
        if not self.readable(world, caller, proposed.get(attr)):
            return False
        if "c" in self.actions(world, caller, resource, proposed):
            return True
        held = self.actions(world, caller, kind, world.records[proposed[attr]][1])
        spec = self.private[kind]
        level = proposed.get(spec.get("level_attr", "authorization")) or "member"
        return "h" in held or (level == self.levels[1] and "i" in held) or (
            level == "member" and proposed.get("uid") == caller[0] and "j" in held)

    def may_create(self, world: CascadeWorld, caller, resource: str, proposed: dict,
                   references: dict[str, str]) -> bool:
        """``references``: payload id field -> resource; all must be readable."""
        if resource in self.member_of:
            return self.may_add_member(world, caller, resource, proposed)
        for attr in references:
            if proposed.get(attr) is not None and \
                    not self.readable(world, caller, proposed[attr]):
                return False
        for attr, scope in (self.scopes.get(resource) or {}).items():
            if proposed.get(attr) is None:
                continue
            target = world.records.get(proposed[attr])
            theirs = None if target is None else (
                proposed[attr] if target[0] == scope else
                self.scope_of(world, target[1], scope))
            if theirs is None or self.scope_of(world, proposed, scope, skip=attr) != theirs:
                return False
        return "c" in self.actions(world, caller, resource, proposed)
