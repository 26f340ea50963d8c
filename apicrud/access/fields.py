"""Field rules: which fields of a record a caller may read and write.

An entry of rbac.yaml may limit the fields it grants (``read_fields``, ``write_fields``,
or ``fields`` for both; see :mod:`apicrud.access.policy`). The evaluator
(:class:`apicrud.access.decide.AccessControl`) answers per record; this module holds the
start-up check of the names and the small helpers the controllers share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apicrud.access.policy import Policy
from apicrud.errors import BadRequest, Forbidden
from apicrud.i18n import N_

#: fields every reader of a record sees, whatever its field rules say: the record's id,
#: and the caller's own actions on it
ALWAYS_READABLE = frozenset({"id", "rbac"})


def check_field_rules(policy: Policy, resources: dict[str, Any], rbac_file: str) -> list[str]:
    """Start-up problems of the field rules: every name must be a property of the
    resource's representation, and a write field one a client may set."""
    problems = []
    for name, rules in policy.rules.items():
        res = resources.get(name)
        if res is None:
            continue
        readable = (set(res.exposed) | set(res.computed) | set(res.related) |
                    set(res.embeds))
        writable = set(res.exposed) - set(res.read_only)
        for rule in rules:
            label = rule.source.split(": ")[1] if ": " in rule.source else name
            bad = sorted((rule.read_fields or set()) - readable)
            if bad:
                problems.append(f"{rbac_file}: {label}: read_fields names unknown "
                                f"fields {bad}")
            bad = sorted((rule.write_fields or set()) - writable)
            if bad:
                problems.append(f"{rbac_file}: {label}: write_fields names fields a client "
                                f"cannot set {bad}")
    return problems


def limit(body: dict[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """``body`` without the properties outside ``fields`` (None: all of them)."""
    if fields is None:
        return body
    return {k: v for k, v in body.items() if k in fields or k in ALWAYS_READABLE}


def restrict_columns(columns: dict[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """The filterable/sortable columns among ``fields`` (None: all): a column the caller
    may not read is unknown to filter, sort and group_by."""
    if fields is None:
        return columns
    return {k: c for k, c in columns.items() if k in fields or k == "id"}


def check_writes(names: Iterable[str], allowed: frozenset[str] | None, resource: str) -> None:
    """403 naming the first field of ``names`` that ``allowed`` (None: all) leaves out."""
    if allowed is None:
        return
    refused = sorted(n for n in names if n not in allowed)
    if refused:
        raise Forbidden(N_("%(field)s: you may not write this field of %(resource)s",
                           field=refused[0], resource=resource),
                        errors={n: N_("may not be written by you") for n in refused})


def unknown_field(param: str, name: str) -> BadRequest:
    return BadRequest(N_("%(param)s: unknown field %(name)s", param=param, name=repr(name[:64])),
                      errors={param: N_("unknown field %(name)s", name=repr(name[:64]))})
