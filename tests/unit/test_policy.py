"""rbac.yaml compilation and the decision function, without a database or network."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from apicrud.access.decide import AccessControl
from apicrud.access.policy import PolicyError, compile_policy, load_policy
from apicrud.auth.principal import ANONYMOUS, Principal
from models import List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BASE = {
    "privacy_levels": ["public", "invitee", "member", "manager", "secret"],
    "private_resources": [{"resource": "list", "attr": "list_id"}],
}


def policy(**policies):
    return compile_policy({**BASE, "policies": policies}, "test.yaml")


def test_project_rbac_yaml_compiles_with_anchors():
    p = load_policy(os.path.join(ROOT, "rbac.yaml"))
    assert {"person", "list", "message", "category", "contact", "account"} <= set(p.rules)
    admin_rule = p.for_resource("list")[0]
    assert admin_rule.principal == "admin" and admin_rule.actions >= set("crud")


@pytest.mark.parametrize("entry,reason", [
    ({"principal": "admin", "resource": "list:*", "actions": "crudx"}, "actions"),
    ({"principal": "root", "resource": "list:*", "actions": "r"}, "unknown principal"),
    ({"principal": "admin", "resource": "message:*", "actions": "r"}, "does not belong"),
    ({"principal": "admin", "resource": "list", "actions": "r"}, "must be"),
    ({"principal": "*", "resource": "list:{{uid}}", "actions": "r"}, "owns nothing"),
    ({"principal": "admin", "resource": "list:{{colour}}", "actions": "r"},
     "not a membership attribute"),
    ({"principal": "list-{{list_id}}-owner", "resource": "list:{{list_id}}", "actions": "r"},
     "level"),
    ({"principal": "admin", "resource": "list:*", "actions": "r", "extra": 1}, "unknown keys"),
])
def test_compile_malformed_entry_names_file_entry_and_reason(entry, reason):
    with pytest.raises(PolicyError) as exc:
        policy(list=[entry])
    text = "\n".join(exc.value.problems)
    assert "test.yaml: policies.list[0]" in text and reason in text


def test_compile_reports_every_problem_at_once():
    with pytest.raises(PolicyError) as exc:
        policy(list=[{"principal": "x", "resource": "list:*", "actions": "r"},
                     {"principal": "admin", "resource": "list:*", "actions": "q"}])
    assert len(exc.value.problems) == 2


def test_compile_read_implies_list_only_when_l_never_named():
    p = policy(list=[{"principal": "admin", "resource": "list:*", "actions": "r"}],
               message=[{"principal": "admin", "resource": "message:*", "actions": "r"},
                        {"principal": "user/{{uid}}", "resource": "message:{{uid}}",
                         "actions": "rl"}])
    assert "l" in p.for_resource("list")[0].actions
    assert "l" not in p.for_resource("message")[0].actions


def test_load_policy_bad_yaml(tmp_path):
    f = tmp_path / "rbac.yaml"
    f.write_text("policies: [unclosed")
    with pytest.raises(PolicyError) as exc:
        load_policy(str(f))
    assert str(f) in exc.value.problems[0]


ALICE = Principal(uid="x-alice", username="alice")
BOB = Principal(uid="x-bob", username="bob")
ROOT_ADMIN = Principal(uid="x-root", username="root", is_admin=True)
PENDING = Principal(uid="x-new", username="new", status="pending")
MEMBER = Principal(uid="x-m", username="m", memberships={"x-L": "member"})


def acl():
    p = policy(list=[
        {"principal": "admin", "resource": "list:*", "actions": "crud"},
        {"principal": "user/{{uid}}", "resource": "list:{{uid}}", "actions": "crud"},
        {"principal": "list-{{list_id}}-member", "resource": "list:{{list_id}}", "actions": "r"},
        {"principal": "pending", "resource": "list:*", "actions": "r"},
    ])
    return AccessControl(p, owners={"list": "uid"}, privacy={"list": "privacy"})


@pytest.mark.parametrize("who,record,expected", [
    (ALICE, {"id": "x-1", "uid": "x-alice", "privacy": "secret"}, "cdlru"),
    (BOB, {"id": "x-1", "uid": "x-alice", "privacy": "secret"}, ""),
    (BOB, {"id": "x-1", "uid": "x-alice", "privacy": "public"}, "lr"),
    (ANONYMOUS, {"id": "x-1", "uid": "x-alice", "privacy": "public"}, ""),
    (ROOT_ADMIN, {"id": "x-1", "uid": "x-alice", "privacy": "secret"}, "cdlru"),
    (PENDING, {"id": "x-1", "uid": "x-alice", "privacy": "secret"}, "lr"),
    # the membership record itself is readable by its members whatever its privacy
    (MEMBER, {"id": "x-L", "uid": "x-alice", "privacy": "member"}, "lr"),
    (MEMBER, {"id": "x-L", "uid": "x-alice", "privacy": "manager"}, "lr"),
    (MEMBER, {"id": "x-L", "uid": "x-alice", "privacy": "secret"}, "lr"),
    (MEMBER, {"id": "x-other", "uid": "x-alice", "privacy": "member"}, ""),
])
def test_actions_per_principal_and_record(who, record, expected):
    assert acl().actions(who, "list", record) == expected


def test_decide_names_the_deciding_rule():
    d = acl().decide(ALICE, "u", "list", {"uid": "x-alice"})
    assert d.allowed and "policies.list[1]" in d.reason
    d = acl().decide(BOB, "u", "list", {"uid": "x-alice"})
    assert not d.allowed and "no policy" in d.reason


def _sql(clause) -> str:
    stmt = select(List.id).where(clause)
    return str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


def test_where_owner_admin_and_anonymous():
    a = acl()
    assert "list.uid = 'x-alice'" in _sql(a.where(ALICE, "list", List))
    assert "privacy = 'public'" in _sql(a.where(ALICE, "list", List))
    assert "WHERE true" in _sql(a.where(ROOT_ADMIN, "list", List)).replace("1 = 1", "true")
    assert "false" in _sql(a.where(ANONYMOUS, "list", List)).lower() or \
        "0 = 1" in _sql(a.where(ANONYMOUS, "list", List))


def test_where_member_reads_the_membership_record_whatever_its_privacy():
    sql = _sql(acl().where(MEMBER, "list", List))
    assert "list.id IN ('x-L')" in sql
    assert "'invitee'" not in sql and "'manager'" not in sql


def test_where_agrees_with_actions_on_sample_rows():
    """The SQL filter and the per-record decision are one evaluator: same answers."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from apicrud.db.base import Base

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    rows = [{"id": f"x-{owner}-{priv}", "uid": f"x-{owner}", "name": f"{owner}-{priv}",
             "privacy": priv, "status": "active", "version": 1}
            for owner in ("alice", "bob") for priv in BASE["privacy_levels"]]
    rows.append({"id": "x-L", "uid": "x-bob", "name": "L", "privacy": "member",
                 "status": "active", "version": 1})
    with Session(engine) as s:
        s.execute(Base.metadata.tables["person"].insert(),
                  [{"id": f"x-{n}", "name": n, "privacy": "member", "status": "active",
                    "version": 1} for n in ("alice", "bob")])
        s.execute(Base.metadata.tables["list"].insert(), rows)
        s.commit()
        a = acl()
        for who in (ALICE, BOB, ROOT_ADMIN, PENDING, MEMBER, ANONYMOUS):
            via_sql = set(s.execute(select(List.id).where(a.where(who, "list", List)))
                          .scalars())
            via_python = {r["id"] for r in rows
                          if "l" in a.actions(who, "list", SimpleNamespace(**r))}
            assert via_sql == via_python, who.username


