"""Count modes, field selection and required If-Match, over HTTP."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import requests

from helpers import ROOT, assert_problem, make_user, serve_app


@pytest.fixture(scope="module")
def lists(server):
    owner = make_user(server)
    ids = [owner.api.post("/list", json={"name": f"opt {i}", "description": "d"}).json()["id"]
           for i in range(7)]
    return owner, ids


def _mine(owner):
    return {"filter": json.dumps({"uid": owner.uid}), "limit": 3}


def test_count_exact_is_the_default(lists):
    owner, _ = lists
    resp = owner.api.get("/list", params=_mine(owner))
    assert resp.json()["count"] == 7 and resp.headers["X-Total-Count"] == "7"
    assert "count_estimated" not in resp.json()


def test_count_none_skips_the_count_and_still_pages(server, lists):
    owner, _ids = lists
    statements = []
    engine = server.services.db.engine

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", seen)
    try:
        resp = owner.api.get("/list", params={**_mine(owner), "count": "none"})
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    body = resp.json()
    assert resp.status_code == 200 and "count" not in body
    assert "X-Total-Count" not in resp.headers
    assert not [s for s in statements if "count(" in s.lower()], statements
    names = [i["name"] for i in body["items"]]
    while "cursor_next" in body:
        body = owner.api.get("/list", params={"cursor_next": body["cursor_next"]}).json()
        assert "count" not in body  # a cursor continues in the first page's count mode
        names += [i["name"] for i in body["items"]]
    assert sorted(names) == [f"opt {i}" for i in range(7)]


def test_prefer_header_chooses_the_count_and_the_parameter_wins(lists):
    owner, _ = lists
    resp = owner.api.get("/list", params=_mine(owner), headers={"Prefer": "count=none"})
    assert "count" not in resp.json()
    resp = owner.api.get("/list", params={**_mine(owner), "count": "exact"},
                         headers={"Prefer": "return=minimal, count=none"})
    assert resp.json()["count"] == 7
    resp = owner.api.get("/list", params=_mine(owner), headers={"Prefer": "count=bogus"})
    assert resp.json()["count"] == 7  # preferences not understood are ignored (RFC 7240)


def test_count_estimated_is_exact_below_the_threshold(lists):
    owner, _ = lists
    resp = owner.api.get("/list", params={**_mine(owner), "count": "estimated"})
    assert resp.json()["count"] == 7 and "count_estimated" not in resp.json()


def test_count_estimated_uses_the_planner_above_the_threshold(server, lists):
    owner, _ = lists
    with serve_app(server.settings.replace(count_estimate_threshold=0)) as srv:
        api = make_user(srv).api
        api.http.headers["Authorization"] = owner.api.http.headers["Authorization"]
        body = api.get("/list", params={**_mine(owner), "count": "estimated"}).json()
    if server.services.db.dialect == "postgresql":
        assert body["count_estimated"] is True and body["count"] >= 0
    else:  # no planner estimate elsewhere: counted exactly
        assert body["count"] == 7 and "count_estimated" not in body


def test_bad_count_mode_is_400(lists):
    owner, _ = lists
    assert_problem(owner.api.get("/list", params={"count": "roughly"}), 400, "count")


def test_react_admin_dialect_with_count_none_has_an_open_range(server, lists):
    owner, _ = lists
    root = server.url.removesuffix(server.settings.base_url)
    resp = requests.get(root + "/api/v1/ra/list", params={
        "filter": json.dumps({"uid": owner.uid}), "range": "[0,2]", "count": "none"},
        headers={"Authorization": owner.api.http.headers["Authorization"]}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Range"] == "list 0-2/*"
    assert len(resp.json()) == 3


# -- fields --------------------------------------------------------------------------

def test_fields_select_what_get_and_find_carry(lists):
    owner, ids = lists
    whole = owner.api.get(f"/list/{ids[0]}")
    part = owner.api.get(f"/list/{ids[0]}", params={"fields": "name,rbac"})
    assert part.json() == {"id": ids[0], "name": "opt 0", "rbac": whole.json()["rbac"]}
    assert part.headers["ETag"] != whole.headers["ETag"]
    other = owner.api.get(f"/list/{ids[0]}", params={"fields": "description"})
    assert other.headers["ETag"] not in (part.headers["ETag"], whole.headers["ETag"])
    found = owner.api.get("/list", params={**_mine(owner), "fields": "name"}).json()
    assert all(set(item) == {"id", "name"} for item in found["items"]) and found["count"] == 7


def test_a_projected_etag_still_guards_a_write(lists):
    owner, ids = lists
    tag = owner.api.get(f"/list/{ids[1]}", params={"fields": "name"}).headers["ETag"]
    ok = owner.api.patch(f"/list/{ids[1]}", json={"description": "first"},
                         headers={"If-Match": tag})
    assert ok.status_code == 200, ok.text
    stale = owner.api.patch(f"/list/{ids[1]}", json={"description": "second"},
                            headers={"If-Match": tag})
    assert_problem(stale, 412)
    forged = tag[:-2] + 'x"'
    assert_problem(owner.api.patch(f"/list/{ids[1]}", json={"description": "third"},
                                   headers={"If-Match": forged}), 412)


@pytest.mark.parametrize("fields", ["nosuch", "name,nosuch", "password_hash", ",", "uid,,"])
def test_unknown_or_unexposed_fields_are_400(lists, fields):
    owner, ids = lists
    assert_problem(owner.api.get(f"/list/{ids[0]}", params={"fields": fields}), 400, "fields")
    assert_problem(owner.api.get("/list", params={"fields": fields}), 400, "fields")


def test_fields_of_the_account_never_reach_its_hash(server, admin):
    # a model column outside the schema (the password hash) cannot be selected
    resp = admin.api.get("/account", params={"fields": "password"})
    assert_problem(resp, 400, "fields")


def test_cursor_pages_of_a_boolean_sort_walk_every_record_once(server, admin):
    # the keyset clause compares the last row's key: true/false are values to bind there
    make_user(server)
    params = {"sort": "is_admin:desc", "fields": "id", "limit": 1}
    whole = admin.api.get("/account", params={**params, "limit": 100}).json()
    body = admin.api.get("/account", params=params).json()
    seen = [i["id"] for i in body["items"]]
    while "cursor_next" in body:
        resp = admin.api.get("/account", params={"cursor_next": body["cursor_next"]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += [i["id"] for i in body["items"]]
    # the suite's other tests leave accounts behind: the first page of 100 is the start of
    # the walk, and the walk holds each of the counted accounts once
    assert seen[:len(whole["items"])] == [i["id"] for i in whole["items"]]
    assert len(seen) == len(set(seen)) == whole["count"] and len(seen) >= 2


# -- If-Match required -------------------------------------------------------------

@pytest.fixture(scope="module")
def strict(server, tmp_path_factory):
    """The default application with ``if_match: required`` on list."""
    spec_dir = tmp_path_factory.mktemp("spec")
    target = spec_dir / "openapi"
    shutil.copytree(os.path.join(ROOT, server.settings.openapi_dir), target)
    api = (target / "api.yaml").read_text()
    assert "\n  list: {}\n" in api
    (target / "api.yaml").write_text(api.replace("\n  list: {}\n",
                                                 "\n  list: {if_match: required}\n"))
    with serve_app(server.settings.replace(openapi_dir=str(target))) as srv:
        yield srv


def test_required_if_match_refuses_blind_writes_with_428(strict):
    owner = make_user(strict)
    created = owner.api.post("/list", json={"name": "strict"})
    assert created.status_code == 201  # creating needs no precondition
    lid = created.json()["id"]
    blind = owner.api.patch(f"/list/{lid}", json={"description": "x"})
    assert_problem(blind, 428, "If-Match")
    assert_problem(owner.api.delete(f"/list/{lid}"), 428, "If-Match")
    assert owner.api.get(f"/list/{lid}").json()["description"] is None
    tag = owner.api.get(f"/list/{lid}").headers["ETag"]
    assert owner.api.patch(f"/list/{lid}", json={"description": "x"},
                           headers={"If-Match": tag}).status_code == 200
    other = owner.api.post("/list", json={"name": "strict 2"}).json()["id"]
    # several ids: If-Match lists the ETag of each (without one: 428, nothing trashed)
    assert_problem(owner.api.delete(f"/list/{lid},{other}"), 428, "If-Match")
    assert owner.api.get(f"/list/{other}").status_code == 200
    tags = [owner.api.get(f"/list/{i}").headers["ETag"] for i in (lid, other)]
    assert owner.api.delete(f"/list/{lid},{other}",
                            headers={"If-Match": ", ".join(tags)}).status_code == 200
    other = owner.api.post("/list", json={"name": "strict 3"}).json()["id"]
    # other resources keep If-Match optional
    msg = owner.api.post("/message", json={"list_id": other, "subject": "s"}).json()["id"]
    assert owner.api.patch(f"/message/{msg}", json={"subject": "t"}).status_code == 200
