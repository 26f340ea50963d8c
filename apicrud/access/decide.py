"""The one evaluator of policies: decisions on a record, and the same rules as SQL.

Every rule is evaluated by a pair of functions kept side by side, :func:`_rule_allows`
(a loaded or proposed record) and :func:`_rule_sql` (a WHERE clause for lists), so that
``get``, ``find`` and each record's ``rbac`` field always agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, false, or_, true

from apicrud.access import conditions
from apicrud.access.policy import VERBS, Policy, PolicyError, Rule
from apicrud.access.scope import Scopes
from apicrud.auth.principal import Principal
from apicrud.memo import Memo

log = logging.getLogger("apicrud.access")
READ_ACTIONS = frozenset("rl")
ALWAYS_READABLE_FIELDS = frozenset({"id", "rbac"})
#: Entries kept by each memo of the evaluator (WHERE clauses, rbac letters) before it
#: starts again; a key is one caller's access_key and a resource, so this covers the
#: callers of the last moments many times over.
MEMO_SIZE = 4096
_ALL = ("all",)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _principal_matches(rule: Rule, principal: Principal) -> bool:
    kind = rule.principal
    if kind == "any":
        return True
    if not principal.authenticated:
        return False
    if kind == "admin":
        return principal.is_admin and principal.status == "active"
    if kind == "user":
        return principal.status == "active"
    if kind == "pending":
        return principal.status == "pending"
    return kind == "member" and principal.status == "active" and bool(principal.memberships)


def _value(record: Any, name: str | None) -> Any:
    if name is None:
        return None
    if isinstance(record, dict):
        return record.get(name)
    return getattr(record, name, None)


def _every_field(record: Any) -> None:
    """The answer of :meth:`AccessControl.read_fields_for` where no entry limits fields."""
    return None


def _add(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """Fields of two grants together (None: every field)."""
    return None if a is None or b is None else a | b


class AccessControl:
    """Answers "may this principal do this to that?" from a compiled :class:`Policy`.

    :param owners: resource -> owner attribute (``uid``; ``id`` for person; None)
    """

    def __init__(self, policy: Policy, owners: dict[str, str | None] | None = None,
                 privacy: dict[str, str | None] | None = None,
                 columns: dict[str, set[str]] | None = None,
                 resources: dict[str, Any] | None = None) -> None:
        self.policy = policy
        # conditions (where:) bound to attributes and models; resources: the declared
        # resources (references and models), without which no entry may have one
        self._conditions, problems = conditions.resolve_policy(policy, resources or {})
        if problems:
            raise PolicyError(problems)
        self._models = {n: r.model for n, r in (resources or {}).items()
                        if getattr(r, "model", None) is not None}
        # same-scope rules (rbac.yaml same_scope), checked on every write's payload ids
        self.scopes = Scopes(policy, resources or {})
        if self.scopes.problems:
            raise PolicyError([f"{policy.path}: {p}" for p in self.scopes.problems])
        self._conditional = {rule.resource for rule in self._conditions}
        self.owners = dict(owners or {})
        self.privacy = dict(privacy or {})
        # resource -> attribute naming its membership: "id" for a membership resource
        # itself (a list), "list_id" for records kept in a list
        self._membership_attr: dict[str, str] = {}
        membership_attrs = {ms.attr for ms in policy.memberships.values()}
        for resource, cols in (columns or {}).items():
            if resource in policy.memberships:
                self._membership_attr[resource] = "id"
            else:
                found = sorted(membership_attrs & set(cols))
                if found:
                    self._membership_attr[resource] = found[0]
        # what an rbac answer reads of a record, per resource: the owner attribute, the
        # attributes naming a membership (one per rule that targets one) and privacy
        self._record_inputs: dict[str, tuple[str | None, tuple[str, ...], str | None]] = {}
        for resource in set(self.owners) | set(self.privacy) | set(policy.rules):
            attrs = sorted({self._membership_id_attr(rule, resource)
                            for rule in policy.for_resource(resource)
                            if rule.target == "attr"} |
                           {c for rule in policy.for_resource(resource)
                            if rule in self._conditions
                            for c in conditions.columns_read(self._conditions[rule])})
            self._record_inputs[resource] = (self.owners.get(resource), tuple(attrs),
                                             self.privacy.get(resource))
        self._where_memo: Memo[tuple[Any, ...], ColumnElement[bool]] = Memo(MEMO_SIZE)
        self._actions_memo: Memo[tuple[Any, ...], str] = Memo(MEMO_SIZE)
        self._fields_memo: Memo[tuple[Any, ...], frozenset[str] | None] = Memo(MEMO_SIZE)
        # resources where some entry limits the fields it grants
        self._field_rules = {resource for resource, rules in policy.rules.items()
                             if any(r.read_fields is not None or r.write_fields is not None
                                    for r in rules)}

    def record_columns(self, resource: str) -> tuple[str, ...]:
        """The attributes of a record that decisions on it read: a record loaded with
        only these columns gets the same answers as the whole record."""
        owner, attrs, privacy = self._record_inputs.get(resource, (None, (), None))
        return tuple(dict.fromkeys(c for c in ("id", owner, *attrs, privacy) if c))

    def _membership_id_attr(self, rule: Rule, resource: str) -> str:
        ms = self.policy.memberships.get(resource)
        # asked only of entries that name one (target attr, member principals)
        return "id" if ms is not None and rule.attr == ms.attr else cast(str, rule.attr)

    def has_conditions(self, resource: str) -> bool:
        """Does an entry of ``resource`` carry a condition (``where:``)?"""
        return resource in self._conditional

    def prefetch_conditions(self, principal: Principal, resource: str, records: list[Any]) -> None:
        """Answer the conditions' foreign-key hops for a page of records at once (one
        query per hop), so that deciding on each record queries nothing more."""
        for rule in self.policy.for_resource(resource):
            where = self._conditions.get(rule)
            if where is not None and _principal_matches(rule, principal):
                conditions.prefetch(where, records, self._models, principal.uid)

    def parent_attrs(self, resource: str) -> tuple[str, ...]:
        """Attributes of a private resource naming its parent (a project's org_id):
        changing one moves the record, which is creating it there."""
        ms = self.policy.memberships.get(resource)
        if ms is None or not ms.parent:
            return ()
        return (self.policy.memberships[ms.parent].attr,)

    def membership_attr(self, resource: str) -> str | None:
        return self._membership_attr.get(resource)

    # -- levels -------------------------------------------------------------------
    def _rank(self, level: str | None) -> int:
        return self.policy.privacy_rank(level) if level else -1

    def _membership_id(self, rule: Rule, resource: str, record: Any) -> Any:
        # a list is its own membership ("id"); a message names its list (list_id)
        return _value(record, self._membership_id_attr(rule, resource))

    def _held_level(self, principal: Principal, rule: Rule, resource: str,
                    record: Any) -> str | None:
        mid = self._membership_id(rule, resource, record)
        return principal.memberships.get(mid) if mid is not None else None

    def _privacy_ok(self, rule: Rule, resource: str, record: Any, held: str,
                    action: str) -> bool:
        column = self.privacy.get(resource)
        if action not in READ_ACTIONS or column is None:
            return True
        if self._membership_id_attr(rule, resource) == "id":
            # the membership record itself (a list): every holder of its role, at any
            # level, reads it; its privacy only decides who else may (public)
            return True
        level = _value(record, column) or self.policy.privacy_levels[-1]
        return (level != self.policy.privacy_levels[-1]
                and self._rank(level) <= self._rank(held))

    # -- decisions on one record --------------------------------------------------
    def _rule_allows(self, rule: Rule, principal: Principal, resource: str, record: Any,
                     action: str) -> bool:
        """Does ``rule`` allow ``action`` on ``record``: its principal, target and, for
        an entry with a condition, the condition on the record's values."""
        if not self._rule_allows_unconditioned(rule, principal, resource, record, action):
            return False
        where = self._conditions.get(rule)
        return where is None or (record is not None and
                                 conditions.holds(where, record, self._models, principal.uid))

    def _rule_allows_unconditioned(self, rule: Rule, principal: Principal, resource: str,
                                   record: Any, action: str) -> bool:
        if action not in rule.actions or not _principal_matches(rule, principal):
            return False
        if rule.target == "all":
            return True
        if rule.target == "owner":
            owner = self.owners.get(resource)
            return owner is not None and record is not None and \
                _value(record, owner) == principal.uid
        else:
            if record is None:
                return False
            held = self._held_level(principal, rule, resource, record)
            if held is None or (rule.level and self._rank(held) < self._rank(rule.level)):
                return False
            return self._privacy_ok(rule, resource, record, held, action)

    def _public_allows(self, principal: Principal, resource: str, record: Any, action: str) -> bool:
        column = self.privacy.get(resource)
        return (action in READ_ACTIONS and column is not None and record is not None
                and principal.authenticated
                and _value(record, column) == self.policy.privacy_levels[0]
                and any(action in r.actions for r in self.policy.for_resource(resource)))

    def decide(self, principal: Principal, action: str, resource: str,
               record: Any = None) -> Decision:
        """Decide one action, naming the rule that allowed it or why nothing did."""
        near = None
        for rule in self.policy.for_resource(resource):
            if self._rule_allows(rule, principal, resource, record, action):
                where = self._conditions.get(rule)
                return Decision(True, rule.source + (f" where {where.text()}" if where
                                                     else "")
                                + self._cascade_text(principal, rule, resource, record))
            where = self._conditions.get(rule)
            if near is None and where is not None and self._rule_allows_unconditioned(
                    rule, principal, resource, record, action):
                near = f"condition {where.text()} does not hold; rule {rule.source}"
            if near is None and rule.target == "attr" and record is not None and \
                    action in rule.actions and _principal_matches(rule, principal):
                held = self._held_level(principal, rule, resource, record)
                if held is not None and not (rule.level and
                                             self._rank(held) < self._rank(rule.level)):
                    level = _value(record, self.privacy.get(resource) or "privacy")
                    near = (f"privacy: the record's privacy {level!r} is above your level "
                            f"{held!r} (or secret); rule {rule.source}")
        if self._public_allows(principal, resource, record, action):
            return Decision(True, f"privacy: the {resource} record is public")
        reason = near or (f"no policy of {resource!r} grants {action!r} "
                          f"({VERBS.get(action, action)}) to "
                          f"{principal.username or 'anonymous'}"
                          + ("" if record is not None else " on the collection"))
        log.debug("denied %s %s to %s: %s", action, resource, principal.username or "anonymous",
                  reason)
        return Decision(False, reason)

    def _cascade_text(self, principal: Principal, rule: Rule, resource: str, record: Any) -> str:
        """For a level held through a cascade, the steps it came down: only records the
        caller holds a role on, so it tells nothing of any they may not read."""
        if rule.target != "attr" or not principal.membership_via:
            return ""
        mid = self._membership_id(rule, resource, record)
        if mid not in principal.membership_via:
            return ""
        steps = [mid]
        while steps[-1] in principal.membership_via and len(steps) <= len(self.policy.memberships):
            steps.append(principal.membership_via[steps[-1]])
        top = steps[-1]
        chain = " > ".join(f"{principal.membership_kinds.get(m, 'membership')} {m}"
                           for m in reversed(steps))
        return (f" (cascade: {principal.memberships.get(top)} of "
                f"{principal.membership_kinds.get(top, 'membership')} {top}, held on {chain})")

    def allows(self, principal: Principal, action: str, resource: str, record: Any = None) -> bool:
        """:meth:`decide` without the reason. On a record whose answers are memoized
        (see :meth:`actions`), it is the record's ``rbac`` letters that answer, so a get
        and the letters it shows agree by construction; a refusal still goes through
        :meth:`decide`, which logs it."""
        if record is not None and resource not in self._conditional and \
                resource in self._record_inputs and \
                action in self.actions(principal, resource, record):
            return True
        return self.decide(principal, action, resource, record).allowed

    def actions(self, principal: Principal, resource: str, record: Any) -> str:
        """Sorted letters of every action ``principal`` holds on ``record`` (the ``rbac`` field).

        The answer depends on the caller and on three things of the record only: whether
        the caller owns it, the caller's level in the memberships it names, and its
        privacy; so it is memoized on those (a page of 25 records has a handful of
        distinct keys).
        """
        return self.actions_for(principal, resource)(record)

    def actions_for(self, principal: Principal, resource: str) -> Callable[[Any], str]:
        """:meth:`actions` of ``principal`` on records of ``resource``, as one function
        for a page of them: what depends only on the caller and the resource is looked up
        once."""
        return self._answers_for(principal, resource, self._actions_memo,
                                 lambda record: self._actions(principal, resource, record))

    def _answers_for(self, principal: Principal, resource: str, memo: Memo[Any, Any],
                     compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``compute(record)`` memoized in ``memo`` on what the answer reads: of the
        caller, its access key; of the record, whether the caller owns it, the caller's
        level in each membership it names, and its privacy. Answers are not memoized where
        those inputs are unknown or conditions read more of the record, nor for no record.
        The function keeps the answers it gave by the record's part of the key, so a page
        hashes the caller's (long) access key once per distinct answer."""
        inputs = self._record_inputs.get(resource)
        if inputs is None or resource in self._conditional:
            return compute
        owner, attrs, privacy = inputs
        base = (principal.access_key, resource)
        uid = principal.uid
        level = cast(Callable[[Any], str | None], principal.memberships.get)  # (any value)
        seen: dict[tuple[Any, ...], Any] = {}

        def answer(record: Any) -> Any:
            if record is None:
                return compute(record)
            part = (owner is not None and _value(record, owner) == uid,
                    tuple([level(_value(record, a)) for a in attrs]), _value(record, privacy))
            if part in seen:
                return seen[part]
            key = base + part
            found = memo[key] if key in memo else memo.put(key, compute(record))
            seen[part] = found
            return found
        return answer

    def _actions(self, principal: Principal, resource: str, record: Any) -> str:
        held: set[str] = set()
        for rule in self.policy.for_resource(resource):
            for a in rule.actions - held:
                if self._rule_allows(rule, principal, resource, record, a):
                    held.add(a)
        if self._public_allows(principal, resource, record, "r"):
            held |= {"r", "l"} & {a for r in self.policy.for_resource(resource)
                                  for a in r.actions}
        return "".join(sorted(held))

    def allows_every(self, principal: Principal, action: str, resource: str) -> bool:
        """Does a rule on ``{resource}:*`` grant ``action`` to ``principal``? Only such a
        principal may create or move a record for another owner (CONTRACT 3)."""
        return any(rule.target == "all" and action in rule.actions and
                   rule not in self._conditions and _principal_matches(rule, principal)
                   for rule in self.policy.for_resource(resource))

    def may_list(self, principal: Principal, resource: str) -> bool:
        """Could any rule let ``principal`` list some record of ``resource``?"""
        return any("l" in r.actions and _principal_matches(r, principal)
                   for r in self.policy.for_resource(resource)) or (
            principal.authenticated and self.privacy.get(resource) is not None)

    # -- field rules --------------------------------------------------------------
    def has_field_rules(self, resource: str) -> bool:
        """Does an entry of ``resource`` limit its fields? (Else every answer is None.)"""
        return resource in self._field_rules

    def _public_fields(self, resource: str) -> frozenset[str] | None:
        """What a public record shows every signed-in caller, who reads it through no
        entry of theirs: what the entries of the lowest membership level naming reading
        show (added up), as if the caller held that level; without such entries, what
        every entry naming reading shows."""
        readers = [r for r in self.policy.for_resource(resource) if READ_ACTIONS & r.actions]
        members = [r for r in readers if r.principal == "member" and r.level]
        if members:
            low = min(self._rank(r.level) for r in members)
            out: frozenset[str] | None = frozenset()
            for rule in members:
                if self._rank(rule.level) == low:
                    out = _add(out, rule.read_fields)
            return out
        out = None
        for rule in readers:
            if rule.read_fields is not None:
                out = rule.read_fields if out is None else out & rule.read_fields
        return out

    def _granted(self, principal: Principal, action: str, resource: str,
                 record: Any) -> tuple[frozenset[str] | None, list[Rule]]:
        """The fields the entries allowing ``action`` on ``record`` grant (their union;
        None: every field), and those entries."""
        read = action in READ_ACTIONS
        found: set[str] = set()
        every = False
        rules = []
        for rule in self.policy.for_resource(resource):
            if self._rule_allows(rule, principal, resource, record, action):
                rules.append(rule)
                limit = rule.read_fields if read else rule.write_fields
                if limit is None:
                    every = True
                else:
                    found |= limit
        if read and self._public_allows(principal, resource, record, action):
            limit = self._public_fields(resource)
            if limit is None:
                every = True
            else:
                found |= limit
        return (None if every else frozenset(found)), rules

    def read_fields(self, principal: Principal, resource: str,
                    record: Any) -> frozenset[str] | None:
        """The fields of ``record`` that ``principal`` may read (None: every field; ``id`` and
        ``rbac`` always), memoized as :meth:`actions` is."""
        if resource not in self._field_rules:
            return None
        return self.read_fields_for(principal, resource)(record)

    def read_fields_for(self, principal: Principal,
                        resource: str) -> Callable[[Any], frozenset[str] | None]:
        """:meth:`read_fields` of ``principal`` on records of ``resource``, as one
        function for a page of them."""
        if resource not in self._field_rules:
            return _every_field
        return self._answers_for(
            principal, resource, self._fields_memo,
            lambda record: self._granted(principal, "r", resource, record)[0])

    def write_fields(self, principal: Principal, action: str, resource: str,
                     record: Any) -> frozenset[str] | None:
        """The fields ``principal`` may set by ``action`` (c, u) on ``record`` (for c: the values
        the new record would have); None: every field."""
        if resource not in self._field_rules:
            return None
        return self._granted(principal, action, resource, record)[0]

    def _collection_fields(self, principal: Principal, resource: str, model: Any,
                           every_row: bool) -> frozenset[str] | None:
        """Fields readable on every (``every_row``) or on some record ``principal`` may list.

        The row sets are those of :meth:`_where`: equal keys select equal rows, so the
        fields of the entries behind one key add up, and a key of every row adds its
        fields to all the others; keys may select the same rows or not, so every row is
        only sure of what every key grants."""
        memo = ("list" if every_row else "any", principal.access_key, resource, model)
        if memo in self._fields_memo:
            return self._fields_memo[memo]
        per_key: dict[tuple[Any, ...], frozenset[str] | None] = {}
        for rule in self.policy.for_resource(resource):
            for key, _ in self._rule_sql(rule, principal, resource, model, "l") or ():
                per_key[key] = _add(per_key.get(key, frozenset()), rule.read_fields)
        if (self.privacy.get(resource) is not None and principal.authenticated and
                any("l" in r.actions for r in self.policy.for_resource(resource))):
            per_key[("public",)] = _add(per_key.get(("public",), frozenset()),
                                        self._public_fields(resource))
        base = per_key.pop(_ALL, frozenset())
        if not per_key:
            out = base
        elif every_row:
            out = None
            for fields in per_key.values():
                fields = _add(fields, base)
                if fields is not None:
                    out = fields if out is None else out & fields
        else:
            out = base
            for fields in per_key.values():
                out = _add(out, fields)
        return self._fields_memo.put(memo, out)

    def list_fields(self, principal: Principal, resource: str, model: Any) -> frozenset[str] | None:
        """The fields ``principal`` may read on every record they may list: the only ones
        ``filter``, ``sort``, ``q`` and ``group_by`` may use, so that no result tells
        anything of a value the caller could not read (None: every field)."""
        if resource not in self._field_rules:
            return None
        return self._collection_fields(principal, resource, model, True)

    def possible_fields(self, principal: Principal, resource: str,
                        model: Any) -> frozenset[str] | None:
        """The fields ``principal`` may read on some record (what ``fields=`` and ``embed=`` may
        name; each record then shows those it grants); None: every field."""
        if resource not in self._field_rules:
            return None
        return self._collection_fields(principal, resource, model, False)

    def field_decision(self, principal: Principal, action: str, resource: str, record: Any,
                       name: str) -> Decision:
        """May ``principal`` read (r, l) or write (c, u) field ``name`` of ``record``, and which
        entry decided."""
        decided = self.decide(principal, action, resource, record)
        if not decided.allowed:
            return decided
        read = action in READ_ACTIONS
        if read and name in ALWAYS_READABLE_FIELDS:
            return Decision(True, f"field {name!r} comes with every record you may read")
        kind = "read_fields" if read else "write_fields"
        _, rules = self._granted(principal, action, resource, record)
        for rule in rules:
            limit = rule.read_fields if read else rule.write_fields
            if limit is None or name in limit:
                return Decision(True, f"field {name!r}: {rule.source}"
                                      + ("" if limit is None else f" ({kind})"))
        if read and self._public_allows(principal, resource, record, action):
            public = self._public_fields(resource)
            if public is None or name in public:
                return Decision(True, f"field {name!r}: privacy: the {resource} record is "
                                      "public")
        by = "; ".join(r.source for r in rules) or f"the entries for a public {resource}"
        return Decision(False, f"field {name!r}: not among the {kind} of {by}")

    # -- the same rules as SQL ----------------------------------------------------
    def _rule_sql(self, rule: Rule, principal: Principal, resource: str, model: Any,
                  action: str) -> list[tuple[tuple[Any, ...], Any]] | None:
        """The rule as (key, clause) pairs (see :meth:`_rule_sql_unconditioned`), each
        clause limited by the rule's condition, when it has one."""
        found = self._rule_sql_unconditioned(rule, principal, resource, model, action)
        where = self._conditions.get(rule)
        if not found or where is None:
            return found
        cond = conditions.where_sql(where, model, self._models, principal.uid)
        return [(("cond", where, *key), and_(clause, cond)) for key, clause in found]

    def _rule_sql_unconditioned(self, rule: Rule, principal: Principal, resource: str, model: Any,
                                action: str) -> list[tuple[tuple[Any, ...], Any]] | None:
        """The rule as (key, clause) pairs whose OR selects the rows it allows; None
        when it allows nothing here, ``[(ALL, true())]`` when it allows every row. Equal
        keys mean equal clauses (a manager's lists appear in the rules for managers,
        members and invitees alike), so :meth:`_where` keeps each once."""
        if action not in rule.actions or not _principal_matches(rule, principal):
            return None
        if rule.target == "all":
            return [(_ALL, true())]
        if rule.target == "owner":
            owner = self.owners.get(resource)
            return [(("owner",), getattr(model, owner) == principal.uid)] if owner else None
        attr = self._membership_id_attr(rule, resource)
        column = getattr(model, attr)
        by_level: dict[str, list[str]] = {}
        for mid, level in principal.memberships.items():
            if not rule.level or self._rank(level) >= self._rank(rule.level):
                by_level.setdefault(level, []).append(mid)
        privacy_col = self.privacy.get(resource)
        # privacy limits reads of records inside a membership, not of the membership
        # record itself (see _privacy_ok)
        read = privacy_col is not None and action in READ_ACTIONS and attr != "id"
        out = []
        for level, ids in sorted(by_level.items()):
            clause = column.in_(sorted(ids))
            if read and privacy_col is not None:  # (read implies a privacy column)
                allowed = [lv for lv in self.policy.privacy_levels[:-1]
                           if self._rank(lv) <= self._rank(level)]
                clause = and_(clause, getattr(model, privacy_col).in_(allowed))
            out.append((("member", attr, level, read), clause))
        return out or None

    def where(self, principal: Principal, resource: str, model: Any,
              action: str = "l") -> ColumnElement[bool]:
        """A WHERE clause selecting exactly the rows ``principal`` may ``action``.

        Clauses are immutable SQL expressions: one built for a caller's access key is
        reused by their next requests (building one costs more than running a small
        query).
        """
        key = (principal.access_key, resource, model, action)
        found = self._where_memo.get(key)
        if found is None:
            found = self._where_memo.put(key, self._where(principal, resource, model, action))
        return found

    def _where(self, principal: Principal, resource: str, model: Any,
               action: str) -> ColumnElement[bool]:
        found: dict[tuple[Any, ...], Any] = {}
        for rule in self.policy.for_resource(resource):
            for key, clause in self._rule_sql(rule, principal, resource, model, action) or ():
                if key == _ALL:
                    return true()
                found.setdefault(key, clause)
        column = self.privacy.get(resource)
        if (column is not None and action in READ_ACTIONS and principal.authenticated and
                any(action in r.actions for r in self.policy.for_resource(resource))):
            found[("public",)] = getattr(model, column) == self.policy.privacy_levels[0]
        # the simple comparisons first: a row that is the caller's own or public is
        # decided before the membership lists are searched
        order = {"owner": 0, "public": 1, "member": 2, "cond": 3}
        clauses = [c for k, c in sorted(found.items(), key=lambda kc: order[kc[0][0]])]
        return or_(*clauses) if clauses else false()
