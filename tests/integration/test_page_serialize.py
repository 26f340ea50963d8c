"""A page of a find shows each record exactly as its get does, for every caller.

find serializes a page in one loop (``BasicCRUD.serialize_page``) where a get serializes
one record (``serialize``): the ``rbac`` letters, the readable fields and the related
values are asked of the evaluator once per page there, once per record here. A page that
mixes records the caller holds differently (its own, a list's at each level, public ones,
other lists') is where an answer of one record could leak onto another: every item must
equal the get of its record, page by page through the cursor, for each kind of caller.
The get is the oracle; nothing here restates the policy.
"""

from __future__ import annotations

import json

import pytest

from helpers import make_user

PRIVACY = ("public", "invitee", "member", "manager", "secret")


def pages(api, path: str, **params) -> list[dict]:
    """Every item of a find, following ``cursor_next`` (limit 2: many small pages)."""
    items: list[dict] = []
    params = {"limit": 2, **params}
    for _ in range(100):
        resp = api.get(path, params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["items"]
        if not body.get("cursor_next"):
            return items
        params = {"cursor_next": body["cursor_next"]}
    raise AssertionError("the cursor never ended")


def assert_items_are_gets(api, path: str, items: list[dict]) -> None:
    for item in items:
        resp = api.get(f"{path}/{item['id']}")
        assert resp.status_code == 200, (item["id"], resp.text)
        assert item == resp.json(), item["id"]


@pytest.fixture(scope="module")
def mixed(server):
    """alice's list with bob as manager, carol as member, erin as invitee; dave holds
    nothing. Messages of every privacy by alice, one of bob's own, one in a list of
    dave's that nobody else is in; each caller's page mixes what it holds differently."""
    people = {name: make_user(server, prefix=name[:3]) for name in
              ("alice", "bob", "carol", "dave", "erin")}
    people["admin"] = make_user(server, admin=True, prefix="adm")
    alice, bob = people["alice"].api, people["bob"].api
    lst = alice.post("/list", json={"name": "mixed page", "privacy": "invitee"}).json()
    for who, level in (("bob", "manager"), ("carol", "member"), ("erin", "invitee")):
        resp = alice.post("/listmember", json={"list_id": lst["id"],
                                               "uid": people[who].uid, "authorization": level})
        assert resp.status_code == 201, resp.text
    for privacy in PRIVACY:
        resp = alice.post("/message", json={"list_id": lst["id"], "subject": privacy,
                                            "content": f"alice's {privacy}",
                                            "privacy": privacy})
        assert resp.status_code == 201, resp.text
    resp = bob.post("/message", json={"list_id": lst["id"], "subject": "bob's",
                                      "content": "bob's own", "privacy": "secret"})
    assert resp.status_code == 201, resp.text
    other = people["dave"].api.post("/list", json={"name": "dave's", "privacy": "public"})
    assert other.status_code == 201, other.text
    for privacy in ("public", "member"):
        resp = people["dave"].api.post("/message", json={
            "list_id": other.json()["id"], "subject": f"dave {privacy}", "privacy": privacy})
        assert resp.status_code == 201, resp.text
    return {"list": lst, "other": other.json(), **people}


@pytest.mark.parametrize("who", ["alice", "bob", "carol", "dave", "erin", "admin"])
def test_every_item_of_a_page_is_what_its_get_shows(mixed, who):
    api = mixed[who].api
    flt = json.dumps({"list_id": [mixed["list"]["id"], mixed["other"]["id"]]})
    items = pages(api, "/message", filter=flt)
    assert items, who
    assert_items_are_gets(api, "/message", items)
    # one page of them all, and the same items again
    whole = api.get("/message", params={"filter": flt, "limit": 50}).json()["items"]
    assert whole == items


def test_the_pages_mix_what_the_callers_hold(mixed):
    """The comparison above is only worth something where a page mixes records whose
    letters differ: each of these callers sees at least two kinds (erin, an invitee,
    reads the public and invitee messages alike)."""
    flt = json.dumps({"list_id": [mixed["list"]["id"], mixed["other"]["id"]]})
    for who in ("bob", "carol", "dave"):
        items = mixed[who].api.get("/message", params={"filter": flt, "limit": 50}).json()
        assert len({item["rbac"] for item in items["items"]}) >= 2, (who, items)


def test_related_values_on_a_page_follow_each_record(mixed):
    """author (the person's name) is shown where the caller may read that person: on a
    page of lists and messages of several people, each as its get shows it."""
    for who in ("alice", "bob", "dave"):
        api = mixed[who].api
        assert_items_are_gets(api, "/list", pages(api, "/list"))
        assert_items_are_gets(api, "/listmember", pages(api, "/listmember"))
