# ruff: noqa: F811  (the fixtures imported from projects_fixtures are test arguments)
"""The RBAC matrix of the projects example: every role x every action x cascade depth
(org 0, project 1, job and file 2, task 3), expected outcomes from the independent
reference evaluator (tests/rbac_reference_cascade.py of the framework's checkout), not
from the code under test."""

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
        owner = users["alice"]
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
        for members, kind, user, level in rows:
            row = made(owner.post(f"{self.url}/{members}", json={
                f"{kind}_id": self.tree[kind]["id"], "uid": self.uids[user],
                "authorization": level}, timeout=10))
            self.world.add(members, row)

    def body(self, res: str, extra: dict) -> dict:
        ids = {"org_id": "org", "project_id": "project", "job_id": "job", "file_id": "file"}
        out = dict(extra)
        for attr in PARENTS[res]:
            out[attr] = self.tree[ids[attr]]["id"]
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


@pytest.mark.parametrize("resource", list(DEPTH))
@pytest.mark.parametrize("role", list(ROLES))
def test_matrix(matrix, resource, role):
    user = ROLES[role]
    http, url = matrix.users[user], matrix.url
    caller = matrix.caller(user)
    rec = matrix.tree[resource]
    expected = matrix.ref.actions(matrix.world, caller, resource, rec)
    where = f"{role} on {resource} (depth {DEPTH[resource]})"
    # r: get, and the rbac letters it shows
    resp = http.get(f"{url}/{resource}/{rec['id']}", timeout=10)
    if "r" in expected:
        assert resp.status_code == 200, (where, resp.text)
        held = set(resp.json()["rbac"])
        assert held & set("crudl") == expected & set("crudl"), (where, held, expected)
    else:
        assert resp.status_code == 404, (where, resp.text)
    # l: the record is listed exactly when the reference says so
    page = http.get(f"{url}/{resource}", params={"filter": json.dumps({"id": rec["id"]})},
                    timeout=10)
    assert page.status_code == 200
    assert (rec["id"] in {x["id"] for x in page.json()["items"]}) == ("l" in expected), where
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
