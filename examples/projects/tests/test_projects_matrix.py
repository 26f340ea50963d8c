# ruff: noqa: F811  (the fixtures imported from projects_fixtures are test arguments)
"""The RBAC matrix of the projects example: every role x every action x cascade depth
(org 0, project 1, job and file 2, task 3), x both outcomes of the task's condition
(its project open or closed), and the member rows themselves (orgmember at depth 0,
projectmember at 1: someone else's, one's own, adding and removing them), expected
outcomes and fields from the independent reference evaluator
(tests/rbac_reference_cascade.py of the framework's checkout), not from the code under
test."""

from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(PROJECT)), "tests"))
from projects_fixtures import data_dir, service, users  # noqa: E402, F401
from rbac_reference_cascade import CascadeReference, CascadeWorld  # noqa: E402

# role -> (user, how they relate to the matrix's tree)
ROLES = {
    "admin": "root", "owner": "alice", "org-invitee": "m_oinv", "org-member": "m_omem",
    "org-manager": "m_omgr", "project-member": "m_pmem", "project-manager": "m_pmgr",
    "org-member+project-manager": "m_both", "stranger": "m_none",
}
DEPTH = {"org": 0, "project": 1, "job": 2, "file": 2, "task": 3}
# what a record of each resource is created inside (payload ids -> resource)
PARENTS = {"org": {}, "project": {"org_id": "org"}, "job": {"project_id": "project"},
           "file": {"project_id": "project"}, "task": {"job_id": "job", "file_id": "file"}}


def made(resp) -> dict:
    assert resp.status_code == 201, resp.text
    return resp.json()


class Matrix:
    def __init__(self, service, users) -> None:
        self.url, self.users, self.uids = service.url, users, service.uids
        self.ref = CascadeReference(os.path.join(PROJECT, "rbac.yaml"))
        self.world = CascadeWorld()
        self.tree = {}
        for res, body in (("org", {"name": "matrix"}), ("project", {"name": "p"}),
                          ("job", {"name": "j"}), ("file", {"name": "f"}),
                          ("task", {"name": "t"})):
            self.tree[res] = self.create("alice", res, body)
        rows = (("orgmember", "org", "m_oinv", "invitee"),
                ("orgmember", "org", "m_omem", "member"),
                ("orgmember", "org", "m_omgr", "manager"),
                ("projectmember", "project", "m_pmem", "member"),
                ("projectmember", "project", "m_pmgr", "manager"),
                ("orgmember", "org", "m_both", "member"),
                ("projectmember", "project", "m_both", "manager"))
        self.rows: dict[tuple[str, str], dict] = {}  # (members, user) -> their row
        for members, _kind, user, level in (*rows, ("orgmember", "org", "m_target", "member"),
                                           ("projectmember", "project", "m_target",
                                            "member")):
            self.rows[members, user] = self.add_row("alice", members, user, level)
        # the same org's closed project: its task fails the invitees' condition
        self.closed = {"project": self.create("alice", "project", {
            "name": "pc", "org_id": self.tree["org"]["id"], "state": "closed"})}
        self.closed["job"] = self.create("alice", "job", {
            "name": "jc", "project_id": self.closed["project"]["id"]})
        self.closed["task"] = self.create("alice", "task", {
            "name": "tc", "job_id": self.closed["job"]["id"], "file_id": None})

    def add_row(self, user: str, members: str, who: str, level: str) -> dict:
        kind = members[:-len("member")]
        row = made(self.users[user].post(f"{self.url}/{members}", json={
            f"{kind}_id": self.tree[kind]["id"], "uid": self.uids[who],
            "authorization": level}, timeout=10))
        self.world.add(members, row)
        return row

    def body(self, res: str, extra: dict) -> dict:
        ids = {"org_id": "org", "project_id": "project", "job_id": "job", "file_id": "file"}
        out = dict(extra)
        for attr in PARENTS[res]:
            out.setdefault(attr, self.tree[ids[attr]]["id"])
        return out

    def create(self, user: str, res: str, extra: dict) -> dict:
        rec = made(self.users[user].post(f"{self.url}/{res}", json=self.body(res, extra),
                                         timeout=10))
        self.world.add(res, rec)
        return rec

    def caller(self, user: str) -> tuple[str, bool]:
        return self.uids[user], user == "root"