# -- cascades and same-scope rules (issue 14, item 3) --------------------------------

def _cascade(private, **extra):
    return compile_policy({"privacy_levels": BASE["privacy_levels"],
                           "private_resources": private, **extra,
                           "policies": {"org": [{"principal": "admin", "resource": "org:*",
                                                 "actions": "r"}]}}, "test.yaml")


def test_cascade_chain_goes_up_nearest_first():
    p = _cascade([{"resource": "org", "attr": "org_id"},
                  {"resource": "project", "attr": "project_id", "parent": "org"},
                  {"resource": "job", "attr": "job_id", "parent": "project"}])
    assert p.cascade_chain("job") == ("project", "org") and p.has_cascades
    assert p.cascade_chain("org") == () and not _cascade(
        [{"resource": "org", "attr": "org_id"}]).has_cascades


@pytest.mark.parametrize("private, extra, reason", [
    ([{"resource": "project", "attr": "project_id", "parent": "org"}], {},
     "parent 'org' is not listed"),
    ([{"resource": "a", "attr": "a_id", "parent": "b"},
      {"resource": "b", "attr": "b_id", "parent": "a"}], {}, "go round in a circle"),
    ([{"resource": "a", "attr": "a_id", "parnet": "b"}], {}, "unknown keys ['parnet']"),
    ([{"resource": "a", "attr": "a_id"}], {"same_scope": {"task": ["file_id"]}},
     "same_scope.task: must map"),
    ([{"resource": "a", "attr": "a_id"}], {"same_scope": "task"}, "same_scope must map"),
])
def test_cascade_and_scope_faults_are_named(private, extra, reason):
    with pytest.raises(PolicyError) as err:
        _cascade(private, **extra)
    assert reason in str(err.value), str(err.value)
