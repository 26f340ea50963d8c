"""The exact requests react-admin's stock data providers send, replayed over HTTP.

ra-data-simple-rest and ra-data-json-server (0.17 dialect) are pointed at the
``react_admin_url`` base (``/api/v1/ra``); each test is one data provider method, with
the URL and headers the provider builds, and checks what the provider reads back.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import requests

from helpers import assert_problem, serve_app

ORIGIN = "http://admin.example.test"


@pytest.fixture(scope="module")
def ra(server):
    """A second instance of the app (same database and Redis) with CORS for ORIGIN."""
    with serve_app(server.settings.replace(cors_origins=[ORIGIN])) as srv:
        yield srv.url.removesuffix(server.settings.base_url)


class Provider:
    """Sends requests the way react-admin's fetchJson does (Accept, Content-Type, Bearer)."""

    def __init__(self, root: str, token: str) -> None:
        self.root = root + "/api/v1/ra"
        self.headers = {"Accept": "application/json", "Authorization": f"Bearer {token}",
                        "Origin": ORIGIN}

    def call(self, method: str, path: str, query: dict | None = None, body=None,
             headers: dict | None = None) -> requests.Response:
        url = self.root + path + ("?" + urlencode(query, doseq=True) if query else "")
        hdrs = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            hdrs["Content-Type"] = "application/json"
            data = json.dumps(body)
        return requests.request(method, url, headers=hdrs, data=data, timeout=30)


@pytest.fixture
def world(user, ra):
    """Twelve lists and a few messages owned by a fresh user."""
    ids = []
    for i in range(12):
        resp = user.api.post("/list", json={"name": f"list {i:02d}",
                                            "description": "odd" if i % 2 else "even"})
        ids.append(resp.json()["id"])
    msgs = [user.api.post("/message", json={"list_id": ids[0], "subject": f"s{i}"}).json()["id"]
            for i in range(3)]
    api = Provider(ra, user.token)
    api.uid = user.uid  # other tests leave public lists anyone may read: filter to ours
    return api, ids, msgs


# -- ra-data-simple-rest ---------------------------------------------------------------

def test_simple_rest_get_list(world):
    api, _ids, _ = world
    resp = api.call("GET", "/list", {"sort": json.dumps(["name", "DESC"]),
                                     "range": json.dumps([0, 4]),
                                     "filter": json.dumps({"uid": api.uid})},
                    headers={"Range": "list=0-4"})
    assert resp.status_code == 200
    body = resp.json()
    assert isinstance(body, list) and len(body) == 5
    assert [r["name"] for r in body] == [f"list {i:02d}" for i in (11, 10, 9, 8, 7)]
    assert resp.headers["Content-Range"] == "list 0-4/12"
    assert resp.headers["X-Total-Count"] == "12"
    assert "Content-Range" in resp.headers["Access-Control-Expose-Headers"]
    page3 = api.call("GET", "/list", {"sort": json.dumps(["name", "ASC"]),
                                      "range": json.dumps([10, 14]),
                                      "filter": json.dumps({"uid": api.uid})})
    assert [r["name"] for r in page3.json()] == ["list 10", "list 11"]
    assert page3.headers["Content-Range"] == "list 10-11/12"


def test_simple_rest_get_list_with_filter_and_q(world):
    api, _, _ = world
    resp = api.call("GET", "/list", {"sort": '["id","ASC"]', "range": "[0,24]",
                                     "filter": json.dumps({"description": "odd",
                                                           "uid": api.uid})})
    assert resp.headers["Content-Range"].endswith("/6") and len(resp.json()) == 6
    searched = api.call("GET", "/list", {"sort": '["id","ASC"]', "range": "[0,24]",
                                         "filter": json.dumps({"q": "ODD list",
                                                               "uid": api.uid})})
    assert len(searched.json()) == 6  # every word, in any text field, any case
    assert {r["description"] for r in searched.json()} == {"odd"}


def test_simple_rest_get_one(world):
    api, ids, _ = world
    resp = api.call("GET", f"/list/{ids[3]}")
    assert resp.status_code == 200 and resp.json()["id"] == ids[3]


def test_simple_rest_get_many(world):
    api, ids, _ = world
    resp = api.call("GET", "/list", {"filter": json.dumps({"id": ids[:3]})})
    assert resp.status_code == 200
    assert sorted(r["id"] for r in resp.json()) == sorted(ids[:3])