@pytest.fixture(scope="module")
def matrix(service, users):
    return Matrix(service, users)


def reads_as_expected(matrix, role: str, resource: str, rec: dict, where: str) -> set:
    """get, find and the rbac letters and fields of both, as the reference says; returns
    the expected actions."""
    user = ROLES[role]
    http, url, caller = matrix.users[user], matrix.url, matrix.caller(user)
    expected = matrix.ref.actions(matrix.world, caller, resource, rec)
    fields = matrix.ref.read_fields(matrix.world, caller, resource, rec)
    fields = set(rec) if fields is None else fields
    resp = http.get(f"{url}/{resource}/{rec['id']}", timeout=10)
    if "r" in expected:
        assert resp.status_code == 200, (where, resp.text)
        held = set(resp.json()["rbac"])
        assert held & set("crudl") == expected & set("crudl"), (where, held, expected)
        assert set(resp.json()) == fields, (where, resp.json(), fields)
    else:
        assert resp.status_code == 404, (where, resp.text)
    # l: the record is listed exactly when the reference says so, with the same fields
    page = http.get(f"{url}/{resource}", params={"filter": json.dumps({"id": rec["id"]})},
                    timeout=10)
    assert page.status_code == 200, (where, page.text)
    items = [x for x in page.json()["items"] if x["id"] == rec["id"]]
    assert bool(items) == ("l" in expected), where
    assert all(set(x) == fields for x in items), (where, items, fields)
    return expected


@pytest.mark.parametrize("resource", list(DEPTH))
@pytest.mark.parametrize("role", list(ROLES))
def test_matrix(matrix, resource, role):
    user = ROLES[role]
    http, url = matrix.users[user], matrix.url
    caller = matrix.caller(user)
    rec = matrix.tree[resource]
    expected = matrix.ref.actions(matrix.world, caller, resource, rec)
    where = f"{role} on {resource} (depth {DEPTH[resource]})"
    reads_as_expected(matrix, role, resource, rec, where)
    # u: a harmless change of the name
    resp = http.patch(f"{url}/{resource}/{rec['id']}", json={"name": rec["name"] + "."},
                      timeout=10)
    if "u" in expected:
        assert resp.status_code == 200, (where, resp.text)
        matrix.world.records[rec["id"]][1]["name"] = resp.json()["name"]
        rec["name"] = resp.json()["name"]
    else:
        assert resp.status_code == (403 if "r" in expected else 404), (where, resp.text)
    # c: a new record at this depth (inside the tree's records above it)
    proposed = matrix.body(resource, {"name": "new", "uid": caller[0]})
    may = matrix.ref.may_create(matrix.world, caller, resource, proposed, PARENTS[resource])
    resp = http.post(f"{url}/{resource}", json={k: v for k, v in proposed.items()
                                                 if k != "uid"}, timeout=10)
    if may:
        assert resp.status_code == 201, (where, resp.text)
        fresh = resp.json()
        matrix.world.add(resource, fresh)
    else:
        assert resp.status_code in (403, 404), (where, resp.text)
        # d on a fresh record of the same place (the tree's own stays for the others)
        fresh = matrix.create("alice", resource, {"name": "fresh"})
    d_expected = "d" in matrix.ref.actions(matrix.world, caller, resource, fresh)
    readable = "r" in matrix.ref.actions(matrix.world, caller, resource, fresh)
    resp = http.delete(f"{url}/{resource}/{fresh['id']}", timeout=10)
    if d_expected:
        assert resp.status_code == 200, (where, resp.text)
        matrix.world.records[fresh["id"]] = (resource, fresh, False)
    else:
        assert resp.status_code == (403 if readable else 404), (where, resp.text)


