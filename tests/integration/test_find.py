"""Collections over HTTP (CONTRACT section 4): filter, sort, limit/offset, count and
keyset paging with ``cursor_next``, on the category, list and message resources.

Tests that write use a fresh user, so counts are exact; read-only tests share one of
three module-scoped users nobody else writes for (``reader``: a few categories;
``thirty``: 30 messages; ``big``: 1,000 messages inserted straight into the database).
Order assertions hold on SQLite, PostgreSQL and MariaDB alike: subjects are lowercase
letters and digits, and where ties are broken by id the reference order of ids is the
database's own ``ORDER BY id`` (collations differ between backends).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from apicrud.db.base import new_id
from helpers import make_user

PROBLEM = "application/problem+json"
PAGE = 37


# -- helpers --------------------------------------------------------------------------

def assert_problem(resp, param: str, status: int = 400) -> dict:
    """A problem document whose ``errors`` names ``param`` (or ``param.<sub>``)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["type"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["message"] == body["detail"]
    errors = body.get("errors")
    assert isinstance(errors, dict) and errors, body
    assert any(k == param or k.startswith(param + ".") for k in errors), body
    return body


def find(api, resource: str, filter=None, **params):
    """GET /{resource}; ``filter`` may be a dict (JSON-encoded here) or a raw string."""
    if filter is not None:
        params["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
    return api.get(f"/{resource}", params=params)


@pytest.fixture(scope="module", autouse=True)
def no_public_records_of_other_modules(server):
    """Counts here are exact: public records left by modules that ran before (e.g. the
    RBAC matrix, when run first) would be readable by every user of this module."""
    with server.services.db.session() as session, session.begin():
        for res in server.services.resources.values():
            model = res.model
            if model is not None and hasattr(model, "privacy"):
                session.execute(update(model).where(model.privacy == "public")
                                .values(privacy="member"))


def mine(user) -> dict:
    """A filter on the user's own messages: other tests' public messages stay out."""
    return {"uid": user.uid}


def ok(resp) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) <= {"items", "count", "cursor_next"}, body.keys()
    assert isinstance(body["items"], list)
    assert resp.headers["X-Total-Count"] == str(body["count"])
    return body


def assert_sees_nothing(resp, field: str) -> None:
    """Nothing of another user's shows: an empty page with count 0, or (for a filter on a
    reference such as ``uid`` naming a record the caller may not read) a 404 naming
    ``filter.<field>``, as for an unreadable id in a payload (CONTRACT 5)."""
    if resp.status_code == 404:
        assert_problem(resp, f"filter.{field}", 404)
    else:
        body = ok(resp)
        assert body == {"items": [], "count": 0}, body
        assert resp.headers["X-Total-Count"] == "0"


def names(body) -> list[str]:
    return [item["name"] for item in body["items"]]


def new_category(api, name: str, **fields) -> dict:
    resp = api.post("/category", json={"name": name, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def new_list(api, name: str = "inbox", **fields) -> dict:
    resp = api.post("/list", json={"name": name, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def new_message(api, list_id: str, **fields) -> dict:
    resp = api.post("/message", json={"list_id": list_id, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def insert_messages(server, uid: str, list_id: str, rows: list[dict]) -> list[str]:
    """Insert message rows straight into the database (fast); returns their ids."""
    model = server.services.models.Message
    ids = []
    with server.services.db.session() as session, session.begin():
        for row in rows:
            id_ = new_id(server.settings.id_prefix)
            session.add(model(id=id_, list_id=list_id, uid=uid, privacy="member",
                              status="active", **row))
            ids.append(id_)
    return ids


def db_id_order(server, uid: str) -> dict[str, int]:
    """Rank of each of ``uid``'s message ids in the database's own ORDER BY id."""
    model = server.services.models.Message
    with server.services.db.session() as session:
        ids = session.execute(select(model.id).where(model.uid == uid)
                              .order_by(model.id)).scalars().all()
    return {id_: n for n, id_ in enumerate(ids)}


def walk(api, resource: str, params: dict, limit: int = PAGE, between=None,
         repeat: bool = True) -> tuple[list[dict], list[dict]]:
    """Follow ``cursor_next`` until it is absent; returns (all items, page bodies).

    ``repeat`` sends the first page's filter/sort again with every cursor (as a client
    that keeps its query would); ``between(page_no, body)`` runs after each page.
    """
    first = {**params, "limit": limit}
    body = ok(api.get(f"/{resource}", params=first))
    items, pages = [], []
    while True:
        pages.append(body)
        items.extend(body["items"])
        assert len(body["items"]) <= limit
        cursor = body.get("cursor_next")
        if not cursor:
            break
        assert len(body["items"]) == limit, "a page with a cursor_next is a full page"
        assert len(pages) < 500, "cursor_next never ends"
        if between is not None:
            between(len(pages), body)
        nxt = dict(first) if repeat else {"limit": limit}
        nxt["cursor_next"] = cursor
        body = ok(api.get(f"/{resource}", params=nxt))
    return items, pages


def ids_of(items) -> list[str]:
    return [item["id"] for item in items]


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds") + "Z"


READER_NAMES = ["apple", "banana", "café ☕ 日本", "😀🎉"]


@pytest.fixture(scope="module")
def reader(server):
    """A user nobody else writes for, owning the categories READER_NAMES (apple's
    description is "fruit", the others have none); for read-only tests."""
    owner = make_user(server, prefix="reader")
    for name in READER_NAMES:
        new_category(owner.api, name, **({"description": "fruit"} if name == "apple" else {}))
    return owner


# -- filter ---------------------------------------------------------------------------

def test_filter_equality_returns_only_matching_rows(user):
    for name in ("apple", "banana", "cherry"):
        new_category(user.api, name)
    body = ok(find(user.api, "category", {"name": "banana"}))
    assert names(body) == ["banana"] and body["count"] == 1
    body = ok(find(user.api, "category", {"name": "durian"}))
    assert body["items"] == [] and body["count"] == 0


def test_filter_equality_on_id_returns_that_row(user):
    wanted = new_category(user.api, "one")
    new_category(user.api, "two")
    body = ok(find(user.api, "category", {"id": wanted["id"]}))
    assert ids_of(body["items"]) == [wanted["id"]]


def test_filter_list_returns_rows_matching_any_value(user):
    for name in ("apple", "banana", "cherry", "date"):
        new_category(user.api, name)
    body = ok(find(user.api, "category", {"name": ["apple", "cherry", "zzz"]}, sort="name"))
    assert names(body) == ["apple", "cherry"] and body["count"] == 2


def test_filter_empty_list_matches_nothing(user):
    new_category(user.api, "apple")
    body = ok(find(user.api, "category", {"name": []}))
    assert body["items"] == [] and body["count"] == 0


def test_filter_list_with_null_also_matches_rows_without_value(user):
    new_category(user.api, "a", description="red")
    new_category(user.api, "b", description="blue")
    new_category(user.api, "c")
    body = ok(find(user.api, "category", {"description": ["red", None]}, sort="name"))
    assert names(body) == ["a", "c"]


def test_filter_star_returns_rows_with_any_non_null_value(user):
    new_category(user.api, "a", description="red")
    new_category(user.api, "b", description="")
    new_category(user.api, "c")
    body = ok(find(user.api, "category", {"description": "*"}, sort="name"))
    assert names(body) == ["a", "b"] and body["count"] == 2


def test_filter_null_returns_rows_without_value(user):
    new_list(user.api, "described", description="has one")
    new_list(user.api, "bare")
    new_list(user.api, "bare2", description=None)
    body = ok(find(user.api, "list", {"description": None}, sort="name"))
    assert names(body) == ["bare", "bare2"] and body["count"] == 2


def test_filter_percent_is_a_like_pattern(user):
    for name in ("apple", "apricot", "banana", "grape"):
        new_category(user.api, name)
    assert names(ok(find(user.api, "category", {"name": "ap%"}, sort="name"))) == \
        ["apple", "apricot"]
    assert names(ok(find(user.api, "category", {"name": "%an%"}))) == ["banana"]
    assert names(ok(find(user.api, "category", {"name": "%e"}, sort="name"))) == \
        ["apple", "grape"]
    assert ok(find(user.api, "category", {"name": "%"}))["count"] == 4


def test_filter_underscore_in_pattern_is_literal_not_a_wildcard(user):
    for name in ("a_c", "abc", "a_cd", "axcd"):
        new_category(user.api, name)
    body = ok(find(user.api, "category", {"name": "a_c%"}, sort="name"))
    assert names(body) == ["a_c", "a_cd"]
    # without % the value is plain equality: _ matches only itself
    assert names(ok(find(user.api, "category", {"name": "a_c"}))) == ["a_c"]


def test_filter_backslash_in_pattern_is_literal(user):
    for name in ("back\\slash", "backslash", "back\\\\slash"):
        new_category(user.api, name)
    body = ok(find(user.api, "category", {"name": "back\\s%"}))
    assert names(body) == ["back\\slash"]
    assert names(ok(find(user.api, "category", {"name": "back\\slash"}))) == ["back\\slash"]


def test_filter_combined_fields_must_all_match(user):
    new_category(user.api, "apple", description="fruit")
    new_category(user.api, "apricot", description="fruit")
    new_category(user.api, "asparagus", description="vegetable")
    new_category(user.api, "banana", description="fruit")
    body = ok(find(user.api, "category", {"name": "a%", "description": "fruit"}, sort="name"))
    assert names(body) == ["apple", "apricot"] and body["count"] == 2
    body = ok(find(user.api, "category", {"name": ["banana", "asparagus"],
                                          "description": "vegetable"}))
    assert names(body) == ["asparagus"]


def test_filter_on_message_fields_matches(user):
    lst = new_list(user.api)
    other = new_list(user.api, "other")
    new_message(user.api, lst["id"], subject="hello")
    new_message(user.api, lst["id"], subject="world")
    new_message(user.api, other["id"], subject="hello")
    body = ok(find(user.api, "message", {"list_id": lst["id"], "subject": "hello"}))
    assert body["count"] == 1
    assert body["items"][0]["list_id"] == lst["id"] and body["items"][0]["subject"] == "hello"
    assert ok(find(user.api, "message", {"uid": user.uid}))["count"] == 3


@pytest.mark.parametrize("value,expected", [
    ("café ☕ 日本", ["café ☕ 日本"]),
    ("%日本", ["café ☕ 日本"]),
    ("cafe", []),
    ("😀🎉", ["😀🎉"]),
    ("%🎉", ["😀🎉"]),
    ("🎉", []),
])
def test_filter_unicode_value_matches_exactly(reader, value, expected):
    assert names(ok(find(reader.api, "category", {"name": value}))) == expected


@pytest.mark.parametrize("value", [
    "' OR 1=1 --",
    "' OR '1'='1",
    "%' OR '1'='1",
    "x'); DROP TABLE category; --",
    '" OR ""="',
    "\\",
    "\\'",
    "%\\%",
    "%_%",
    "apple' --",
    "apple%' OR 'x'='x",
])
def test_filter_sql_like_string_matches_nothing(reader, value):
    body = ok(find(reader.api, "category", {"name": value}))
    assert body["items"] == [] and body["count"] == 0
    assert ok(find(reader.api, "category"))["count"] == len(READER_NAMES)  # nothing dropped


@pytest.mark.parametrize("filter_", [
    {"colour": "red"},
    {"": 1},
    {"__class__": "x"},
    {"rbac": "r"},  # computed, not a column
    {"password": "x"},  # not exposed on category
    {"name; DROP TABLE category": "x"},
    {"x" * 500: 1},
    {"name": "apple", "nope": 1},
])
def test_filter_unknown_field_returns_400_naming_filter(reader, filter_):
    assert_problem(find(reader.api, "category", filter_), "filter")


@pytest.mark.parametrize("raw", ["{", "{'name': 'x'}", '{"name": }', "name=apple",
                                 '{"name": "x"', "\x00", "{name: 1}"])
def test_filter_bad_json_returns_400_naming_filter(reader, raw):
    assert_problem(find(reader.api, "category", raw), "filter")


@pytest.mark.parametrize("raw", ["[]", '["name", "x"]', "1", '"name"', "null", "true"])
def test_filter_non_object_json_returns_400_naming_filter(reader, raw):
    assert_problem(find(reader.api, "category", raw), "filter")


@pytest.mark.parametrize("resource,filter_", [
    ("category", {"name": 5}),
    ("category", {"name": True}),
    ("category", {"name": 1.5}),
    ("category", {"name": [1, 2]}),
    ("category", {"name": ["a", 2]}),
    ("category", {"name": {"$ne": None}}),
    ("category", {"name": [["a"]]}),
    ("category", {"name": [{"a": 1}]}),
    ("category", {"created": "yesterday"}),
    ("category", {"created": "2024-13-01T00:00:00"}),
    ("category", {"created": 1700000000}),
    ("category", {"created": "%2024%"}),
    ("list", {"description": False}),
    ("message", {"subject": 0}),
])
def test_filter_wrong_type_for_column_returns_400_naming_filter(reader, resource, filter_):
    assert_problem(find(reader.api, resource, filter_), "filter")


def test_filter_too_many_values_returns_400(reader):
    # the spec caps filter at 2048 characters: as many values as fit are fine
    body = ok(find(reader.api, "category", {"name": ["apple"] + [f"v{i}" for i in range(200)]}))
    assert names(body) == ["apple"]
    assert_problem(find(reader.api, "category", {"name": ["v"] * 1001}), "filter")
    assert_problem(find(reader.api, "category", {"name": [f"v{i}" for i in range(999)]}),
                   "filter")


def test_filter_too_long_value_returns_400(reader):
    assert_problem(find(reader.api, "category", {"name": "x" * 2000}), "filter")
    assert_problem(find(reader.api, "category", "{" + " " * 9000 + "}"), "filter")


@pytest.mark.parametrize("raw", [
    json.dumps({"name": {"a": {"b": {"c": [1, {"d": None}]}}}}),
    json.dumps({"name": [[[[["x"]]]]]}),
    "[" * 5000 + "]" * 5000,
    "{\"name\": " + "[" * 3000 + "]" * 3000 + "}",
    json.dumps({"name": "\u0000"}),
    json.dumps({"name": "a\u0000b%"}),
    json.dumps({"name": "\ud800"}),  # a lone surrogate escaped in JSON
    json.dumps({"name": "%\udfff%"}),
    json.dumps({"name": "😀🎉 emoji"}),
    json.dumps({"name": "%😀%"}),
    json.dumps({"name": "\u202e\u200b\ufeff"}),
    json.dumps({"name": "Ω" * 1024}),
    json.dumps({"name": "x" * 1024}),
    json.dumps({"name": ["😀", "\u0000", "' OR 1=1 --"]}),
    json.dumps({"name": 10 ** 40}),
    json.dumps({"name": -1e308}),
    '{"name": NaN}',
    '{"name": Infinity}',
    json.dumps({"id": "x" * 1024}),
    json.dumps({"created": "0001-01-01T00:00:00+01:00"}),
    json.dumps({"created": "9999-12-31T23:59:59.999999-01:00"}),
    json.dumps({"created": "0001-01-01T00:00:00"}),
    json.dumps({"created": "9999-12-31T23:59:59.999999"}),
    json.dumps({"created": "2024-01-01"}),
    json.dumps({"created": "2024-01-01T00:00:00+14:00"}),
    json.dumps({"created": ["2024-01-01T00:00:00Z", None, "*"]}),
    json.dumps({"created": "*"}),
    json.dumps({"description": "*", "name": None}),
    json.dumps({"name": "*", "created": None}),
    json.dumps({"status": "disabled"}),
    json.dumps({"uid": ["*", "%"]}),
    "{}",
    "  {}  ",
    "",
])
def test_filter_weird_input_never_returns_500(reader, raw):
    resp = find(reader.api, "category", raw)
    assert resp.status_code in (200, 400, 404), resp.text
    if resp.status_code == 404:  # a reference filter naming no readable record
        assert_problem(resp, "filter", 404)
    elif resp.status_code == 400:
        assert_problem(resp, "filter")
    else:
        body = ok(resp)
        assert body["count"] <= len(READER_NAMES)
        assert set(names(body)) <= set(READER_NAMES)
    assert ok(find(reader.api, "category"))["count"] == len(READER_NAMES)  # still fine


# -- sort -----------------------------------------------------------------------------

def test_sort_string_field_orders_rows(user):
    for name in ("cherry", "apple", "date", "banana"):
        new_category(user.api, name)
    up = ["apple", "banana", "cherry", "date"]
    for sort, expected in (("name", up), ("name:asc", up), ("name:desc", up[::-1]),
                           ("name:DESC", up[::-1])):
        assert names(ok(find(user.api, "category", sort=sort))) == expected, sort


def test_sort_created_orders_rows_by_time(server, user):
    lst = new_list(user.api)
    base = datetime(2022, 5, 1, 12, 0, 0)
    when = [base + timedelta(minutes=m, microseconds=u)
            for m, u in ((5, 1), (1, 0), (3, 999999), (2, 500), (4, 7))]
    ids = insert_messages(server, user.uid, lst["id"], [{"created": w} for w in when])
    for sort, reverse in (("created", False), ("created:asc", False), ("created:desc", True)):
        expected = [i for _, i in sorted(zip(when, ids, strict=True), reverse=reverse)]
        body = ok(find(user.api, "message", filter=mine(user), sort=sort))
        assert ids_of(body["items"]) == expected, sort
        assert [m["created"] for m in body["items"]] == \
            [iso(w) for w in sorted(when, reverse=reverse)]


def test_sort_default_is_by_id(server, user):
    lst = new_list(user.api)
    insert_messages(server, user.uid, lst["id"], [{"subject": f"m{i}"} for i in range(12)])
    rank = db_id_order(server, user.uid)
    body = ok(find(user.api, "message", filter=mine(user)))
    assert ids_of(body["items"]) == sorted(rank, key=rank.get)
    desc = ok(find(user.api, "message", filter=mine(user), sort="id:desc"))["items"]
    assert ids_of(desc) == sorted(rank, key=rank.get, reverse=True)


@pytest.mark.parametrize("key", ["subject", "created"])
def test_sort_ties_are_broken_by_id_in_sort_direction(server, user, key):
    lst = new_list(user.api)
    same = datetime(2023, 1, 1)
    rows = [{"subject": "same", "created": same} for _ in range(8)]
    rows += [{"subject": "zz", "created": same + timedelta(days=1)} for _ in range(3)]
    ids = insert_messages(server, user.uid, lst["id"], rows)
    rank = db_id_order(server, user.uid)
    tied = sorted(ids[:8], key=rank.get)
    later = sorted(ids[8:], key=rank.get)
    for _ in range(2):  # deterministic: the same answer every time
        asc = ids_of(ok(find(user.api, "message", filter=mine(user), sort=key))["items"])
        assert asc == tied + later
        desc = ids_of(ok(find(user.api, "message", filter=mine(user),
                                  sort=f"{key}:desc"))["items"])
        assert desc == later[::-1] + tied[::-1]


def test_sort_nulls_come_last_in_both_directions(server, user):
    lst = new_list(user.api)
    subjects = ["b", None, "a", None, "c"]
    ids = insert_messages(server, user.uid, lst["id"], [{"subject": s} for s in subjects])
    rank = db_id_order(server, user.uid)
    nulls = sorted([i for i, s in zip(ids, subjects, strict=True) if s is None], key=rank.get)
    asc = ok(find(user.api, "message", filter=mine(user), sort="subject"))["items"]
    assert [m["subject"] for m in asc] == ["a", "b", "c", None, None]
    assert ids_of(asc)[3:] == nulls
    desc = ok(find(user.api, "message", filter=mine(user), sort="subject:desc"))["items"]
    assert [m["subject"] for m in desc] == ["c", "b", "a", None, None]
    assert ids_of(desc)[3:] == nulls[::-1]


@pytest.mark.parametrize("sort", ["colour", "colour:asc", "rbac", "password", "x" * 70])
def test_sort_unknown_field_returns_400_naming_sort(reader, sort):
    assert_problem(find(reader.api, "category", sort=sort), "sort")


@pytest.mark.parametrize("sort", ["name:up", "name:", ":asc", "name:asc:desc", "name desc",
                                  "-name", "name:descending", "NAME", "name:1",
                                  '["name","ASC"]', "", "x" * 200])
def test_sort_bad_value_or_direction_returns_400_naming_sort(reader, sort):
    assert_problem(find(reader.api, "category", sort=sort), "sort")


def test_sort_given_twice_returns_400(reader):
    resp = reader.api.get("/category", params=[("sort", "name"), ("sort", "name:desc")])
    assert_problem(resp, "sort")


# -- limit, offset and count ----------------------------------------------------------

@pytest.fixture(scope="module")
def thirty(server):
    """A user (nobody else writes for) with 30 messages, subjects m00..m29, in one list."""
    owner = make_user(server, prefix="thirty")
    lst = new_list(owner.api)
    ids = insert_messages(server, owner.uid, lst["id"],
                          [{"subject": f"m{i:02d}"} for i in range(30)])
    return owner, ids


def test_limit_default_is_per_page_default(server, thirty):
    user, _ = thirty
    assert server.settings.per_page_default == 25
    body = ok(find(user.api, "message", filter=mine(user)))
    assert len(body["items"]) == 25 and body["count"] == 30
    assert body["cursor_next"]


def test_limit_at_per_page_max_is_accepted(server, thirty):
    user, _ = thirty
    assert server.settings.per_page_max == 1000
    body = ok(find(user.api, "message", filter=mine(user), limit=1000))
    assert len(body["items"]) == 30 and "cursor_next" not in body
    assert len(ok(find(user.api, "message", filter=mine(user), limit=1))["items"]) == 1


@pytest.mark.parametrize("limit", [0, -1, 1001, 10 ** 6, 10 ** 30, "-0"])
def test_limit_out_of_range_returns_400_naming_limit(reader, limit):
    assert_problem(find(reader.api, "category", limit=limit), "limit")


@pytest.mark.parametrize("limit", ["abc", "1.5", "1e3", "", "10abc", "0x10", "[5]", "٣"])
def test_limit_not_an_integer_returns_400_naming_limit(reader, limit):
    resp = find(reader.api, "category", limit=limit)
    if limit == "٣":  # int() accepts Unicode digits: 3 is a valid limit
        assert resp.status_code in (200, 400), resp.text
        if resp.status_code == 400:
            assert_problem(resp, "limit")
        return
    assert_problem(resp, "limit")


def test_limit_given_twice_returns_400(reader):
    assert_problem(reader.api.get("/category", params=[("limit", "5"), ("limit", "6")]),
                   "limit")


def test_offset_pages_through_rows_in_order(thirty):
    user, _ = thirty
    everything = ok(find(user.api, "message", filter=mine(user), sort="subject",
                         limit=1000))["items"]
    assert [m["subject"] for m in everything] == [f"m{i:02d}" for i in range(30)]
    pages = [ok(find(user.api, "message", filter=mine(user), sort="subject", limit=7, offset=o))
             for o in range(0, 35, 7)]
    assert [len(p["items"]) for p in pages] == [7, 7, 7, 7, 2]
    assert [m for p in pages for m in p["items"]] == everything
    assert all(p["count"] == 30 for p in pages)


def test_offset_beyond_the_end_returns_no_items_and_full_count(thirty):
    user, _ = thirty
    body = ok(find(user.api, "message", filter=mine(user), offset=30))
    assert body["items"] == [] and body["count"] == 30 and "cursor_next" not in body
    body = ok(find(user.api, "message", filter=mine(user), offset=10 ** 6))
    assert body["items"] == [] and body["count"] == 30


@pytest.mark.parametrize("offset", [-1, "x", "1.5", ""])
def test_offset_invalid_returns_400_naming_offset(reader, offset):
    assert_problem(find(reader.api, "category", offset=offset), "offset")


@pytest.mark.parametrize("offset", [2 ** 31, 2 ** 63 - 1, 2 ** 63, 10 ** 30])
def test_offset_huge_returns_empty_page_or_400_never_500(thirty, offset):
    user, _ = thirty
    resp = find(user.api, "message", filter=mine(user), offset=offset)
    assert resp.status_code in (200, 400), resp.text
    if resp.status_code == 400:
        assert_problem(resp, "offset")
    else:
        assert ok(resp)["items"] == []


def test_count_is_all_matching_rows_independent_of_limit(server, user):
    lst = new_list(user.api)
    insert_messages(server, user.uid, lst["id"],
                    [{"subject": "keep" if i % 3 else "drop"} for i in range(36)])
    for limit in (1, 5, 24, 1000):
        body = ok(find(user.api, "message", {"subject": "keep"}, limit=limit))
        assert body["count"] == 24
        assert len(body["items"]) == min(limit, 24)
    body = ok(find(user.api, "message", limit=3, offset=30))
    assert body["count"] == 36 and len(body["items"]) == 3
    assert ok(find(user.api, "message", {"subject": "none"}))["count"] == 0


def test_count_stays_the_same_on_every_cursor_page(thirty):
    user, _ = thirty
    items, pages = walk(user.api, "message", {"filter": json.dumps({"subject": "m1%"})},
                        limit=3)
    assert len(items) == 10 and len(pages) == 4
    assert {p["count"] for p in pages} == {10}


# -- keyset paging with cursor_next ---------------------------------------------------

THOUSAND = 1000
BASE_TIME = datetime(2021, 3, 4, 5, 6, 7, 123456)


@pytest.fixture(scope="module")
def big(server):
    """One user with 1,000 messages: duplicate subjects, ~1/9 NULL subjects, and
    created times shared by groups of three rows (so ties are broken by id)."""
    owner = make_user(server, prefix="big")
    lst = new_list(owner.api, "big")
    rng = random.Random(20240611)
    rows = []
    for i in range(THOUSAND):
        subject = None if i % 9 == 0 else f"s{rng.randrange(60):02d}x"
        created = BASE_TIME + timedelta(seconds=(i // 3) * 7, microseconds=(i // 3) * 13)
        rows.append({"subject": subject, "created": created})
    rng.shuffle(rows)
    ids = insert_messages(server, owner.uid, lst["id"], rows)
    data = dict(zip(ids, rows, strict=True))
    return owner, data, db_id_order(server, owner.uid)


#: long text (message content) sorts on its first 255 characters, then by id
TEXT_SORT_PREFIX = 255


def expected_order(data, rank, sort: str) -> list[str]:
    field, _, direction = sort.partition(":")
    desc = direction == "desc"
    ids = list(data)
    if field == "id":
        return sorted(ids, key=rank.get, reverse=desc)

    def key(i):
        value = data[i][field]
        return value[:TEXT_SORT_PREFIX] if field == "content" else value

    nulls = sorted((i for i in ids if data[i][field] is None), key=rank.get, reverse=desc)
    valued = sorted((i for i in ids if data[i][field] is not None),
                    key=lambda i: (key(i), rank[i]), reverse=desc)
    return valued + nulls


def check_walk(items, data, expected):
    got = ids_of(items)
    assert len(got) == len(set(got)), "a row was repeated"
    assert set(got) == set(data), "a row was skipped (or a stranger's row shown)"
    assert got == expected
    for item in items:
        row = data[item["id"]]
        assert item["subject"] == row["subject"]
        assert item["created"] == iso(row["created"])


@pytest.mark.parametrize("sort", ["id", "id:desc", "subject:desc", "subject", "created",
                                  "created:desc"])
def test_cursor_next_visits_every_row_once_in_order(big, sort):
    owner, data, rank = big
    items, pages = walk(owner.api, "message", {"sort": sort})
    assert len(pages) == -(-THOUSAND // PAGE)
    assert {p["count"] for p in pages} == {THOUSAND}
    check_walk(items, data, expected_order(data, rank, sort))


def test_cursor_next_subject_desc_has_duplicates_and_nulls_last(big):
    owner, _data, _rank = big
    items, _ = walk(owner.api, "message", {"sort": "subject:desc"})
    subjects = [m["subject"] for m in items]
    valued = [s for s in subjects if s is not None]
    assert len(valued) < len(subjects) and len(set(valued)) < len(valued)
    first_null = subjects.index(None)
    assert all(s is None for s in subjects[first_null:])
    assert valued == sorted(valued, reverse=True)


def test_cursor_next_matches_one_big_page(big):
    owner, _, _ = big
    for sort in ("id", "subject:desc", "created"):
        whole = ok(find(owner.api, "message", sort=sort, limit=1000))
        assert "cursor_next" not in whole
        items, _ = walk(owner.api, "message", {"sort": sort})
        assert ids_of(items) == ids_of(whole["items"])


def test_cursor_next_with_filter_pages_only_matching_rows(big):
    owner, data, rank = big
    flt = {"subject": ["s01x", "s02x", "s03x", None]}
    want = {i: r for i, r in data.items() if r["subject"] in flt["subject"]}
    items, pages = walk(owner.api, "message", {"sort": "subject:desc",
                                               "filter": json.dumps(flt)}, limit=7)
    assert {p["count"] for p in pages} == {len(want)}
    check_walk(items, want, expected_order(want, rank, "subject:desc"))


def test_cursor_alone_continues_the_same_query(big):
    owner, data, rank = big
    flt = {"subject": "s1%"}
    want = {i: r for i, r in data.items() if (r["subject"] or "").startswith("s1")}
    items, pages = walk(owner.api, "message", {"sort": "created:desc",
                                               "filter": json.dumps(flt)},
                        limit=11, repeat=False)
    assert len(pages) > 2
    assert {p["count"] for p in pages} == {len(want)}
    check_walk(items, want, expected_order(want, rank, "created:desc"))


def test_cursor_alone_keeps_the_first_pages_size(big):
    owner, data, rank = big
    first = ok(find(owner.api, "message", sort="created", limit=7))
    second = ok(find(owner.api, "message", cursor_next=first["cursor_next"]))
    assert ids_of(first["items"]) + ids_of(second["items"]) == \
        expected_order(data, rank, "created")[:14]
    third = ok(find(owner.api, "message", cursor_next=second["cursor_next"], limit=3))
    assert len(third["items"]) == 3


def test_cursor_with_equivalent_sort_spelling_is_accepted(big):
    owner, _, _ = big
    first = ok(find(owner.api, "message", sort="subject", limit=5))
    resp = find(owner.api, "message", sort="subject:asc", limit=5,
                cursor_next=first["cursor_next"])
    assert ok(resp)["items"][0]["id"] not in ids_of(first["items"])


def test_cursor_last_page_has_no_cursor_next(server, user):
    lst = new_list(user.api)
    insert_messages(server, user.uid, lst["id"], [{"subject": "x"}] * (2 * PAGE))
    items, pages = walk(user.api, "message", {"sort": "subject"})
    assert len(items) == 2 * PAGE and len(pages) == 2  # no empty third page
    assert "cursor_next" in pages[0] and "cursor_next" not in pages[1]
    body = ok(find(user.api, "message", limit=2 * PAGE))
    assert "cursor_next" not in body
    body = ok(find(user.api, "message", limit=2 * PAGE - 1))
    assert body["cursor_next"]


def test_cursor_next_absent_when_nothing_matches(reader):
    body = ok(find(reader.api, "message", {"subject": "nothing"}))
    assert body == {"items": [], "count": 0}


@pytest.mark.parametrize("sort", ["id", "subject:desc", "created"])
def test_cursor_rows_inserted_and_trashed_between_pages_neither_skip_nor_repeat(
        server, user, sort):
    lst = new_list(user.api)
    rng = random.Random(sort)
    rows = [{"subject": None if i % 7 == 0 else f"s{rng.randrange(20):02d}x",
             "created": BASE_TIME + timedelta(seconds=i // 2)} for i in range(200)]
    ids = insert_messages(server, user.uid, lst["id"], rows)
    data = dict(zip(ids, rows, strict=True))
    rank = db_id_order(server, user.uid)
    expected = expected_order(data, rank, sort)
    trashed = []

    def between(page_no, body):
        # new rows anywhere in the order (subjects above, below and equal; NULLs;
        # random ids; created now, i.e. after every original row) ...
        for subject in ("a", "s10x", "zzz", None):
            fields = {"subject": subject} if subject else {}
            new_message(user.api, lst["id"], **fields)
        # ... and the row the cursor points at is trashed
        tail = body["items"][-1]["id"]
        assert user.api.delete(f"/message/{tail}").status_code == 200
        trashed.append(tail)

    items, pages = walk(user.api, "message", {"sort": sort}, between=between)
    got = ids_of(items)
    assert len(got) == len(set(got)), "a row was repeated"
    originals = [i for i in got if i in data]
    assert originals == expected, "an original row was skipped or out of order"
    assert set(trashed) <= set(got)
    assert len(pages) >= 200 // PAGE


def test_cursor_with_different_filter_returns_400(big):
    owner, _, _ = big
    first = ok(find(owner.api, "message", {"subject": "s1%"}, sort="subject", limit=5))
    for other in ({"subject": "s2%"}, {}, {"subject": "s1%", "uid": owner.uid}):
        resp = find(owner.api, "message", other, sort="subject", limit=5,
                    cursor_next=first["cursor_next"])
        assert_problem(resp, "cursor_next")
    # the same filter, keys in another order / spacing, is the same query
    resp = find(owner.api, "message", '{ "subject" : "s1%" }', sort="subject", limit=5,
                cursor_next=first["cursor_next"])
    assert ok(resp)["count"] == first["count"]


@pytest.mark.parametrize("sort", ["subject:desc", "created", "id"])
def test_cursor_with_different_sort_returns_400(big, sort):
    owner, _, _ = big
    first = ok(find(owner.api, "message", sort="subject", limit=5))
    resp = find(owner.api, "message", sort=sort, limit=5, cursor_next=first["cursor_next"])
    assert_problem(resp, "cursor_next")


def test_cursor_from_another_resource_returns_400(reader):
    first = ok(find(reader.api, "category", limit=1))
    resp = find(reader.api, "list", cursor_next=first["cursor_next"])
    assert_problem(resp, "cursor_next")


def _tampered(token: str) -> list[str]:
    # change a character's top bit: the last character of unpadded base64 also carries
    # padding bits, which a low-bit change (A -> B) may only touch, leaving the bytes as
    # they were
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    out = []
    for pos in (0, len(token) // 2, len(token) - 1):
        c = token[pos]
        other = b64[b64.index(c) ^ 32] if c in b64 else "A"
        out.append(token[:pos] + other + token[pos + 1:])
    out.append(token[:-4])  # truncated
    out.append(token + "AAAA")  # extended
    out.append(token[20:])  # signature cut off
    return out


def test_cursor_tampered_returns_400_naming_cursor_next(big):
    owner, _, _ = big
    token = ok(find(owner.api, "message", sort="subject", limit=5))["cursor_next"]
    for bad in _tampered(token):
        if bad == token:
            continue
        resp = find(owner.api, "message", sort="subject", limit=5, cursor_next=bad)
        assert_problem(resp, "cursor_next")


@pytest.mark.parametrize("garbage", [
    "garbage", "!!!!", "====", "A", "é", "😀", "\x00", "null", "{}", "x" * 4000,
    # well-formed base64 of well-formed state, but not signed by the server
    "AAAAAAAAAAAAAAAAAAAAAHsicyI6ImlkOmFzYyIsImYiOnt9LCJrIjpudWxsLCJpIjoiIn0",
    "eyJzIjoiaWQ6YXNjIiwiZiI6e30sImsiOm51bGwsImkiOiIifQ",
])
def test_cursor_garbage_returns_400_naming_cursor_next(reader, garbage):
    assert_problem(find(reader.api, "message", cursor_next=garbage), "cursor_next")


def test_cursor_too_long_returns_400_naming_cursor_next(reader):
    assert_problem(find(reader.api, "message", cursor_next="A" * 5000), "cursor_next")


def test_cursor_combined_with_offset_returns_400(big):
    owner, _, _ = big
    token = ok(find(owner.api, "message", limit=5))["cursor_next"]
    resp = find(owner.api, "message", limit=5, offset=5, cursor_next=token)
    body = assert_problem(resp, "offset")
    assert "cursor_next" in body["detail"]


def test_cursor_of_another_user_shows_only_callers_rows(big, reader):
    owner, _, _ = big
    token = ok(find(owner.api, "message", limit=5))["cursor_next"]
    body = ok(find(reader.api, "message", cursor_next=token))
    assert body["items"] == [] and body["count"] == 0


# -- two users ------------------------------------------------------------------------

def test_find_other_user_never_sees_users_rows(user, other_user):
    new_category(user.api, "mine")
    lst = new_list(user.api, "mine", description="private")
    new_message(user.api, lst["id"], subject="secret")
    for resource in ("category", "list", "message"):
        mine = ok(find(user.api, resource))
        assert mine["count"] == 1
        theirs = ok(find(other_user.api, resource))
        assert theirs == {"items": [], "count": 0}
        for flt in ({"uid": user.uid}, {"uid": "*"}, {"uid": [user.uid, other_user.uid]},
                    {"id": mine["items"][0]["id"]}, {"uid": "%"},
                    {"uid": user.uid[:-3] + "%"}):
            assert_sees_nothing(find(other_user.api, resource, flt), next(iter(flt)))
        for flt in ({"uid": "*"}, {"uid": "%"}, {"id": mine["items"][0]["id"]}):
            assert ok(find(other_user.api, resource, flt))["count"] == 0
        assert ok(find(user.api, resource, {"uid": user.uid}))["count"] == 1


def test_find_each_user_counts_only_own_rows(user, other_user):
    for i in range(3):
        new_category(user.api, f"u{i}")
    for i in range(5):
        new_category(other_user.api, f"o{i}")
    new_category(other_user.api, "u0")  # same name, other owner
    assert ok(find(user.api, "category"))["count"] == 3
    assert ok(find(other_user.api, "category"))["count"] == 6
    assert ok(find(user.api, "category", {"name": "u0"}))["count"] == 1
    assert_sees_nothing(find(other_user.api, "category", {"uid": user.uid}), "uid")


# -- trashcan -------------------------------------------------------------------------

def test_find_trashed_rows_disappear_from_find_and_count(user):
    cats = [new_category(user.api, f"c{i}") for i in range(5)]
    assert user.api.delete(f"/category/{cats[0]['id']}").status_code == 200
    assert user.api.delete(f"/category/{cats[1]['id']},{cats[2]['id']}").status_code == 200
    body = ok(find(user.api, "category", sort="name"))
    assert names(body) == ["c3", "c4"] and body["count"] == 2
    for flt in ({"name": "c0"}, {"id": cats[0]["id"]}, {"status": "disabled"},
                {"name": ["c0", "c1", "c2"]}):
        assert ok(find(user.api, "category", flt)) == {"items": [], "count": 0}
    assert ok(find(user.api, "category", {"status": "active"}))["count"] == 2


def test_find_trashed_messages_disappear_from_cursor_pages(server, user):
    lst = new_list(user.api)
    ids = insert_messages(server, user.uid, lst["id"], [{"subject": "t"}] * 10)
    for id_ in ids[:4]:
        assert user.api.delete(f"/message/{id_}").status_code == 200
    items, pages = walk(user.api, "message", {"sort": "subject"}, limit=3)
    assert set(ids_of(items)) == set(ids[4:])
    assert {p["count"] for p in pages} == {6}


@pytest.mark.parametrize("size", [1500, 20000])
def test_cursor_sort_by_long_text_field_pages_every_row_once(server, user, size):
    lst = new_list(user.api)
    # long contents: three different leading letters, each followed by a long run
    # shared past the first 255 characters (so those tie, and id decides); some NULL
    contents = [("abc"[n % 3] * size + f"{n % 4}") if n % 5 else None for n in range(12)]
    ids = insert_messages(server, user.uid, lst["id"], [{"content": c} for c in contents])
    data = {i: {"content": c} for i, c in zip(ids, contents, strict=True)}
    rank = db_id_order(server, user.uid)
    for sort in ("content", "content:desc"):
        items, pages = walk(user.api, "message", {"sort": sort}, limit=2)
        assert len(pages) == 6
        assert all(len(p.get("cursor_next", "")) <= 4096 for p in pages)
        assert ids_of(items) == expected_order(data, rank, sort), sort


def test_cursor_with_long_filter_still_pages(thirty):
    owner, ids = thirty
    values = [f"m{i:02d}" for i in range(30)] + [f"nomatch{i:017d}" for i in range(62)]
    raw = json.dumps({"subject": values})
    assert 1800 < len(raw) <= 2048  # near the spec's maxLength for filter
    items, pages = walk(owner.api, "message", {"filter": raw, "sort": "subject"}, limit=10)
    assert len(pages) == 3 and sorted(ids_of(items)) == sorted(ids)
