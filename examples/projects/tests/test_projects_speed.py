# ruff: noqa: F811  (the fixtures imported from projects_fixtures are test arguments)
"""Issue #14 item 6: one find combining a field rule, a condition two hops up and a
three-level cascade runs the same small number of SQL statements whatever the page size
and however many records there are.

The find: ``GET /task`` by an invitee of an org (rbac.yaml's last task entry: level
invitee held through org > project > job, ``where: {job.project.state: open}``,
``read_fields: [name, job_id]``). The statements are counted by the tests' server
(tests/serve_counting.py, ``X-Test-Statements``)."""

from __future__ import annotations

import json

from projects_fixtures import data_dir, service, users  # noqa: F401  (fixtures)

PAGES = (1, 25, 100)


def made(resp) -> dict:
    assert resp.status_code == 201, resp.text
    return resp.json()


class Tree:
    """mallory's view: an invitee of alice's org, whose open and closed projects hold
    jobs of tasks."""

    def __init__(self, service, users) -> None:
        self.url, self.alice, self.mallory = service.url, users["alice"], users["mallory"]
        self.org = self.post("/org", {"name": "speed"})
        self.post("/orgmember", {"org_id": self.org["id"], "uid": service.uids["mallory"],
                                 "authorization": "invitee"})
        self.open = self.project("open")
        self.closed = self.project("closed")
        self.jobs = {state: [self.post("/job", {"name": f"{state}{i}", "project_id": p["id"]})
                             for i in range(2)]
                     for state, p in (("open", self.open), ("closed", self.closed))}
        self.tasks = {"open": [], "closed": []}

    def post(self, path: str, body: dict) -> dict:
        return made(self.alice.post(self.url + path, json=body, timeout=10))

    def project(self, state: str) -> dict:
        return self.post("/project", {"name": state, "org_id": self.org["id"],
                                      "state": state})

    def add_tasks(self, n: int) -> None:
        """n more tasks in the open project, and a few in the closed one."""
        for state, many in (("open", n), ("closed", 3)):
            for i in range(many):
                job = self.jobs[state][i % 2]
                self.tasks[state].append(self.post("/task", {"name": f"t{i}",
                                                             "job_id": job["id"]})["id"])

    def find(self, **params):
        resp = self.mallory.get(self.url + "/task", params=params, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp


def test_one_find_with_a_field_rule_a_two_hop_condition_and_a_cascade(service, users):
    tree = Tree(service, users)
    counts = {}
    for rows in (30, 130):
        tree.add_tasks(rows - len(tree.tasks["open"]))
        tree.find(limit=1)  # the roles are read (and cached) once
        for limit in PAGES:
            resp = tree.find(limit=limit)
            items = resp.json()["items"]
            assert len(items) == min(limit, rows), (rows, limit)
            # the condition: only tasks of the open project; the field rule: two fields
            assert {x["id"] for x in items} <= set(tree.tasks["open"])
            assert all(set(x) == {"id", "rbac", "name", "job_id"} for x in items), items[0]
            counts[rows, limit] = int(resp.headers["X-Test-Statements"])
    print("statements per find (rows, limit):", counts)
    assert len(set(counts.values())) == 1, counts
    assert max(counts.values()) <= 3, counts
    # the whole of it, paged with the cursor, is the open project's tasks
    seen, cursor = [], None
    for _ in range(5):
        page = tree.find(limit=100, **({"cursor_next": cursor} if cursor else {})).json()
        assert page["count"] == len(tree.tasks["open"]), page["count"]
        seen += [x["id"] for x in page["items"]]
        cursor = page.get("cursor_next")
        if not cursor:
            break
    assert sorted(seen) == sorted(tree.tasks["open"])
    # a field outside the rule can be neither filtered nor sorted on
    for params in ({"filter": json.dumps({"file_id": None})}, {"sort": "uid"}):
        assert tree.mallory.get(service.url + "/task", params=params,
                                timeout=10).status_code == 400, params
    # closing the project hides its tasks on the next request
    closed_task = tree.tasks["open"][0]
    assert tree.mallory.get(f"{service.url}/task/{closed_task}", timeout=10).status_code \
        == 200
    assert tree.alice.patch(f"{service.url}/project/{tree.open['id']}",
                            json={"state": "closed"}, timeout=10).status_code == 200
    assert tree.mallory.get(f"{service.url}/task/{closed_task}", timeout=10).status_code \
        == 404
    assert tree.find(limit=100).json()["items"] == []
