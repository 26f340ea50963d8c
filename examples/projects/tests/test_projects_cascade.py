# ruff: noqa: F811  (the fixtures imported from projects_fixtures are test arguments)
"""The cascade Org > Project > Job > Task over HTTP, from the attacker's side first:
a removed org member keeps nothing, a project moved to another org takes its jobs and
tasks along, a task may not point at a readable file of another project, and can-i
tells nothing of records the caller may not read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

from projects_fixtures import (  # noqa: F401  (fixtures)
    ROOT,
    data_dir,
    example_env,
    second,
    service,
    users,
)


def only(*ids: str) -> dict:
    return {"filter": json.dumps({"id": list(ids)})}


def made(resp) -> dict:
    assert resp.status_code == 201, resp.text
    return resp.json()


def tree(http, name: str = "acme") -> dict:
    """An org owned by the caller, with one project, job, file and task."""
    org = made(http.post("/org", json={"name": name}))
    project = made(http.post("/project", json={"name": f"{name}-p", "org_id": org["id"]}))
    job = made(http.post("/job", json={"name": f"{name}-j", "project_id": project["id"]}))
    file = made(http.post("/file", json={"name": f"{name}.png",
                                         "project_id": project["id"]}))
    task = made(http.post("/task", json={"name": f"{name}-t", "job_id": job["id"],
                                         "file_id": file["id"]}))
    return {"org": org, "project": project, "job": job, "file": file, "task": task}


class Client:
    def __init__(self, service, http) -> None:
        self.url, self.http = service.url, http

    def __getattr__(self, method):
        return lambda path, **kw: getattr(self.http, method)(self.url + path, timeout=10,
                                                             **kw)


def clients(service, users) -> dict:
    return {name: Client(service, http) for name, http in users.items()}


def reads(c, t: dict) -> dict:
    """Which of the tree's records the caller reads (by get)."""
    return {kind: c.get(f"/{kind}/{rec['id']}").status_code == 200
            for kind, rec in t.items()}


def add_member(c, kind: str, parent_id: str, uid: str, level: str) -> dict:
    return made(c.post(f"/{kind}member", json={f"{kind}_id": parent_id, "uid": uid,
                                               "authorization": level}))


def test_org_membership_reaches_every_level_and_its_removal_revokes_at_once(service,
                                                                            users):
    c = clients(service, users)
    t = tree(c["alice"], "rev")
    bob = service.uids["bob"]
    assert not any(reads(c["bob"], t).values())
    m = add_member(c["alice"], "org", t["org"]["id"], bob, "member")
    assert all(reads(c["bob"], t).values())
    # a member reads and updates tasks (job-member: ru), creates nothing below the org
    assert c["bob"].patch(f"/task/{t['task']['id']}", json={"name": "mine"}).status_code \
        == 200
    assert c["bob"].post("/job", json={"name": "x", "project_id": t["project"]["id"]}) \
        .status_code in (403, 404)
    listed = c["bob"].get("/task", params=only(t["task"]["id"])).json()["items"]
    assert t["task"]["id"] in {x["id"] for x in listed}
    assert c["alice"].delete(f"/orgmember/{m['id']}").status_code == 200
    # the very next request: nothing of the org, its project, job, file or task
    assert not any(reads(c["bob"], t).values())
    assert c["bob"].get("/task", params=only(t["task"]["id"])).json()["items"] == []
    assert c["bob"].patch(f"/task/{t['task']['id']}", json={"name": "again"}) \
        .status_code == 404


def test_an_org_manager_manages_every_project_job_and_task(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "mgr")
    add_member(c["alice"], "org", t["org"]["id"], service.uids["carol"], "manager")
    made(c["carol"].post("/job", json={"name": "new", "project_id": t["project"]["id"]}))
    assert c["carol"].delete(f"/task/{t['task']['id']}").status_code == 200
    # and manages the project's members (h through the cascade)
    add_member(c["carol"], "project", t["project"]["id"], service.uids["dave"], "member")
    assert reads(c["dave"], t)["project"] and not reads(c["dave"], t)["org"]


def test_a_project_member_reads_below_the_project_only(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "pm")
    add_member(c["alice"], "project", t["project"]["id"], service.uids["erin"], "member")
    got = reads(c["erin"], t)
    assert got == {"org": False, "project": True, "job": True, "file": True, "task": True}


