"""Compile rbac.yaml into immutable rules, once at start-up.

File shape::

    privacy_levels: [public, invitee, member, manager, secret]
    private_resources:
      - {resource: list, attr: list_id, members: listmember}
    policies:
      message:
        - {principal: admin, resource: "message:*", actions: crud}
        - {principal: "user/{{uid}}", resource: "message:{{uid}}", actions: crud}

Principals: ``"*"`` (anyone), ``admin``, ``user/{{uid}}`` (any signed-in user; the
resource part says which records), ``pending`` and membership roles
``<membership>-{{<attr>}}-<level>``. Resources: ``<name>:*`` (every record),
``<name>:{{uid}}`` (records the caller owns), ``<name>:{{<attr>}}`` (records whose
``attr`` names a membership where the caller holds the role).

Field rules: an entry may limit the fields it grants with ``read_fields: [a, b]`` (what
its ``r``/``l`` show; ``id`` and ``rbac`` always) and ``write_fields: [a, b]`` (what its
``c``/``u`` may set); ``fields: [a, b]`` says both at once. Without them an entry grants
every field. Entries granting one caller the same action on one record add up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from apicrud.access.conditions import parse_where
from apicrud.errors import ApicrudError
from apicrud.i18n import N_

ACTIONS = "crudlghij"
#: the actions as words, for messages: a 403 says "invite to", not "i"
VERBS = {"c": N_("create"), "r": N_("read"), "u": N_("update"), "d": N_("delete"),
         "l": N_("list"), "g": N_("act as a member of"), "h": N_("manage"),
         "i": N_("invite to"), "j": N_("join")}
DEFAULT_PRIVACY = ("public", "invitee", "member", "manager", "secret")
_MEMBER_RE = re.compile(r"^([a-z][a-z0-9_]*)-\{\{([a-z][a-z0-9_]*)\}\}-([a-z]+)$")
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
FIELD_KEYS = ("fields", "read_fields", "write_fields")
_TARGET_RE = re.compile(r"^([a-z][a-z0-9_]*):(\*|\{\{([a-z][a-z0-9_]*)\}\})$")


class PolicyError(ApicrudError):
    """rbac.yaml is malformed; ``problems`` names file, entry and reason for each fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid RBAC policy:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Rule:
    """One policy entry: who (principal) may do what (actions) to which records (target)."""

    resource: str
    principal: str  # any, admin, user, pending, member
    target: str  # all, owner, attr
    actions: frozenset[str]
    attr: str | None = None  # membership attribute for target 'attr' / member principals
    membership: str | None = None  # membership resource of a member principal
    level: str | None = None  # level named by a member principal
    source: str = ""  # "rbac.yaml: policies.message[2]" for explain
    # field rules: the fields this entry lets its read actions (r, l) show and its write
    # actions (c, u) set; None: every field
    read_fields: frozenset[str] | None = None
    write_fields: frozenset[str] | None = None
    # condition (``where:``): ((path, value), ...), a list value as a tuple; None: none
    where: tuple[tuple[tuple[str, ...], Any], ...] | None = None


@dataclass(frozen=True)
class Membership:
    """A private resource (e.g. list) whose members (e.g. listmember rows) hold levels."""

    resource: str
    attr: str
    members: str | None
    level_attr: str = "authorization"
    # cascade: the private resource above this one, named by this resource's column
    # ``<parent's attr>`` (a project's org_id names its org); a role held there holds here
    parent: str | None = None


@dataclass(frozen=True)
class Policy:
    """All rules, indexed by resource."""

    rules: Mapping[str, tuple[Rule, ...]]
    privacy_levels: tuple[str, ...]
    memberships: Mapping[str, Membership]
    path: str = "rbac.yaml"
    # same-scope rules: resource -> {payload id field: scope resource}; the record that
    # field names must lead to the same record of the scope resource as the record itself
    same_scope: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def cascade_chain(self, resource: str) -> tuple[str, ...]:
        """The private resources above ``resource``, nearest first (project: (org,))."""
        out: list[str] = []
        ms = self.memberships.get(resource)
        while ms is not None and ms.parent and ms.parent not in out:
            out.append(ms.parent)
            ms = self.memberships.get(ms.parent)
        return tuple(out)

    @property
    def has_cascades(self) -> bool:
        return any(ms.parent for ms in self.memberships.values())

    def for_resource(self, resource: str) -> tuple[Rule, ...]:
        return self.rules.get(resource, ())

    def privacy_rank(self, level: str) -> int:
        try:
            return self.privacy_levels.index(level)
        except ValueError:
            return len(self.privacy_levels)  # unknown levels are treated as most closed


