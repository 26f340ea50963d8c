"""Conditions of policy entries (issue 14 item 2), over HTTP.

An instance of the default application runs with ``tests/fixtures/conditions/rbac.yaml``:
everyone reads messages titled news or notice of lists filed in a category named "open"
(message -> list -> category: two hops) and posts news there; a category's owner reads
every message of the lists filed in it (``{{uid}}``); list members edit messages titled
"draft" only, and can't retitle them out of it. Expectations come from that file.
"""

from __future__ import annotations

import json
import os

import pytest
import requests
from sqlalchemy import event

from instances import login, new_account, start_instance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLICY = os.path.join(ROOT, "tests", "fixtures", "conditions", "rbac.yaml")


class Caller:
    def __init__(self, inst, username: str, password: str, uid: str) -> None:
        self.uid = uid
        self.http = login(inst.url, username, password)
        self.url = inst.url

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.url + path, timeout=10, **kw)

    def patch(self, path: str, **kw) -> requests.Response:
        return self.http.patch(self.url + path, timeout=10, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.http.delete(self.url + path, timeout=10, **kw)


def created(resp) -> dict:
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def world(server):
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          rbac_file=POLICY)
    try:
        people = {name: Caller(inst, *new_account(inst.services))
                  for name in ("alice", "bob", "carol", "dave")}
        alice, bob, carol = people["alice"], people["bob"], people["carol"]
        open_cat = created(carol.post("/category", json={"name": "open"}))
        closed_cat = created(carol.post("/category", json={"name": "closed"}))
        lists = {}
        for key, cat in (("open", open_cat), ("closed", closed_cat), ("none", None)):
            lists[key] = created(alice.post("/list", json={
                "name": f"cond-{key}", "privacy": "public",
                **({"category_id": cat["id"]} if cat else {})}))
            created(alice.post("/listmember", json={"list_id": lists[key]["id"],
                                                    "uid": bob.uid,
                                                    "authorization": "member"}))
        msgs = {}
        for lst in ("open", "closed", "none"):
            for subject in ("news", "notice", "chat", "draft"):
                msgs[(lst, subject)] = created(alice.post("/message", json={
                    "list_id": lists[lst]["id"], "subject": subject,
                    "content": f"{lst} {subject}"}))
        yield {"inst": inst, "lists": lists, "msgs": msgs, "open_cat": open_cat,
               "closed_cat": closed_cat, **people}
    finally:
        inst.stop()


def mine(world, **params) -> dict:
    """Find parameters limited to this module's lists (the database is shared with other
    tests, whose public messages every signed-in user reads)."""
    return {"filter": json.dumps({"list_id": [lst["id"] for lst in world["lists"].values()]}),
            **params}


def ids(resp) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {row["id"] for row in resp.json()["items"]}


def of(world, *keys) -> set[str]:
    return {world["msgs"][k]["id"] for k in keys}