def test_a_project_moved_to_another_org_leaves_the_old_orgs_members(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "mv")
    other = made(c["dave"].post("/org", json={"name": "elsewhere"}))
    add_member(c["alice"], "org", t["org"]["id"], service.uids["bob"], "manager")
    # alice may only move the project into an org where she may create projects
    resp = c["alice"].patch(f"/project/{t['project']['id']}", json={"org_id": other["id"]})
    assert resp.status_code == 404 and "org_id" in resp.json()["errors"], resp.text
    add_member(c["dave"], "org", other["id"], service.uids["alice"], "manager")
    assert c["alice"].patch(f"/project/{t['project']['id']}",
                            json={"org_id": other["id"]}).status_code == 200
    below = {k: v for k, v in reads(c["bob"], t).items() if k != "org"}
    assert below == {"project": False, "job": False, "file": False, "task": False}
    assert all(reads(c["dave"], {k: v for k, v in t.items() if k != "org"}).values())


def test_a_job_of_a_trashed_project_is_gone_for_the_org(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "tr")
    add_member(c["alice"], "org", t["org"]["id"], service.uids["bob"], "manager")
    assert reads(c["bob"], t)["job"]
    assert c["alice"].delete(f"/project/{t['project']['id']}").status_code == 200
    assert reads(c["bob"], t) == {"org": True, "project": False, "job": False,
                                  "file": False, "task": False}


def test_a_task_may_not_point_at_a_readable_file_of_another_project(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "sc")
    elsewhere = made(c["alice"].post("/project", json={"name": "sc-2",
                                                       "org_id": t["org"]["id"]}))
    foreign = made(c["alice"].post("/file", json={"name": "f.png",
                                                  "project_id": elsewhere["id"]}))
    assert c["alice"].get(f"/file/{foreign['id']}").status_code == 200  # readable
    resp = c["alice"].post("/task", json={"name": "x", "job_id": t["job"]["id"],
                                          "file_id": foreign["id"]})
    assert resp.status_code == 404 and list(resp.json()["errors"]) == ["file_id"], resp.text
    missing = c["alice"].post("/task", json={"name": "x", "job_id": t["job"]["id"],
                                             "file_id": "x-" + uuid.uuid4().hex[:30]})
    assert missing.status_code == 404
    assert missing.json()["errors"] == resp.json()["errors"]
    resp = c["alice"].patch(f"/task/{t['task']['id']}", json={"file_id": foreign["id"]})
    assert resp.status_code == 404 and "file_id" in resp.json()["errors"], resp.text
    # nor by moving the task to a job of the other project, keeping its file
    job2 = made(c["alice"].post("/job", json={"name": "j2", "project_id": elsewhere["id"]}))
    resp = c["alice"].patch(f"/task/{t['task']['id']}", json={"job_id": job2["id"]})
    assert resp.status_code == 404 and "file_id" in resp.json()["errors"], resp.text
    assert c["alice"].get(f"/task/{t['task']['id']}").json()["file_id"] == t["file"]["id"]


def test_can_i_names_the_cascade_and_tells_strangers_nothing(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "ci")
    add_member(c["alice"], "org", t["org"]["id"], service.uids["bob"], "manager")
    task = t["task"]["id"]
    ans = c["bob"].get("/auth/can-i", params={"action": "u", "resource": "task",
                                              "id": task}).json()
    assert ans["allowed"], ans
    assert "task[1]" in ans["reason"] and "cascade: manager of org" in ans["reason"]
    assert t["org"]["id"] in ans["reason"] and t["job"]["id"] in ans["reason"]
    fake = "x-" + uuid.uuid4().hex[:30]
    for who in ("mallory", "erin"):
        seen = c[who].get("/auth/can-i", params={"action": "u", "resource": "task",
                                                 "id": task}).json()
        none = c[who].get("/auth/can-i", params={"action": "u", "resource": "task",
                                                 "id": fake}).json()
        assert not seen["allowed"]
        assert seen["reason"].replace(task, "ID") == none["reason"].replace(fake, "ID")
        assert t["org"]["id"] not in seen["reason"] and "cascade" not in seen["reason"]