def test_simple_rest_get_many_reference(world):
    api, ids, _msgs = world
    resp = api.call("GET", "/message", {"sort": '["subject","ASC"]', "range": "[0,1]",
                                        "filter": json.dumps({"list_id": ids[0]})})
    assert [r["subject"] for r in resp.json()] == ["s0", "s1"]
    assert resp.headers["Content-Range"] == "message 0-1/3"


def test_simple_rest_create_update_delete(world):
    api, _, _ = world
    created = api.call("POST", "/list", body={"name": "from the UI"})
    assert created.status_code == 201 and created.json()["id"]
    rid = created.json()["id"]
    record = api.call("GET", f"/list/{rid}").json()
    record["description"] = "edited"
    updated = api.call("PUT", f"/list/{rid}", body=record)  # the whole record, as read
    assert updated.status_code == 200 and updated.json()["description"] == "edited"
    deleted = api.call("DELETE", f"/list/{rid}")
    assert deleted.status_code == 200 and deleted.json()["id"] == rid
    assert api.call("GET", f"/list/{rid}").status_code == 404


def test_simple_rest_update_many_and_delete_many_are_single_calls(world):
    api, ids, _ = world
    for rid in ids[:2]:  # updateMany: one PUT per id with the changed fields
        assert api.call("PUT", f"/list/{rid}", body={"description": "bulk"}).status_code == 200
    for rid in ids[:2]:  # deleteMany: one DELETE per id
        assert api.call("DELETE", f"/list/{rid}").json()["id"] == rid


def test_simple_rest_errors_carry_message_and_form_errors(world):
    api, _, _ = world
    resp = api.call("POST", "/list", body={"name": ""})
    body = assert_problem(resp, 400, "name")
    assert body["message"] and isinstance(body["errors"], dict)


# -- ra-data-json-server ---------------------------------------------------------------

def test_json_server_get_list(world):
    api, _, _ = world
    resp = api.call("GET", "/list", {"_sort": "name", "_order": "ASC", "_start": 2,
                                     "_end": 5, "uid": api.uid})
    assert [r["name"] for r in resp.json()] == ["list 02", "list 03", "list 04"]
    assert resp.headers["X-Total-Count"] == "12"


def test_json_server_filters_and_operators(world):
    api, ids, _ = world
    eq = api.call("GET", "/list", {"description": "even", "_start": 0, "_end": 50, "uid": api.uid})
    assert len(eq.json()) == 6
    ne = api.call("GET", "/list",
                  {"description_ne": "even", "_start": 0, "_end": 50, "uid": api.uid})
    assert {r["description"] for r in ne.json()} == {"odd"}
    like = api.call("GET", "/list", {"name_like": "st 1", "_start": 0, "_end": 50, "uid": api.uid})
    assert sorted(r["name"] for r in like.json()) == ["list 10", "list 11"]
    first = api.call("GET", f"/list/{ids[5]}").json()["created"]
    gte = api.call("GET", "/list", {"created_gte": first, "_start": 0, "_end": 50, "uid": api.uid})
    assert len(gte.json()) == 7
    lte = api.call("GET", "/list", {"created_lte": first, "_start": 0, "_end": 50, "uid": api.uid})
    assert len(lte.json()) == 6
    q = api.call("GET", "/list", {"q": "LIST 11", "_start": 0, "_end": 50, "uid": api.uid})
    assert [r["name"] for r in q.json()] == ["list 11"]


def test_json_server_get_many_and_reference(world):
    api, ids, _ = world
    many = api.call("GET", "/list", {"id": ids[4:7]})
    assert sorted(r["id"] for r in many.json()) == sorted(ids[4:7])
    one = api.call("GET", "/list", {"id": ids[4]})
    assert [r["id"] for r in one.json()] == [ids[4]]
    ref = api.call("GET", "/message", {"list_id": ids[0], "_sort": "subject", "_order": "DESC",
                                       "_start": 0, "_end": 10})
    assert [r["subject"] for r in ref.json()] == ["s2", "s1", "s0"]
    assert ref.headers["X-Total-Count"] == "3"


