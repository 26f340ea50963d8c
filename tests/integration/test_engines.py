"""The same answers from both engines: the default application under ``apicrud serve``'s
WSGI path and mounted in a connexion 3 FlaskApp under uvicorn (apicrud.connexion_mount).

Each test runs against both (``engine`` is the server the requests go to); accounts are
made through the session server, whose database and Redis the connexion engine shares.
CRUD, find with filter/sort/cursor, 401/403/404/409/412/415, problem documents, headers
and RBAC for two roles.
"""

from __future__ import annotations

import json

import pytest
import requests

from connexion_engine import serve_connexion
from helpers import Api, make_user

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=["serve", "connexion"])
def engine(request, server):
    if request.param == "serve":
        yield server
        return
    with serve_connexion(server.settings) as mounted:
        yield mounted


def on(engine, user) -> Api:
    """The user's token, sent to this engine."""
    return Api(engine.url, user.token)


@pytest.fixture
def alice(server, engine):
    return on(engine, make_user(server, prefix="alice"))


@pytest.fixture
def bob_user(server):
    return make_user(server, prefix="bob")


@pytest.fixture
def root(server, engine):
    return on(engine, make_user(server, admin=True, prefix="root"))


def problem(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    body = resp.json()
    assert body["status"] == status and body["title"] and body["type"]
    assert body["message"] == body["detail"]
    assert body["instance"] == requests.utils.urlparse(resp.url).path
    if field is not None:
        assert field in body["errors"], body
    return body


def test_crud_round_trip_with_etags(alice, engine):
    made = alice.post("/list", json={"name": "reading"})
    assert made.status_code == 201, made.text
    record = made.json()
    assert made.headers["Location"].endswith(f"{engine.settings.base_url}/list/{record['id']}")
    assert made.headers["Cache-Control"] == "no-store" and made.headers["X-Request-ID"]
    got = alice.get(f"/list/{record['id']}")
    assert got.status_code == 200 and set("cdlru") <= set(got.json()["rbac"])
    etag = got.headers["ETag"]
    changed = alice.patch(f"/list/{record['id']}", json={"description": "books"},
                          headers={"If-Match": etag})
    assert changed.status_code == 200 and changed.json()["description"] == "books"
    problem(alice.put(f"/list/{record['id']}", json={"description": "x"},
                      headers={"If-Match": etag}), 412)
    gone = alice.delete(f"/list/{record['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "disabled"
    problem(alice.get(f"/list/{record['id']}"), 404)


def test_find_filters_sorts_and_pages_with_a_cursor(alice):
    list_id = alice.post("/list", json={"name": "chapters"}).json()["id"]
    for n in range(1, 6):
        assert alice.post("/message", json={"list_id": list_id,
                                            "subject": f"chapter {n}"}).status_code == 201
    first = alice.get("/message", params={"filter": '{"subject": "chapter%"}',
                                          "sort": "subject:desc", "limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [m["subject"] for m in page["items"]] == ["chapter 5", "chapter 4"]
    assert page["count"] == 5 and first.headers["X-Total-Count"] == "5"
    second = alice.get("/message", params={"cursor_next": page["cursor_next"]}).json()
    assert [m["subject"] for m in second["items"]] == ["chapter 3", "chapter 2"]
    problem(alice.get("/message", params={"sort": "nosuch:desc"}), 400, "sort")
    problem(alice.get("/message", params={"colour": "red"}), 400, "colour")


def test_anonymous_is_401_and_a_bad_token_too(engine):
    body = problem(Api(engine.url).get("/list"), 401)
    assert body["type"].endswith("/unauthorized")
    resp = Api(engine.url, "not-a-token").get("/list")
    problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_bad_bodies_are_400_naming_the_field_and_415_for_forms(alice):
    problem(alice.post("/list", json={"name": "x", "colour": "red"}), 400, "colour")
    problem(alice.post("/list", json={"description": "no name"}), 400, "name")
    problem(alice.post("/list", data="{not json", headers={"Content-Type":
                                                           "application/json"}), 400, "body")
    problem(alice.post("/category", data="name=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415)


def test_unique_conflict_is_409(alice):
    assert alice.post("/category", json={"name": "dup"}).status_code == 201
    problem(alice.post("/category", json={"name": "dup"}), 409)


def test_two_roles_see_what_rbac_yaml_says(alice, bob_user, root, engine):
    bob = on(engine, bob_user)
    mine = alice.post("/list", json={"name": "private"}).json()
    # another user: not even its existence (404), and no row in a find or count
    problem(bob.get(f"/list/{mine['id']}"), 404)
    # (the suite's other tests leave lists behind, some of them public)
    assert bob.get("/list", params={"filter": json.dumps({"id": mine["id"]})}).json()["count"] == 0
    assert mine["id"] not in {i["id"] for i in bob.get("/list", params={"limit": 100})
                              .json()["items"]}
    # a user may not create records for someone else they can read (403)
    assert bob.patch(f"/person/{bob_user.uid}", json={"privacy": "public"}).status_code == 200
    problem(alice.post("/category", json={"name": "x", "uid": bob_user.uid}), 403)
    # a user may not create a person; the admin may read and change anyone's list
    problem(alice.post("/person", json={"name": "someone"}), 403)
    seen = root.get(f"/list/{mine['id']}")
    assert seen.status_code == 200 and set("cdlru") <= set(seen.json()["rbac"])
    assert root.patch(f"/list/{mine['id']}", json={"description": "seen"}).status_code == 200


def test_unknown_urls_methods_and_preflights_under_the_base_are_apicrud_answers(alice):
    problem(alice.get("/no-such-resource"), 404)
    resp = alice.post("/list/x-nosuchrecord")  # a path the spec has, a method it lacks
    problem(resp, 405)
    assert resp.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    head = alice.request("HEAD", "/list")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["X-Total-Count"] == alice.get("/list").headers["X-Total-Count"]