def test_a_removal_on_one_instance_holds_on_the_other(service, second, users):
    c = clients(service, users)
    t = tree(c["alice"], "two")
    m = add_member(c["alice"], "org", t["org"]["id"], service.uids["bob"], "member")
    other = Client(second, users["bob"].__class__())
    other.http.headers.update(users["bob"].headers)
    assert other.get(f"/task/{t['task']['id']}").status_code == 200  # cached there
    assert c["alice"].delete(f"/orgmember/{m['id']}").status_code == 200
    assert other.get(f"/task/{t['task']['id']}").status_code == 404


def test_a_find_through_three_levels_runs_a_bounded_number_of_statements(service,
                                                                         users):
    c = clients(service, users)
    counts = []
    for n in (1, 4):
        t = tree(c["alice"], f"cnt{n}")
        for i in range(n * 3):
            made(c["alice"].post("/task", json={"name": f"t{i}", "job_id": t["job"]["id"],
                                                "file_id": t["file"]["id"]}))
        add_member(c["alice"], "org", t["org"]["id"], service.uids["carol"], "member")
        c["carol"].get("/task")  # the roles are read (and cached) once
        resp = c["carol"].get("/task", params={"limit": 50})
        assert resp.status_code == 200 and len(resp.json()["items"]) >= n * 3 + 1
        counts.append(int(resp.headers["X-Test-Statements"]))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 4, counts


def test_the_cli_can_i_names_the_cascade_too(service, users, data_dir):
    c = clients(service, users)
    t = tree(c["alice"], "cli")
    add_member(c["alice"], "org", t["org"]["id"], service.uids["bob"], "member")
    env = example_env(data_dir)
    out = subprocess.run([sys.executable, "-m", "apicrud.cli", "rbac", "can-i", "u",
                          f"task:{t['task']['id']}", "--as", "bob"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "task[2]" in out.stdout and "cascade: member of org" in out.stdout, out.stdout
    assert t["project"]["id"] in out.stdout


@pytest.mark.parametrize("key, rule, reason", [
    ("same_scope", {"task": {"name": "project"}},
     "same_scope.task.name: not an id of another resource"),
    ("same_scope", {"task": {"file_id": "person"}},
     "no chain of ids leads from task to person"),
    ("same_scope", {"nothing": {"file_id": "project"}}, "same_scope.nothing: no such resource"),
    ("private_resources", [{"resource": "org", "attr": "org_id", "members": "orgmember"},
                           {"resource": "project", "attr": "project_id", "parent": "org"},
                           {"resource": "job", "attr": "job_id", "parent": "org"}],
     "job has no column org_id naming its parent org"),
])
def test_a_rule_without_its_ids_stops_the_check(tmp_path, key, rule, reason):
    copy = shutil.copytree(ROOT, tmp_path / "p", ignore=shutil.ignore_patterns(
        "data", "__pycache__", ".pytest_cache"))
    rbac = yaml.safe_load((copy / "rbac.yaml").read_text())
    rbac[key] = rule
    (copy / "rbac.yaml").write_text(yaml.safe_dump(rbac))
    out = subprocess.run([sys.executable, "-m", "apicrud.cli", "check"], cwd=copy,
                         env=example_env(tmp_path / "data"), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and reason in out.stdout + out.stderr, out.stdout + out.stderr



def test_a_job_moved_to_another_project_takes_its_tasks_along(service, users):
    c = clients(service, users)
    t = tree(c["alice"], "jm")
    add_member(c["alice"], "project", t["project"]["id"], service.uids["erin"], "manager")
    theirs = made(c["dave"].post("/org", json={"name": "jm-other"}))
    target = made(c["dave"].post("/project", json={"name": "jm-t", "org_id": theirs["id"]}))
    # erin manages the job, but may not put it into a project she does not manage
    resp = c["erin"].patch(f"/job/{t['job']['id']}", json={"project_id": target["id"]})
    assert resp.status_code == 404 and "project_id" in resp.json()["errors"], resp.text
    add_member(c["dave"], "project", target["id"], service.uids["alice"], "manager")
    assert c["alice"].patch(f"/job/{t['job']['id']}",
                            json={"project_id": target["id"]}).status_code == 200
    # the task's file stays in the old project: the task keeps it (the rule is checked
    # on writes naming file_id or job_id), and erin loses the job and the task at once
    got = reads(c["erin"], t)
    assert got["project"] and got["file"] and not got["job"] and not got["task"], got
    assert reads(c["dave"], t)["task"]