def test_same_scope_in_the_reference_too(matrix):
    """The reference refuses what the service refuses: a task naming a file of another
    project, readable by the caller."""
    other = made(matrix.users["alice"].post(f"{matrix.url}/project", json={
        "name": "other", "org_id": matrix.tree["org"]["id"]}, timeout=10))
    matrix.world.add("project", other)
    foreign = made(matrix.users["alice"].post(f"{matrix.url}/file", json={
        "name": "x", "project_id": other["id"]}, timeout=10))
    matrix.world.add("file", foreign)
    caller = matrix.caller("alice")
    proposed = {"name": "x", "job_id": matrix.tree["job"]["id"], "file_id": foreign["id"],
                "uid": caller[0]}
    assert not matrix.ref.may_create(matrix.world, caller, "task", proposed,
                                     PARENTS["task"])
    resp = matrix.users["alice"].post(f"{matrix.url}/task", json={
        k: v for k, v in proposed.items() if k != "uid"}, timeout=10)
    assert resp.status_code == 404 and "file_id" in resp.json()["errors"]
    proposed["file_id"] = matrix.tree["file"]["id"]
    assert matrix.ref.may_create(matrix.world, caller, "task", proposed, PARENTS["task"])


@pytest.mark.parametrize("role", list(ROLES))
def test_matrix_of_the_condition(matrix, role):
    """The task of the closed project, and its project: the invitees' entry does not
    hold there (job.project.state is not open); everyone else as on the open one."""
    for resource in ("project", "job", "task"):
        reads_as_expected(matrix, role, resource, matrix.closed[resource],
                          f"{role} on the closed project's {resource}")


@pytest.mark.parametrize("members", ["orgmember", "projectmember"])
@pytest.mark.parametrize("role", list(ROLES))
def test_matrix_of_member_rows(matrix, role, members):
    """The member rows' own rules at their depth (orgmember 0, projectmember 1): someone
    else's row and one's own (read, list, rbac, a change of level to the same level),
    adding a row for someone else, and removing someone else's and one's own."""
    user = ROLES[role]
    http, url, caller = matrix.users[user], matrix.url, matrix.caller(user)
    where = f"{role} on {members}"
    kind = members[:-len("member")]
    for whose in ("m_target", user):
        row = matrix.rows.get((members, whose))
        if row is None:
            continue
        expected = reads_as_expected(matrix, role, members, row, f"{where} of {whose}")
        level = row["authorization"]
        resp = http.patch(f"{url}/{members}/{row['id']}", json={"authorization": level},
                          timeout=10)
        if "u" in expected:
            assert resp.status_code == 200, (where, whose, resp.text)
        else:
            assert resp.status_code == (403 if "r" in expected else 404), \
                (where, whose, resp.text)
    # adding someone else (an invitee, and a manager)
    for level in ("invitee", "manager"):
        proposed = {f"{kind}_id": matrix.tree[kind]["id"], "uid": matrix.uids["m_target"],
                    "authorization": level}
        may = matrix.ref.may_create(matrix.world, caller, members, proposed, {})
        resp = http.post(f"{url}/{members}", json=proposed, timeout=10)
        if may:
            assert resp.status_code == 201, (where, level, resp.text)
            matrix.world.add(members, resp.json())
            gone = matrix.users["alice"].delete(f"{url}/{members}/{resp.json()['id']}",
                                                timeout=10)
            assert gone.status_code == 200, gone.text
            matrix.world.records[resp.json()["id"]] = (members, resp.json(), False)
        else:
            assert resp.status_code in (403, 404), (where, level, resp.text)
    # removing a fresh row of someone else's, and a fresh invitation of one's own
    for whose in ("m_target", user):
        fresh = matrix.add_row("alice", members, whose, "invitee")
        d_expected = "d" in matrix.ref.actions(matrix.world, caller, members, fresh)
        readable = "r" in matrix.ref.actions(matrix.world, caller, members, fresh)
        resp = http.delete(f"{url}/{members}/{fresh['id']}", timeout=10)
        if d_expected:
            assert resp.status_code == 200, (where, whose, resp.text)
        else:
            assert resp.status_code == (403 if readable else 404), (where, whose, resp.text)
            assert matrix.users["alice"].delete(f"{url}/{members}/{fresh['id']}",
                                                timeout=10).status_code == 200
        matrix.world.records[fresh["id"]] = (members, fresh, False)
