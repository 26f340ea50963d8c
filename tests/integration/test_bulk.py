"""Bulk writes over HTTP: all or none, each record checked as a single write would be."""

from __future__ import annotations

import json

import requests
from sqlalchemy import func, select

from helpers import assert_problem
from test_grants import grant


def _live_lists(server, uid: str) -> int:
    model = server.services.models.List
    with server.services.db.session() as s:
        return s.execute(select(func.count()).select_from(model).where(
            model.uid == uid, model.status != "disabled")).scalar_one()


def _mine(user) -> str:
    return json.dumps({"uid": user.uid})


# -- create --------------------------------------------------------------------------

def test_bulk_create_makes_every_record(server, user):
    resp = user.api.post("/list", json=[{"name": f"bulk {i}"} for i in range(3)])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["count"] == 3 and [i["name"] for i in body["items"]] == ["bulk 0", "bulk 1",
                                                                         "bulk 2"]
    assert all(i["rbac"] and i["uid"] == user.uid for i in body["items"])
    assert _live_lists(server, user.uid) == 3


def test_bulk_create_with_one_forbidden_record_writes_nothing(server, user, other_user):
    theirs = other_user.api.post("/list", json={"name": "theirs", "privacy": "public"}).json()
    mine = user.api.post("/list", json={"name": "mine"}).json()
    before = _live_lists(server, user.uid)
    # a post into a list the caller may read (public) but not post to
    resp = user.api.post("/message", json=[{"list_id": mine["id"], "subject": "ok"},
                                           {"list_id": theirs["id"], "subject": "no"}])
    body = assert_problem(resp, 404, "[1].list_id")
    assert body["detail"].startswith("[1]:")
    found = user.api.get("/message", params={"filter": json.dumps({"list_id": mine["id"]})})
    assert found.json()["count"] == 0, "the allowed first record was written"
    # a record for another owner refuses the batch (owner rule)
    resp = user.api.post("/list", json=[{"name": "a"}, {"name": "b", "uid": other_user.uid}])
    assert resp.status_code in (403, 404), resp.text
    assert any(k.startswith("[1]") for k in resp.json()["errors"])
    assert _live_lists(server, user.uid) == before


def test_bulk_create_validates_each_item_naming_its_index(server, user):
    resp = user.api.post("/list", json=[{"name": "fine"}, {"name": ""}, {"colour": "red"}])
    body = assert_problem(resp, 400)
    assert "[1].name" in body["errors"] and any(k.startswith("[2]") for k in body["errors"])
    assert _live_lists(server, user.uid) == 0
    assert_problem(user.api.post("/list", json=[]), 400)
    assert_problem(user.api.post("/list", json=["x"]), 400, "[0]")
    too_many = [{"name": f"n{i}"} for i in range(server.settings.bulk_max + 1)]
    assert_problem(user.api.post("/list", json=too_many), 400, "body")
    # a resource whose spec takes one object only refuses an array
    assert_problem(user.api.post("/apikey", json=[{"name": "k"}]), 400)


def test_bulk_create_counts_the_whole_batch_against_grants(server, admin, user):
    grant(admin, user.uid, "lists", 2)
    resp = user.api.post("/list", json=[{"name": f"g{i}"} for i in range(3)])
    assert resp.status_code == 403 and resp.json()["type"].endswith("grant-exceeded")
    assert _live_lists(server, user.uid) == 0
    assert user.api.post("/list", json=[{"name": "g0"}, {"name": "g1"}]).status_code == 201
    # the next request counts from the database again: the two held use the grant up
    resp = user.api.post("/list", json=[{"name": "g2"}])
    assert resp.status_code == 403 and resp.json()["type"].endswith("grant-exceeded")
    assert _live_lists(server, user.uid) == 2


def test_bulk_create_with_a_unique_conflict_writes_nothing(server, user):
    # one flush for the whole batch: a duplicate inside it, or of a live record, is a 409
    # and not one record of the batch stays
    assert_problem(user.api.post("/list", json=[{"name": "dup"}, {"name": "other"},
                                                {"name": "dup"}]), 409)
    assert _live_lists(server, user.uid) == 0
    assert user.api.post("/list", json={"name": "dup"}).status_code == 201
    assert_problem(user.api.post("/list", json=[{"name": "fresh"}, {"name": "dup"}]), 409)
    assert _live_lists(server, user.uid) == 1


# -- update and delete by filter -------------------------------------------------------

