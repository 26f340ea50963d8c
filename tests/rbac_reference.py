"""A reference evaluator of rbac.yaml, written from CONTRACT section 5 alone.

It deliberately shares no code with ``apicrud.access``: it parses rbac.yaml and the
OpenAPI documents itself and answers, for a small in-memory "world" (lists, their
members, records), which action letters a caller holds on a record and which HTTP
outcome each operation must have. ``tests/integration/test_rbac_matrix.py`` compares
the running service against it.

Rules implemented (CONTRACT 1, 3, 5; README "Policies"; issue 11):

- entries ``{principal, resource: "<res>:<target>", actions}``; where a resource's entries
  never name ``l``, an entry with ``r`` also grants ``l``;
- principals: ``*`` anyone, anonymous too; ``admin`` an active administrator;
  ``user/{{uid}}`` any signed-in active account; ``pending`` an account awaiting
  confirmation; ``<membership>-{{<attr>}}-<level>`` an active account whose level in the
  record's membership is at least <level> (levels ordered as in ``privacy_levels``);
- targets: ``*`` every record; ``{{uid}}`` records owned by the caller (owner attribute
  ``uid``, ``id`` for person); ``{{<attr>}}`` records whose <attr> (for the membership
  resource itself: its ``id``) names a membership where the caller holds the level;
- a membership level comes from active member rows of an active membership record;
  the owner of the membership record holds the highest level below secret (manager);
- privacy, for ``{{<attr>}}`` targets and read actions only: a record with privacy p is
  readable through level v iff p is not the last (secret) level and rank(p) <= rank(v);
  EXCEPT the membership resource itself (a list): every holder of its role, at any
  level, reads it whatever its privacy (CONTRACT 5, corrected);
- a record whose privacy is the first level (public) may be read (r, l) by every
  authenticated caller (pending too), for resources with a privacy field whose entries
  name that action;
- the members resource (``listmember``) has its controller's rules, which count as
  holding the action (they show in ``rbac`` and ``can-i``): ``h`` on the membership
  record lets you add, change and remove anyone at any level; ``i`` add an invitee (the
  lowest level); ``j`` add yourself as a member, and change your own membership row
  (``u``: accept an invitation, invitee -> member; nobody raises themself further);
- owners (CONTRACT 3, 5): a record is created for, or moved to, another ``uid`` only by a
  principal allowed on ``{resource}:*`` for that action; on the members resource ``uid``
  is the member being added (membership rules on create), and moving an existing
  membership to another person or list needs ``{members}:*``;
- payload ids (``list_id``, ``category_id``, ``uid``) must name an active record the
  caller may read, else 404 naming the field; a record created inside a membership
  needs ``c`` there (404 naming the membership attribute otherwise);
- trashcan: a trashed record is seen (listed, shown, restored, purged) by those who hold
  ``d`` on it and could read it live (``d`` through a membership ignores privacy: without
  the read, a manager would see a trashed secret message of their list);
- restore (``PUT /trashcan/...``): the caller must see the trashed record, and a create
  of the record as it is must pass now (policy ``c``, membership rules, references,
  owner rule).

Field rules and conditions (issue 14, README "Field rules", "Conditions"; the functions
under "field rules and conditions" below):

- ``where: {path: value}``: an entry holds only where every condition does; a path is a
  column of the record or ``a.b.column``: the record's ``a_id`` names an ``a`` record
  (the hop's name is the resource's), which must be live, and so on; a value is a
  constant, a list (any of them), null, or ``{{uid}}`` (the caller; never anonymous);
  a create reads the values the record would have (defaults included), an update must
  hold before and after;
- ``read_fields``/``write_fields``/``fields``: what an entry's reads show and its writes
  may set (None: every field); entries granting the caller the action on the record add
  up; ``id`` and ``rbac`` are always read; a write naming a field no granting entry
  lists is 403; filter, sort and q may use only the fields read on every record the
  caller may list: entries selecting the same rows add up, an entry on every row
  (``*``, no condition) adds to all, and the rest must all grant the field.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

ACTIONS = "crudlghij"
READ = frozenset("rl")
_MEMBER = re.compile(r"^([a-z][a-z0-9_]*)-\{\{([a-z][a-z0-9_]*)\}\}-([a-z]+)$")
_TARGET = re.compile(r"^([a-z][a-z0-9_]*):(\*|\{\{([a-z][a-z0-9_]*)\}\})$")


@dataclass(frozen=True)
class Entry:
    resource: str
    principal: str  # any | admin | user | pending | member
    target: str  # all | owner | attr
    actions: frozenset
    attr: str | None = None  # membership attribute (target attr / member principal)
    membership: str | None = None  # membership resource named by a member principal
    level: str | None = None  # level named by a member principal
    # issue 14: ``where:`` as ((path, value), ...) and the field rules (None: every field)
    where: tuple | None = None
    read_fields: frozenset | None = None
    write_fields: frozenset | None = None


@dataclass(frozen=True)
class Caller:
    uid: str | None = None  # person id; None: anonymous
    is_admin: bool = False
    status: str = "active"  # active | pending
    name: str = "anonymous"

    @property
    def authenticated(self) -> bool:
        return self.uid is not None


ANONYMOUS = Caller()


@dataclass
class World:
    """What the reference needs to know about the database.

    ``records[resource][id]`` is a dict of the record's fields (``status`` included);
    the membership resource's records (lists) and its members resource's records
    (listmember rows) are read from there too.
    """

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, resource: str, **values) -> dict[str, Any]:
        values.setdefault("status", "active")
        self.records.setdefault(resource, {})[values["id"]] = values
        return values

    def get(self, resource: str, id_: Any) -> dict[str, Any] | None:
        return self.records.get(resource, {}).get(id_)

    def rows(self, resource: str):
        return self.records.get(resource, {}).values()


@dataclass(frozen=True)
class Outcome:
    status: int
    fields: frozenset = frozenset()  # for a 404: fields of which one must be named
    also: frozenset = frozenset()  # other statuses that are as correct (a refusal: 403/404)

    def accepts(self, code: int) -> bool:
        return code == self.status or code in self.also

    @property
    def ok(self) -> bool:
        return self.status < 400


REFUSED = Outcome(403, also=frozenset({404}))  # refused; 403 or 404 are both correct


def _conditions_and_fields(item: dict) -> dict[str, Any]:
    """An entry's ``where`` and field rules, as Entry keywords (issue 14)."""
    out: dict[str, Any] = {}
    if item.get("where") is not None:
        out["where"] = tuple((tuple(str(k).split(".")),
                              tuple(v) if isinstance(v, list) else v)
                             for k, v in item["where"].items())
    both = item.get("fields")
    for key in ("read_fields", "write_fields"):
        value = item.get(key, both)
        if value is not None:
            out[key] = frozenset(value)
    return out