def _parse_principal(text: str, levels: tuple[str, ...]) -> dict[str, Any] | str:
    if text == "*":
        return {"principal": "any"}
    if text == "admin":
        return {"principal": "admin"}
    if text == "pending":
        return {"principal": "pending"}
    if text == "user/{{uid}}":
        return {"principal": "user"}
    m = _MEMBER_RE.match(text)
    if m:
        if m.group(3) not in levels or m.group(3) in (levels[0], levels[-1]):
            return f"membership level {m.group(3)!r} is not one of {list(levels[1:-1])}"
        return {"principal": "member", "membership": m.group(1), "attr": m.group(2),
                "level": m.group(3)}
    return (f"unknown principal {text!r} (use '*', admin, pending, 'user/{{{{uid}}}}' "
            "or '<membership>-{{<attr>}}-<level>')")


def _parse_fields(entry: dict[str, Any], actions: str
                  ) -> tuple[frozenset[str] | None, frozenset[str] | None] | str:
    """(read_fields, write_fields) of an entry, each a frozenset or None (every field);
    a string says what is wrong."""
    if "fields" in entry and ({"read_fields", "write_fields"} & set(entry)):
        return "give either fields or read_fields/write_fields"
    out: list[frozenset[str] | None] = []
    for key, kinds in (("read_fields", "rl"), ("write_fields", "cu")):
        name = key if key in entry else "fields"
        value = entry.get(name)
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and _FIELD_RE.match(v)
                                                  for v in value):
            return f"{name} must be a list of field names"
        if name == key and not set(kinds) & set(actions):
            return f"{key} given, but the entry grants none of {kinds!r}"
        out.append(frozenset(value))
    return out[0], out[1]


def field_names(policy: Policy) -> dict[str, set[str]]:
    """resource -> every field its entries' field rules name (start-up checks these
    against the resource's representation)."""
    out: dict[str, set[str]] = {}
    for resource, rules in policy.rules.items():
        for rule in rules:
            out.setdefault(resource, set()).update(rule.read_fields or (),
                                                    rule.write_fields or ())
    return out


