"""Trashcan over HTTP: list, get, restore, purge, retention, and nobody else's trash."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from apicrud.db.base import utcnow
from apicrud.trashcan import purge_expired
from helpers import assert_problem, new_list


def trash(api, path, record_id):
    assert api.delete(f"/{path}/{record_id}").status_code == 200


def test_deleted_records_are_listed_in_trash_not_elsewhere(user):
    keep = new_list(user.api, name="keep")
    gone = new_list(user.api, name="gone")
    trash(user.api, "list", gone["id"])
    assert user.api.get("/list", params={"filter": f'{{"uid": "{user.uid}"}}'}) \
        .json()["count"] == 1
    found = user.api.get("/trashcan")
    assert found.status_code == 200 and found.headers["X-Total-Count"] == "1"
    entry = found.json()["items"][0]
    assert entry["id"] == f"list-{gone['id']}" and entry["resource"] == "list"
    assert entry["label"] == "gone" and entry["uid"] == user.uid
    assert entry["status"] == "disabled"
    assert keep["id"] not in [e["record_id"] for e in found.json()["items"]]


def test_trash_filter_sort_and_pages(user):
    lists = [new_list(user.api, name=f"t{i}") for i in range(3)]
    cat = user.api.post("/category", json={"name": "c"}).json()
    for item in lists:
        trash(user.api, "list", item["id"])
    trash(user.api, "category", cat["id"])
    all_ = user.api.get("/trashcan").json()
    assert all_["count"] == 4
    only_lists = user.api.get("/trashcan", params={"filter": '{"resource": "list"}'}).json()
    assert only_lists["count"] == 3
    page = user.api.get("/trashcan", params={"sort": "label:asc", "limit": 2, "offset": 1})
    assert [e["label"] for e in page.json()["items"]] == ["t0", "t1"]
    assert page.json()["count"] == 4
    assert_problem(user.api.get("/trashcan", params={"filter": '{"colour": 1}'}), 400,
                   "filter")


def test_get_trashed_record_shows_its_fields(user):
    item = new_list(user.api, name="peek", description="inside")
    trash(user.api, "list", item["id"])
    got = user.api.get(f"/trashcan/list-{item['id']}")
    assert got.status_code == 200
    assert got.json()["record"]["description"] == "inside"
    assert_problem(user.api.get("/trashcan/list-x-notthere0000"), 404)
    assert_problem(user.api.get("/trashcan/nosuchkind-x-abc"), 404)
    assert_problem(user.api.get(f"/trashcan/list-{new_list(user.api)['id']}"), 404)


def test_restore_brings_record_back(user):
    item = new_list(user.api, name="back")
    trash(user.api, "list", item["id"])
    restored = user.api.put(f"/trashcan/list-{item['id']}", json={"status": "active"})
    assert restored.status_code == 200, restored.text
    assert user.api.get(f"/list/{item['id']}").json()["name"] == "back"
    assert user.api.get("/trashcan").json()["count"] == 0
    assert_problem(user.api.put(f"/trashcan/list-{item['id']}", json={"status": "active"}),
                   404)
    assert_problem(user.api.put(f"/trashcan/list-{item['id']}",
                                json={"status": "disabled"}), 400)


def test_restore_refused_on_unique_conflict_and_nothing_changes(user):
    old = new_list(user.api, name="twin")
    trash(user.api, "list", old["id"])
    new_list(user.api, name="twin")
    refused = user.api.put(f"/trashcan/list-{old['id']}", json={"status": "active"})
    assert_problem(refused, 409)
    assert user.api.get("/trashcan").json()["count"] == 1
    assert user.api.get("/list", params={"filter": f'{{"uid": "{user.uid}"}}'}) \
        .json()["count"] == 1


def test_purge_removes_record_and_what_depends_on_it(server, user):
    item = new_list(user.api, name="doomed")
    msg = user.api.post("/message", json={"list_id": item["id"], "subject": "x"}).json()
    trash(user.api, "list", item["id"])
    purged = user.api.delete(f"/trashcan/list-{item['id']}")
    assert purged.status_code == 200 and purged.json()["record_id"] == item["id"]
    models = server.services.models
    with server.services.db.session() as s:
        assert s.get(models.List, item["id"]) is None
        assert s.get(models.Message, msg["id"]) is None  # ON DELETE CASCADE
    assert_problem(user.api.delete(f"/trashcan/list-{item['id']}"), 404)


def test_purge_several_ids(user):
    ids = [new_list(user.api, name=f"p{i}")["id"] for i in range(3)]
    for i in ids:
        trash(user.api, "list", i)
    resp = user.api.delete("/trashcan/" + ",".join(f"list-{i}" for i in ids))
    assert resp.status_code == 200 and len(resp.json()) == 3
    assert user.api.get("/trashcan").json()["count"] == 0


def test_no_access_to_other_users_trash(user, other_user, admin):
    item = new_list(user.api, name="mine")
    trash(user.api, "list", item["id"])
    tid = f"list-{item['id']}"
    assert other_user.api.get("/trashcan").json()["count"] == 0
    assert_problem(other_user.api.get(f"/trashcan/{tid}"), 404)
    assert_problem(other_user.api.put(f"/trashcan/{tid}", json={"status": "active"}), 404)
    assert_problem(other_user.api.delete(f"/trashcan/{tid}"), 404)
    assert user.api.get(f"/trashcan/{tid}").status_code == 200
    # admins may delete any list, so they see it
    assert admin.api.get(f"/trashcan/{tid}").status_code == 200


def test_anonymous_gets_401(server):
    assert_problem(server.anonymous().get("/trashcan"), 401)


def test_purge_by_retention(server, user):
    old = new_list(user.api, name="old-trash")
    trash(user.api, "list", old["id"])
    models = server.services.models
    with server.services.db.session() as s, s.begin():
        s.get(models.List, old["id"]).modified = utcnow() - timedelta(days=40)
    fresh = new_list(user.api, name="fresh-trash")
    trash(user.api, "list", fresh["id"])
    assert purge_expired(server.services, retention_days=30) >= 1
    with server.services.db.session() as s:
        assert s.get(models.List, old["id"]) is None
        assert s.get(models.List, fresh["id"]) is not None
        assert s.execute(select(func.count()).select_from(models.List).where(
            models.List.id == fresh["id"])).scalar_one() == 1