def all_pages(caller, limit: int, **params) -> list[str]:
    out, cursor = [], None
    for _ in range(50):
        page = caller.get("/message", params={"limit": limit, **params,
                                              **({"cursor_next": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        out += [r["id"] for r in page.json()["items"]]
        cursor = page.json().get("cursor_next")
        if not cursor:
            return out
    raise AssertionError("cursor does not end")


# -- reads: find, count, cursors, get ------------------------------------------------

def test_find_and_count_apply_a_two_hop_condition(world):
    resp = world["dave"].get("/message", params=mine(world))
    assert ids(resp) == of(world, ("open", "news"), ("open", "notice"))
    assert resp.json()["count"] == 2


def test_cursor_pages_cover_exactly_the_condition(world):
    assert sorted(all_pages(world["dave"], 1, **mine(world, sort="subject"))) == \
        sorted(of(world, ("open", "news"), ("open", "notice")))


def test_get_follows_the_condition(world):
    dave = world["dave"]
    assert dave.get(f"/message/{world['msgs'][('open', 'news')]['id']}").status_code == 200
    for key in (("open", "chat"), ("closed", "news"), ("none", "notice")):
        assert dave.get(f"/message/{world['msgs'][key]['id']}").status_code == 404, key


def test_uid_condition_reads_the_lists_of_ones_category(world):
    carol = world["carol"]
    expected = of(world, *((lst, s) for lst in ("open", "closed")
                           for s in ("news", "notice", "chat", "draft")))
    assert ids(carol.get("/message", params=mine(world, limit=100))) == expected
    assert carol.get(f"/message/{world['msgs'][('closed', 'chat')]['id']}").status_code == 200
    assert carol.get(f"/message/{world['msgs'][('none', 'chat')]['id']}").status_code == 404


def test_a_change_two_hops_up_takes_effect_on_the_next_request(world):
    dave, carol = world["dave"], world["carol"]
    cat = world["open_cat"]["id"]
    news = world["msgs"][("open", "news")]["id"]
    assert carol.patch(f"/category/{cat}", json={"name": "shut"}).status_code == 200
    try:
        assert ids(dave.get("/message", params=mine(world))) == set()
        assert dave.get(f"/message/{news}").status_code == 404
    finally:
        assert carol.patch(f"/category/{cat}", json={"name": "open"}).status_code == 200
    assert dave.get(f"/message/{news}").status_code == 200


def test_a_trashed_parent_satisfies_no_condition(world):
    dave, carol = world["dave"], world["carol"]
    cat = world["open_cat"]["id"]
    assert carol.delete(f"/category/{cat}").status_code == 200
    try:
        assert ids(dave.get("/message", params=mine(world))) == set()
    finally:
        resp = carol.http.put(f"{carol.url}/trashcan/category-{cat}",
                              json={"status": "active"}, timeout=10)
        assert resp.status_code == 200, resp.text
    assert ids(dave.get("/message", params=mine(world))) == of(world, ("open", "news"),
                                                                ("open", "notice"))


def test_rbac_letters_follow_conditions(world):
    rows = {r["id"]: r["rbac"] for r in world["bob"].get(
        "/message", params=mine(world, limit=100)).json()["items"]}
    assert "u" in rows[world["msgs"][("none", "draft")]["id"]]
    assert "u" not in rows[world["msgs"][("none", "chat")]["id"]]


FRESH = {"Cache-Control": "no-cache"}  # a count counted anew, not a kept one


def test_a_page_runs_a_bounded_number_of_statements(world):
    """The conditions' hops are answered in SQL and per page, never per row."""
    engine = world["inst"].services.db.engine
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for limit in (1, 12):
            seen.clear()
            # (counted each time: a kept count would make the second one a statement less)
            resp = world["carol"].get("/message", params=mine(world, limit=limit),
                                      headers=FRESH)
            assert resp.status_code == 200 and len(resp.json()["items"]) == min(limit, 8)
            counts.append(len(seen))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert counts[0] == counts[1], counts
    assert counts[1] <= 8, counts


# -- writes: the values a create or update would leave -------------------------------

def test_create_only_where_the_condition_holds(world):
    dave, lists = world["dave"], world["lists"]
    posted = created(dave.post("/message", json={"list_id": lists["open"]["id"],
                                                 "subject": "news"}))
    assert dave.get(f"/message/{posted['id']}").status_code == 200
    for lst, subject in (("closed", "news"), ("open", "chat"), ("none", "news")):
        resp = dave.post("/message", json={"list_id": lists[lst]["id"], "subject": subject})
        assert resp.status_code == 404, (lst, subject, resp.text)
        assert "list_id" in resp.json()["errors"]


def test_update_may_not_move_a_record_out_of_its_condition(world):
    bob = world["bob"]
    draft = created(world["alice"].post("/message", json={
        "list_id": world["lists"]["none"]["id"], "subject": "draft"}))["id"]
    assert bob.patch(f"/message/{draft}", json={"content": "edited"}).status_code == 200
    resp = bob.patch(f"/message/{draft}", json={"subject": "final"})
    assert resp.status_code == 403, resp.text
    assert world["alice"].get(f"/message/{draft}").json()["subject"] == "draft"
    chat = world["msgs"][("none", "chat")]["id"]
    assert bob.patch(f"/message/{chat}", json={"subject": "draft"}).status_code == 403


def test_bulk_update_checks_each_record(world):
    bob = world["bob"]
    lid = world["lists"]["none"]["id"]
    resp = bob.patch("/message", params={"filter": json.dumps(
        {"list_id": lid, "subject": ["draft", "chat"]})}, json={"content": "bulk"})
    assert resp.status_code == 403, resp.text
    assert world["alice"].get(
        f"/message/{world['msgs'][('none', 'draft')]['id']}").json()["content"] != "bulk"


# -- explain and the policy ----------------------------------------------------------

def test_can_i_names_the_condition(world):
    dave = world["dave"]
    news = world["msgs"][("open", "news")]["id"]
    yes = dave.get("/auth/can-i", params={"action": "r", "resource": "message",
                                          "id": news}).json()
    assert yes["allowed"] and "policies.message[5]" in yes["reason"]
    assert "list.category.name=open" in yes["reason"]
    no = world["bob"].get("/auth/can-i", params={
        "action": "u", "resource": "message",
        "id": world["msgs"][("none", "chat")]["id"]}).json()
    assert not no["allowed"] and "subject=draft" in no["reason"]
    hidden = dave.get("/auth/can-i", params={
        "action": "r", "resource": "message",
        "id": world["msgs"][("closed", "news")]["id"]}).json()
    assert not hidden["allowed"] and "category" not in hidden["reason"]


@pytest.mark.parametrize("where, says", [
    ("{subjekt: news}", "'subjekt' is not a column of message"),
    ("{list.kategory.name: open}", "'kategory' is no reference of list"),
    ("{subject: {a: b}}", "needs a constant"),
    ("{subject: '{{name}}'}", "only '{{uid}}' may be substituted"),
])
def test_bad_conditions_refuse_to_start(server, tmp_path, where, says):
    from apicrud.app import create_app
    from apicrud.errors import StartupError

    with open(POLICY, encoding="utf-8") as fh:
        text = fh.read().replace("where: {subject: draft}", f"where: {where}")
    bad = tmp_path / "rbac.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(StartupError) as caught:
        create_app(settings=server.settings.replace(rbac_file=str(bad),
                                                    redis_url=server.services.redis.url),
                   migrate=False)
    assert any("policies.message[4]" in p and says in p for p in caught.value.problems), \
        caught.value.problems