class Reference:
    def __init__(self, rbac_path: str, openapi_dir: str) -> None:
        with open(rbac_path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        self.levels = tuple(data["privacy_levels"])
        # private_resources: membership resource -> (attr, members resource, level attr)
        self.memberships = {}
        for ms in data.get("private_resources") or []:
            self.memberships[ms["resource"]] = (ms["attr"], ms.get("members"),
                                                ms.get("level_attr", "authorization"))
        self.entries: dict[str, list[Entry]] = {}
        for resource, items in data["policies"].items():
            out = []
            for item in items:
                out.append(self._entry(resource, item))
            if not any("l" in e.actions for e in out):
                out = [Entry(**{**e.__dict__, "actions": e.actions | {"l"}})
                       if "r" in e.actions else e for e in out]
            self.entries[resource] = out
        self.privacy_field: dict[str, str | None] = {}
        self.fields: dict[str, set[str]] = {}
        self.read_only: dict[str, set[str]] = {}
        self.defaults: dict[str, dict[str, Any]] = {}  # the schemas' default values
        for path in glob.glob(os.path.join(openapi_dir, "*.schema.yaml")):
            name = os.path.basename(path)[:-len(".schema.yaml")]
            with open(path, encoding="utf-8") as fh:
                props = (yaml.safe_load(fh) or {}).get("properties") or {}
            self.fields[name] = set(props)
            self.read_only[name] = {k for k, v in props.items()
                                    if isinstance(v, dict) and v.get("readOnly")}
            self.privacy_field[name] = "privacy" if "privacy" in props else None
            self.defaults[name] = {k: v["default"] for k, v in props.items()
                                   if isinstance(v, dict) and "default" in v}
        self.public_ops: set[str] = set()
        for path in glob.glob(os.path.join(openapi_dir, "*.path.yaml")):
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
            for item in doc.values():
                for op in (item or {}).values():
                    if isinstance(op, dict) and op.get("x-public"):
                        self.public_ops.add(op.get("operationId"))

    # -- parsing ----------------------------------------------------------------
    def _entry(self, resource: str, item: dict) -> Entry:
        text = item["principal"]
        actions = frozenset(item["actions"])
        assert actions <= set(ACTIONS), item
        kw: dict[str, Any] = {}
        if text == "*":
            kw["principal"] = "any"
        elif text == "admin":
            kw["principal"] = "admin"
        elif text == "pending":
            kw["principal"] = "pending"
        elif text == "user/{{uid}}":
            kw["principal"] = "user"
        else:
            m = _MEMBER.match(text)
            assert m, f"unknown principal {text!r}"
            kw.update(principal="member", membership=m.group(1), attr=m.group(2),
                      level=m.group(3))
        m = _TARGET.match(item["resource"])
        assert m and m.group(1) == resource, item
        if m.group(3) is None:
            kw["target"] = "all"
        elif m.group(3) == "uid":
            kw["target"] = "owner"
        else:
            kw["target"] = "attr"
            kw["attr"] = m.group(3)
        kw.update(_conditions_and_fields(item))
        return Entry(resource=resource, actions=actions, **kw)

    # -- helpers ----------------------------------------------------------------
    def rank(self, level: str | None) -> int:
        return self.levels.index(level) if level in self.levels else len(self.levels)

    @staticmethod
    def owner_attr(resource: str) -> str:
        return "id" if resource == "person" else "uid"

    def has_owner(self, resource: str) -> bool:
        """Whether records of ``resource`` carry an owner field (``uid``) one could move."""
        return resource != "person" and "uid" in self.fields.get(resource, set())

    def membership_of_attr(self, attr: str) -> str | None:
        return next((res for res, (a, _, _) in self.memberships.items() if a == attr), None)

    def members_of(self, resource: str):
        """(membership resource, attr, level attr) when ``resource`` is a members resource."""
        for res, (attr, members, level_attr) in self.memberships.items():
            if members == resource:
                return res, attr, level_attr
        return None

    def level(self, world: World, caller: Caller, membership: str, mid: Any) -> str | None:
        """The caller's level in membership record ``mid`` (None: not a member)."""
        if not caller.authenticated or caller.status != "active" or mid is None:
            return None
        parent = world.get(membership, mid)
        if parent is None or parent.get("status") != "active":
            return None
        attr, members, level_attr = self.memberships[membership]
        usable = self.levels[1:-1]
        best = None
        for row in world.rows(members) if members else ():
            if row.get(attr) == mid and row.get("uid") == caller.uid and \
                    row.get("status") == "active" and row.get(level_attr) in usable and \
                    (best is None or self.rank(row[level_attr]) > self.rank(best)):
                best = row[level_attr]
        if parent.get(self.owner_attr(membership)) == caller.uid:
            best = usable[-1]  # the owner manages it
        return best

    def _principal(self, e: Entry, caller: Caller) -> bool:
        if e.principal == "any":
            return True
        if not caller.authenticated:
            return False
        if e.principal == "admin":
            return caller.is_admin and caller.status == "active"
        if e.principal == "user":
            return caller.status == "active"
        if e.principal == "pending":
            return caller.status == "pending"
        return caller.status == "active"  # member: the level is checked with the record

    def _membership_id(self, e: Entry, resource: str, record: dict) -> tuple[str, Any]:
        membership = e.membership or self.membership_of_attr(e.attr)
        if resource == membership:
            return membership, record.get("id")  # a list is its own membership
        return membership, record.get(e.attr)

    def _entry_allows(self, e: Entry, world: World, caller: Caller, action: str,
                      resource: str, record: dict) -> bool:
        if action not in e.actions or not self._principal(e, caller):
            return False
        if e.where is not None and not self.condition_holds(e, world, caller, record):
            return False
        held = None
        if e.principal == "member" or e.target == "attr":
            membership, mid = self._membership_id(e, resource, record)
            held = self.level(world, caller, membership, mid)
            if held is None:
                return False
            if e.level is not None and self.rank(held) < self.rank(e.level):
                return False
        if e.target == "all":
            return True
        if e.target == "owner":
            return caller.authenticated and \
                record.get(self.owner_attr(resource)) == caller.uid
        # attr target: privacy limits reads through a membership, except on the
        # membership record itself, which every holder of its role reads (CONTRACT 5)
        if resource in self.memberships:
            return True
        column = self.privacy_field.get(resource)
        if action in READ and column is not None:
            p = record.get(column) or self.levels[-1]
            return p != self.levels[-1] and self.rank(p) <= self.rank(held)
        return True

    def _public_allows(self, caller: Caller, action: str, resource: str, record: dict) -> bool:
        column = self.privacy_field.get(resource)
        return (action in READ and column is not None and caller.authenticated
                and record.get(column) == self.levels[0]
                and any(action in e.actions for e in self.entries.get(resource, ())))

    def star(self, caller: Caller, resource: str, action: str) -> bool:
        """Whether the caller is a principal allowed ``action`` on ``{resource}:*``."""
        return any(e.target == "all" and action in e.actions and self._principal(e, caller)
                   and e.where is None  # a conditioned entry covers only some records
                   for e in self.entries.get(resource, ()))

    # -- decisions --------------------------------------------------------------
    def holds(self, world: World, caller: Caller, action: str, resource: str,
              record: dict) -> bool:
        """rbac.yaml alone (plus the public rule): may ``caller`` ``action`` ``record``?"""
        return any(self._entry_allows(e, world, caller, action, resource, record)
                   for e in self.entries.get(resource, ())) or \
            self._public_allows(caller, action, resource, record)

    def _parent(self, world, resource, record):
        ms = self.members_of(resource)
        if ms is None:
            return None, None
        membership, attr, _ = ms
        parent = world.get(membership, record.get(attr))
        if parent is None or parent.get("status") != "active":
            return membership, None
        return membership, parent

    def _parent_holds(self, world, caller, action, resource, record) -> bool:
        membership, parent = self._parent(world, resource, record)
        return parent is not None and self.holds(world, caller, action, membership, parent)

    def _extra(self, world, caller, action, resource, record) -> bool:
        """The members resource's own rules for change (u) and removal (d) of a row."""
        if self.members_of(resource) is None or action not in ("u", "d"):
            return False
        if not self._parent_holds(world, caller, "r", resource, record):
            return False
        if self._parent_holds(world, caller, "h", resource, record):
            return True
        # Reading of an ambiguity: j ("change your own membership") counts as u on your
        # own row, so rbac and can-i show u there for every level holding j; what the
        # change may be is then the body's business (update(): only invitee -> member).
        own = caller.authenticated and record.get("uid") == caller.uid
        return action == "u" and own and \
            self._parent_holds(world, caller, "j", resource, record)

    def may(self, world, caller, action, resource, record) -> bool:
        """Policy or controller rule: does the caller hold ``action`` on ``record``?"""
        return self.holds(world, caller, action, resource, record) or \
            self._extra(world, caller, action, resource, record)

    def letters(self, world: World, caller: Caller, resource: str, record: dict) -> str:
        """The ``rbac`` field: sorted letters of every action held on the record."""
        return "".join(a for a in sorted(ACTIONS)
                       if self.may(world, caller, a, resource, record))

    def _extra_create(self, world, caller, resource, data) -> bool:
        ms = self.members_of(resource)
        if ms is None or not self._parent_holds(world, caller, "r", resource, data):
            return False
        _, _, level_attr = ms
        if self._parent_holds(world, caller, "h", resource, data):
            return True
        level = data.get(level_attr) or "member"
        if level == self.levels[1] and self._parent_holds(world, caller, "i", resource, data):
            return True
        return data.get("uid") == caller.uid and level == "member" and \
            self._parent_holds(world, caller, "j", resource, data)

    # -- HTTP outcomes ----------------------------------------------------------
    def _secured(self, resource: str, op: str) -> bool:
        return f"{resource}.{op}" not in self.public_ops

    def get(self, world, caller, resource, record) -> int:
        if self._secured(resource, "get") and not caller.authenticated:
            return 401
        return 200 if self.holds(world, caller, "r", resource, record) else 404

    def listed(self, world, caller, resource, record) -> bool | None:
        """Whether find shows the record (None: the find itself is refused with 401)."""
        if self._secured(resource, "find") and not caller.authenticated:
            return None
        return record.get("status", "active") == "active" and \
            self.holds(world, caller, "l", resource, record)

    def write(self, world, caller, action: str, resource: str, record) -> int:
        """PUT/PATCH (``u``) changing nothing, or DELETE (``d``), of an existing record."""
        op = {"u": "update", "d": "delete"}[action]
        if self._secured(resource, op) and not caller.authenticated:
            return 401
        if not self.holds(world, caller, "r", resource, record):
            return 404
        return 200 if self.may(world, caller, action, resource, record) else 403

    def update(self, world, caller, resource, record, changes: dict) -> Outcome:
        """PUT/PATCH of ``changes`` to an existing record."""
        status = self.write(world, caller, "u", resource, record)
        if status != 200:
            return Outcome(status)
        owner = self.owner_attr(resource)
        moved = {k for k, v in changes.items() if k != "id" and v != record.get(k)}
        ms = self.members_of(resource)
        if owner in moved and not self.star(caller, resource, "u"):
            return REFUSED  # CONTRACT 3/5: only {resource}:* moves a record to another uid
        if ms is not None:
            _, attr, level_attr = ms
            if attr in moved and not self.star(caller, resource, "u"):
                return REFUSED  # a membership is not moved to another list either
            # j: only accepting an invitation (invitee -> member)
            if level_attr in moved and not self.star(caller, resource, "u") and \
                    not self._parent_holds(world, caller, "h", resource, record) and \
                    not (record.get(level_attr) == self.levels[1] and
                         changes[level_attr] == "member"):
                return Outcome(403)
        return Outcome(200)

    def create(self, world, caller, resource, data: dict, references: dict[str, str],
               unique: tuple[tuple[str, ...], ...] = ()) -> Outcome:
        """POST of ``data``; ``references``: field -> resource it names.

        404 naming a field that names a record the caller may not read, or naming the
        membership attribute when the caller may not create there; refused (403 or 404)
        when the record is for another uid and the caller is not a ``{resource}:*``
        principal; 409 when an authorized insert would break one of the ``unique``
        column sets.
        """
        if self._secured(resource, "create") and not caller.authenticated:
            return Outcome(401)
        data = dict(data)
        owner = self.owner_attr(resource)
        if owner != "id":
            data.setdefault(owner, caller.uid)
        for name, value in self.schema_defaults(resource).items():
            data.setdefault(name, value)
        ms = self.members_of(resource)
        if ms is not None:
            data.setdefault(ms[2], "member")
        bad = set()
        for attr, target in references.items():
            value = data.get(attr)
            if value is None:
                continue
            rec = world.get(target, value)
            if rec is None or rec.get("status") != "active":
                bad.add(attr)
            elif ms is not None and attr == "uid":
                continue  # adding a member needs h/i/j on the list, not reading the person
            elif not self.holds(world, caller, "r", target, rec):
                bad.add(attr)
        if bad:
            return Outcome(404, frozenset(bad))
        if ms is None and owner != "id" and data.get(owner) != caller.uid and \
                not self.star(caller, resource, "c"):
            return REFUSED  # CONTRACT 3: a record for another uid
        if not (self.holds(world, caller, "c", resource, data) or
                self._extra_create(world, caller, resource, data)):
            attr = self.membership_attr(resource)
            if attr and attr != "id" and data.get(attr) is not None:
                return Outcome(404, frozenset({attr}))
            return Outcome(403)
        for cols in unique:  # unique values bind live records only (trashed ones free them)
            key = tuple(data.get(c) for c in cols)
            if any(tuple(r.get(c) for c in cols) == key and r.get("status") == "active"
                   and r.get("id") != data.get("id") for r in world.rows(resource)):
                return Outcome(409)
        return Outcome(201)

    def may_create_in(self, world, caller, resource, membership_id) -> bool:
        """``can-i c <resource> <membership id>``: may the caller create something there?

        For the members resource: add someone at some level (h, i, j or policy c)."""
        if not caller.authenticated:
            return False
        attr = self.membership_attr(resource)
        data = {attr: membership_id} if attr and attr != "id" else {}
        ms = self.members_of(resource)
        if ms is not None:
            if not self._parent_holds(world, caller, "r", resource, data):
                return False
            return self.holds(world, caller, "c", resource, data) or any(
                self._parent_holds(world, caller, a, resource, data) for a in "hij")
        if attr and attr != "id":
            membership = self.membership_of_attr(attr)
            parent = world.get(membership, membership_id)
            if parent is None or parent.get("status") != "active" or \
                    not self.holds(world, caller, "r", membership, parent):
                return False
        data[self.owner_attr(resource)] = caller.uid
        return self.holds(world, caller, "c", resource, data)

    def restore(self, world, caller, resource, record, references: dict[str, str],
                unique: tuple[tuple[str, ...], ...] = ()) -> Outcome:
        """``PUT /trashcan/<resource>-<id> {"status": "active"}``; ``world`` as it is now
        (the record trashed). Seen only with ``d``; then it must pass as a create."""
        if not caller.authenticated:
            return Outcome(401)
        if not self.may_trash(world, caller, resource, record):
            return Outcome(404)
        data = {k: v for k, v in record.items() if k != "status"}
        made = self.create(world, caller, resource, data, references, unique)
        if made.status == 201:
            return Outcome(200)
        if made.status == 409:
            return made
        return REFUSED

    def may_trash(self, world, caller, resource, record) -> bool:
        """Whether a trashed record is the caller's to see, restore or purge: they may
        delete it (d) and, as for the live record (CONTRACT 1: a record you may not read
        is not found), read it. Security reading of an ambiguity: ``d`` through a
        membership ignores privacy, so ``d`` alone would show a manager the fields of a
        secret message of their list once it is trashed, which they could never read."""
        return self.may(world, caller, "d", resource, record) and \
            self.holds(world, caller, "r", resource, record)

    def trash_visible(self, world, caller, resource, record) -> int:
        """``GET /trashcan/<resource>-<id>`` of a trashed record."""
        if not caller.authenticated:
            return 401
        return 200 if self.may_trash(world, caller, resource, record) else 404

    def membership_attr(self, resource: str) -> str | None:
        if resource in self.memberships:
            return "id"
        attrs = {a for a, _, _ in self.memberships.values()}
        found = sorted(attrs & self.fields.get(resource, set()))
        return found[0] if found else None

    # -- bulk writes and embedding (README "Richer reads and bulk writes") -----------------
    def bulk_create(self, world, caller, resource, items: list[dict], references: dict[str, str],
                    unique: tuple[tuple[str, ...], ...] = ()) -> tuple[Outcome, int | None]:
        """``POST /{resource}`` with an array: every record or none. The outcome of the
        first record a single create would refuse (and its index), else 201."""
        for i, item in enumerate(items):
            made = self.create(world, caller, resource, item, references, unique)
            if not made.ok:
                return made, i
        return Outcome(201), None

    def bulk_write(self, world, caller, action: str, resource: str, records: list[dict],
                   changes: dict | None = None) -> list[Outcome]:
        """``PATCH``/``DELETE /{resource}/{id},{id}``: each record's single outcome; the
        batch succeeds iff every one does (all or none)."""
        if action == "u":
            return [self.update(world, caller, resource, r, changes or {}) for r in records]
        return [Outcome(self.write(world, caller, action, resource, r)) for r in records]

    def bulk_matched(self, world, caller, resource: str, records: list[dict]) -> list[dict]:
        """The records a bulk write by filter touches among ``records`` (all matching the
        filter): the live ones the caller may read. A filter only narrows."""
        return [r for r in records if r.get("status", "active") == "active"
                and self.holds(world, caller, "r", resource, r)]

    def embedded_one(self, world, caller, target: str, id_: Any) -> dict | None:
        """A to-one embed: the record as the caller would read it, or None."""
        rec = world.get(target, id_)
        if rec is None or rec.get("status") != "active" or \
                not self.holds(world, caller, "r", target, rec):
            return None
        return rec

    def embedded_many(self, world, caller, target: str, via: str, parent_id: Any,
                      limit: int, newest_first: str = "created") -> list[dict]:
        """A to-many embed: the newest ``limit`` records naming ``parent_id`` in ``via``
        that the caller may read (ties by id, as every sort)."""
        rows = [r for r in world.rows(target) if r.get(via) == parent_id
                and r.get("status") == "active" and self.holds(world, caller, "r", target, r)]
        rows.sort(key=lambda r: r["id"])
        rows.sort(key=lambda r: r[newest_first], reverse=True)
        return rows[:limit]

    # -- field rules and conditions (issue 14) -----------------------------------------
    def schema_defaults(self, resource: str) -> dict[str, Any]:
        """What a create stores where the body says nothing: the schema's ``default``s
        (what conditions on a new record read)."""
        return dict(self.defaults.get(resource, {}))

    def condition_holds(self, e: Entry, world: World, caller: Caller, record: dict) -> bool:
        """Every condition of ``e.where`` holds for ``record`` (hops through live records)."""
        for path, wanted in e.where:
            rec = record
            for hop in path[:-1]:  # hop "session": the record's session_id names a session
                rec = world.get(hop, rec.get(f"{hop}_id"))
                if rec is None or rec.get("status") != "active":
                    return False
            value = rec.get(path[-1])
            if wanted == "{{uid}}":
                if not caller.authenticated or value != caller.uid:
                    return False
            elif isinstance(wanted, tuple):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True

    def _granting(self, world, caller, action, resource, record) -> list[Entry]:
        return [e for e in self.entries.get(resource, ())
                if self._entry_allows(e, world, caller, action, resource, record)]

    def readable_fields(self, world, caller, resource, record) -> frozenset | None:
        """The properties a get or find shows of ``record`` (None: all; empty: none
        besides id and rbac); only for a record the caller may read."""
        found: set = set()
        for e in self._granting(world, caller, "r", resource, record):
            if e.read_fields is None:
                return None
            found |= e.read_fields
        return frozenset(found | {"id", "rbac"})

    def writable_fields(self, world, caller, action, resource, record) -> frozenset | None:
        """The fields ``action`` (c, u) may set on ``record`` (for c: its values)."""
        found: set = set()
        for e in self._granting(world, caller, action, resource, record):
            if e.write_fields is None:
                return None
            found |= e.write_fields
        return frozenset(found)

    def _may_list_through(self, e: Entry, world: World, caller: Caller) -> bool:
        """Could ``e`` let ``caller`` list some record: its principal, and for a
        membership entry a membership at its level somewhere."""
        if "l" not in e.actions or not self._principal(e, caller):
            return False
        if e.principal != "member" and e.target != "attr":
            return e.target != "owner" or caller.authenticated
        membership = e.membership or self.membership_of_attr(e.attr)
        return any(self.level(world, caller, membership, mid) is not None and
                   (e.level is None or
                    self.rank(self.level(world, caller, membership, mid)) >= self.rank(e.level))
                   for mid in world.records.get(membership, {}))

    def listable_fields(self, world, caller, resource) -> frozenset | None:
        """The fields filter, sort and q may use (None: all): those read on every record
        the caller may list."""
        groups: dict[tuple, frozenset | None] = {}
        for e in self.entries.get(resource, ()):
            if not self._may_list_through(e, world, caller):
                continue
            key = ("all",) if e.target == "all" and e.where is None else \
                (e.principal, e.target, e.attr, e.level, e.where)
            have = groups.get(key, frozenset())
            groups[key] = None if have is None or e.read_fields is None \
                else have | e.read_fields
        base = groups.pop(("all",), frozenset())
        if not groups:
            return base
        out = None
        for fields in groups.values():
            fields = None if fields is None or base is None else fields | base
            if fields is not None:
                out = fields if out is None else out & fields
        return out