def test_json_server_page_and_limit_select_the_page(world):
    api, _, _ = world
    resp = api.call("GET", "/list", {"_sort": "name", "_order": "ASC", "_page": 2,
                                     "_limit": 5, "uid": api.uid})
    assert [r["name"] for r in resp.json()] == [f"list {i:02d}" for i in range(5, 10)]
    assert resp.headers["Content-Range"].endswith(" 5-9/12")
    assert_problem(api.call("GET", "/list", {"_page": 0}), 400, "_page")
    assert_problem(api.call("GET", "/list", {"_limit": "x"}), 400, "_limit")


def test_cursor_next_pages_through_the_dialect(world):
    api, _, _ = world
    first = api.call("GET", "/list", {"sort": '["name","ASC"]', "limit": 5, "uid": api.uid})
    assert first.status_code == 200, first.text
    names = [r["name"] for r in first.json()]
    cursor = first.headers["X-Cursor-Next"]
    while cursor:
        page = api.call("GET", "/list", {"cursor_next": cursor})
        assert page.status_code == 200, page.text
        names += [r["name"] for r in page.json()]
        cursor = page.headers.get("X-Cursor-Next")
    assert names == [f"list {i:02d}" for i in range(12)]


def test_json_server_bad_params_are_400(world):
    api, _, _ = world
    assert_problem(api.call("GET", "/list", {"_start": "x"}), 400, "_start")
    assert_problem(api.call("GET", "/list", {"colour": "red"}), 400, "filter")
    assert_problem(api.call("GET", "/list", {"_sort": "colour"}), 400, "sort")
    assert_problem(api.call("GET", "/list", {"range": "[5,1]"}), 400, "range")


# -- the audit trail and a record's history, as lists of the dialect ----------------------

def test_audit_and_history_are_ranged_lists(world, other_user):
    api, ids, _ = world
    for n in range(3):  # a create and three updates: four entries about the list
        resp = api.call("PUT", f"/list/{ids[0]}", body={"description": f"take {n}"})
        assert resp.status_code == 200, resp.text
    about = json.dumps({"resource": "list", "record_id": ids[0]})
    resp = api.call("GET", "/audit", {"filter": about, "sort": '["created","DESC"]',
                                      "range": "[0,1]"})
    assert resp.status_code == 200, resp.text
    assert [e["action"] for e in resp.json()] == ["update", "update"]
    assert resp.json()[0]["changes"]["description"] == {"old": "take 1", "new": "take 2"}
    assert resp.headers["Content-Range"] == "audit 0-1/4"
    assert resp.headers["X-Total-Count"] == "4"
    # the history under the record answers the same way, ranges included
    resp = api.call("GET", f"/list/{ids[0]}/history", {"sort": '["created","DESC"]',
                                                       "range": "[2,3]"},
                    headers={"Range": "audit=2-3"})
    assert resp.status_code == 200, resp.text
    assert [e["action"] for e in resp.json()] == ["update", "create"]
    assert resp.headers["Content-Range"] == "audit 2-3/4"
    assert resp.headers["X-Total-Count"] == "4"
    # someone who may not read the list: its history is a 404, the trail an empty page
    stranger = Provider(api.root.removesuffix("/api/v1/ra"), other_user.token)
    assert_problem(stranger.call("GET", f"/list/{ids[0]}/history", {"range": "[0,9]"}), 404)
    empty = stranger.call("GET", "/audit", {"filter": about, "range": "[0,9]"})
    assert empty.status_code == 200 and empty.json() == []
    assert empty.headers["Content-Range"] == "audit */0"
    assert empty.headers["X-Total-Count"] == "0"


# -- CORS, and the envelope API stays as it was -------------------------------------------

def test_cors_preflight_allows_provider_headers(ra):
    resp = requests.options(ra + "/api/v1/ra/list", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type,range"}, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    for header in ("authorization", "content-type", "range", "if-match", "x-api-key"):
        assert header in allowed
    assert "PUT" in resp.headers["Access-Control-Allow-Methods"]
    exposed = resp.headers["Access-Control-Expose-Headers"]
    assert all(h in exposed for h in ("Content-Range", "X-Total-Count", "ETag"))


def test_cors_other_origins_get_no_grant(ra):
    resp = requests.options(ra + "/api/v1/list", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}, timeout=30)
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_envelope_api_unchanged(world, user):
    _, ids, _ = world
    body = user.api.get("/list", params={"filter": json.dumps({"id": ids[:3]})}).json()
    assert set(body) == {"items", "count"} and body["count"] == 3