def test_bulk_update_by_filter_changes_each_match(server, user):
    user.api.post("/list", json=[{"name": f"u{i}"} for i in range(4)])
    resp = user.api.patch("/list", params={"filter": _mine(user)},
                          json={"description": "done"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["count"] == 4
    assert {i["description"] for i in user.api.get("/list", params={
        "filter": _mine(user)}).json()["items"]} == {"done"}


def test_bulk_write_past_max_affected_writes_nothing(server, user):
    user.api.post("/list", json=[{"name": f"m{i}"} for i in range(4)])
    assert_problem(user.api.patch("/list", params={"filter": _mine(user), "max_affected": 3},
                                  json={"description": "x"}), 400, "max_affected")
    assert_problem(user.api.delete("/list", params={"filter": _mine(user), "max_affected": 3}),
                   400, "max_affected")
    assert_problem(user.api.patch("/list", params={"filter": _mine(user),
                                                   "max_affected": 10 ** 6},
                                  json={"description": "x"}), 400, "max_affected")
    assert _live_lists(server, user.uid) == 4
    assert {i["description"] for i in user.api.get("/list", params={
        "filter": _mine(user)}).json()["items"]} == {None}
    # the filter is required: no accidental "everything"
    assert_problem(user.api.patch("/list", json={"description": "x"}), 400, "filter")


def test_bulk_update_with_one_forbidden_row_writes_nothing(server, user, other_user):
    mine = user.api.post("/list", json={"name": "mine"}).json()
    theirs = other_user.api.post("/list", json={"name": "theirs", "privacy": "public"}).json()
    flt = json.dumps({"id": [mine["id"], theirs["id"]]})
    resp = user.api.patch("/list", params={"filter": flt}, json={"description": "hijack"})
    body = assert_problem(resp, 403)
    assert theirs["id"] in json.dumps(body["errors"])
    assert user.api.get(f"/list/{mine['id']}").json()["description"] is None
    assert other_user.api.get(f"/list/{theirs['id']}").json()["description"] is None
    resp = user.api.delete("/list", params={"filter": flt})
    assert_problem(resp, 403)
    assert user.api.get(f"/list/{mine['id']}").status_code == 200
    # records the caller cannot read are not matched at all (a filter only narrows)
    hidden = other_user.api.post("/list", json={"name": "hidden"}).json()
    resp = user.api.patch("/list", params={"filter": json.dumps({"id": hidden["id"]})},
                          json={"description": "x"})
    assert resp.status_code == 200 and resp.json()["count"] == 0


def test_bulk_update_cannot_move_records_to_another_owner(server, user, other_user):
    user.api.post("/list", json=[{"name": "o1"}, {"name": "o2"}])
    resp = user.api.patch("/list", params={"filter": _mine(user)},
                          json={"uid": other_user.uid})
    assert resp.status_code in (403, 404), resp.text
    assert _live_lists(server, user.uid) == 2


def test_bulk_delete_by_filter_trashes_each_match(server, user):
    user.api.post("/list", json=[{"name": f"d{i}"} for i in range(3)])
    resp = user.api.delete("/list", params={"filter": _mine(user)})
    assert resp.status_code == 200 and resp.json()["count"] == 3
    assert all(i["status"] == "disabled" for i in resp.json()["items"])
    assert _live_lists(server, user.uid) == 0
    trash = user.api.get("/trashcan", params={"filter": json.dumps({"resource": "list"})})
    assert trash.json()["count"] == 3


# -- several ids, If-Match per record ----------------------------------------------------

def test_patch_several_ids_with_an_etag_per_record(server, user):
    made = user.api.post("/list", json=[{"name": "e1"}, {"name": "e2"}]).json()["items"]
    ids = [m["id"] for m in made]
    tags = [user.api.get(f"/list/{i}").headers["ETag"] for i in ids]
    resp = user.api.patch(f"/list/{','.join(ids)}", json={"description": "both"},
                          headers={"If-Match": ", ".join(tags)})
    assert resp.status_code == 200, resp.text
    assert [r["description"] for r in resp.json()] == ["both", "both"]
    # now the first tag is stale: nothing changes
    resp = user.api.patch(f"/list/{','.join(ids)}", json={"description": "again"},
                          headers={"If-Match": ", ".join(
                              [tags[0], user.api.get(f"/list/{ids[1]}").headers["ETag"]])})
    body = assert_problem(resp, 412)
    assert ids[0] in body["errors"]
    assert {user.api.get(f"/list/{i}").json()["description"] for i in ids} == {"both"}
    resp = user.api.delete(f"/list/{','.join(ids)}", headers={"If-Match": tags[0]})
    assert_problem(resp, 412)
    assert user.api.get(f"/list/{ids[0]}").status_code == 200


def test_react_admin_update_many_in_one_request(server, user):
    made = user.api.post("/list", json=[{"name": "r1"}, {"name": "r2"}]).json()["items"]
    ids = ",".join(m["id"] for m in made)
    root = server.url.removesuffix(server.settings.base_url)
    headers = {"Authorization": f"Bearer {user.token}"}
    resp = requests.put(f"{root}/api/v1/ra/list/{ids}", json={"description": "ra"},
                        headers=headers, timeout=30)
    assert resp.status_code == 200 and len(resp.json()) == 2
    resp = requests.delete(f"{root}/api/v1/ra/list/{ids}", headers=headers, timeout=30)
    assert resp.status_code == 200 and [r["id"] for r in resp.json()] == ids.split(",")