def compile_policy(data: Any, path: str = "rbac.yaml") -> Policy:
    """Validate and compile parsed rbac.yaml; raise :class:`PolicyError` listing every fault."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise PolicyError([f"{path}: top level must be a mapping"])
    levels = tuple(data.get("privacy_levels") or DEFAULT_PRIVACY)
    if len(set(levels)) != len(levels) or len(levels) < 3:
        problems.append(f"{path}: privacy_levels must list at least 3 distinct names")
    memberships: dict[str, Membership] = {}
    for i, entry in enumerate(data.get("private_resources") or []):
        if not isinstance(entry, dict) or not entry.get("resource") or not entry.get("attr"):
            problems.append(f"{path}: private_resources[{i}]: needs resource and attr")
            continue
        unknown = set(entry) - {"resource", "attr", "members", "level_attr", "parent"}
        if unknown:
            problems.append(f"{path}: private_resources[{i}]: unknown keys {sorted(unknown)}")
        memberships[entry["resource"]] = Membership(entry["resource"], entry["attr"],
                                                    entry.get("members"),
                                                    entry.get("level_attr", "authorization"),
                                                    entry.get("parent"))
    for i, ms in enumerate(memberships.values()):
        if ms.parent is None:
            continue
        seen: set[str] = {ms.resource}
        up: str | None = ms.parent
        while up is not None:
            if up not in memberships:
                problems.append(f"{path}: private_resources[{i}]: parent {up!r} is not "
                                "listed in private_resources")
                break
            if up in seen:
                problems.append(f"{path}: private_resources[{i}]: the parents of "
                                f"{ms.resource!r} go round in a circle")
                break
            seen.add(up)
            up = memberships[up].parent
    same_scope: dict[str, dict[str, str]] = {}
    raw_scope = data.get("same_scope") or {}
    if not isinstance(raw_scope, dict):
        problems.append(f"{path}: same_scope must map resources to {{field: scope}}")
        raw_scope = {}
    for resource, fields in raw_scope.items():
        if not isinstance(fields, dict) or not all(
                isinstance(k, str) and _FIELD_RE.match(k) and isinstance(v, str)
                for k, v in fields.items()):
            problems.append(f"{path}: same_scope.{resource}: must map payload id fields to "
                            "a scope resource")
            continue
        same_scope[str(resource)] = dict(fields)
    rules: dict[str, list[Rule]] = {}
    policies = data.get("policies")
    if not isinstance(policies, dict) or not policies:
        problems.append(f"{path}: 'policies' must map resource names to lists of entries")
        policies = {}
    for resource, entries in policies.items():
        if not isinstance(entries, list):
            problems.append(f"{path}: policies.{resource}: must be a list of entries")
            continue
        out = rules.setdefault(resource, [])
        for i, entry in enumerate(entries):
            where = f"{path}: policies.{resource}[{i}]"
            # what explain answers show: the policy entry, never the server's file path
            label = f"{os.path.basename(path)}: policies.{resource}[{i}]"
            if not isinstance(entry, dict):
                problems.append(f"{where}: must be a mapping")
                continue
            unknown = set(entry) - {"principal", "resource", "actions", "where",
                                    *FIELD_KEYS}
            if unknown:
                problems.append(f"{where}: unknown keys {sorted(unknown)}")
            principal = _parse_principal(str(entry.get("principal", "")), levels)
            if isinstance(principal, str):
                problems.append(f"{where}: {principal}")
                continue
            target_text = str(entry.get("resource", ""))
            m = _TARGET_RE.match(target_text)
            if not m:
                problems.append(f"{where}: resource {target_text!r} must be "
                                f"'{resource}:*', '{resource}:{{{{uid}}}}' or "
                                f"'{resource}:{{{{<attr>}}}}'")
                continue
            if m.group(1) != resource:
                problems.append(f"{where}: resource {target_text!r} does not belong to "
                                f"{resource!r}")
                continue
            actions = str(entry.get("actions", ""))
            bad = sorted(set(actions) - set(ACTIONS))
            if not actions or bad:
                problems.append(f"{where}: actions {actions!r} must be letters of {ACTIONS}")
                continue
            limits = _parse_fields(entry, actions)
            if isinstance(limits, str):
                problems.append(f"{where}: {limits}")
                continue
            condition = None
            if "where" in entry:
                raw = parse_where(entry["where"])
                if isinstance(raw, str):
                    problems.append(f"{where}: {raw}")
                    continue
                condition = tuple((k, tuple(v) if isinstance(v, list) else v)
                                  for k, v in raw.items())
            attr = m.group(3)
            if attr is None:
                target = "all"
            elif attr == "uid":
                target = "owner"
            else:
                target = "attr"
            if principal["principal"] == "member":
                if principal["membership"] not in memberships:
                    problems.append(f"{where}: {principal['membership']!r} is not listed in "
                                    "private_resources")
                    continue
                if target == "attr" and attr != principal["attr"]:
                    problems.append(f"{where}: principal attribute {principal['attr']!r} and "
                                    f"resource attribute {attr!r} differ")
                    continue
            elif target == "attr" and attr not in {m.attr for m in memberships.values()}:
                problems.append(f"{where}: {{{{{attr}}}}} is not a membership attribute")
                continue
            if principal["principal"] == "any" and target == "owner":
                problems.append(f"{where}: '*' owns nothing; use user/{{{{uid}}}}")
                continue
            out.append(Rule(resource=resource, target=target, actions=frozenset(actions),
                            source=f"{label}: {entry.get('principal')} "
                                   f"{target_text} {actions}",
                            attr=attr if target == "attr" else principal.get("attr"),
                            read_fields=limits[0], write_fields=limits[1], where=condition,
                            **{k: v for k, v in principal.items() if k != "attr"}))
    if problems:
        raise PolicyError(problems)
    # Where a resource's policies never name 'l', reading implies listing.
    final: dict[str, tuple[Rule, ...]] = {}
    for resource, rs in rules.items():
        if not any("l" in r.actions for r in rs):
            rs = [Rule(**{**r.__dict__, "actions": r.actions | {"l"}}) if "r" in r.actions
                  else r for r in rs]
        final[resource] = tuple(rs)
    return Policy(MappingProxyType(final), levels, MappingProxyType(memberships), path,
                  MappingProxyType({k: MappingProxyType(v) for k, v in same_scope.items()}))


def load_policy(path: str) -> Policy:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}: invalid YAML: {exc}"]) from None
    return compile_policy(data, path)
