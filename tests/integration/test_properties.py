"""Property-based tests (Hypothesis) of filter, sort and cursor_next over HTTP.

Whatever the input: never a 5xx, never a row the caller may not read, never a change to
the data (no injection), and paging returns each readable row at most once.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from helpers import make_user

FIELDS = ["id", "list_id", "subject", "content", "privacy", "uid", "status", "created",
          "modified", "author", "rbac", "nosuchfield", "subject_ne", "created_gte", "q",
          "subject_like", "id; DROP TABLE message", "privacy' OR '1'='1"]
NASTY = ["' OR 1=1 --", "%", "%%", "_", "\\", "\\%", "*", "null", "secret", "public",
         "x-", "'; DELETE FROM message; --", "\" OR \"\"=\"", "1e309", "2020-01-01T00:00:00Z",
         "\u00e9\u00e8", "\U0001f600", "a" * 300, ")", "0x00", "NULL"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(NASTY), st.text(max_size=40))
values = st.one_of(scalars, st.lists(scalars, max_size=5),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=2))
filters = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
sorts = st.one_of(st.none(), st.sampled_from(
    ["id", "subject", "subject:desc", "created:asc", "privacy:DESC", "uid", "content",
     "author", "nosuch", "subject:sideways", "subject;drop", "", ":", "id:desc"]),
    st.text(alphabet=string.ascii_lowercase + ":_", max_size=20))
HYPO = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def world(server):
    """Two owners with lists of messages of every privacy; a reader who owns a little."""
    owner = make_user(server)
    reader = make_user(server)
    lists = []
    for privacy in ("public", "member", "secret"):
        lst = owner.api.post("/list", json={"name": f"p-{privacy}", "privacy": privacy}).json()
        lists.append(lst["id"])
        for i, mp in enumerate(["public", "invitee", "member", "manager", "secret"] * 3):
            owner.api.post("/message", json={"list_id": lst["id"], "subject": f"{mp} {i}",
                                             "content": "body %_ text", "privacy": mp})
    mine = reader.api.post("/list", json={"name": "reader's"}).json()
    for i in range(4):
        reader.api.post("/message", json={"list_id": mine["id"], "subject": f"mine {i}"})
    models = server.services.models
    with server.services.db.session() as s:
        rows = s.execute(select(models.Message.id, models.Message.uid,
                                models.Message.privacy)).all()
    readable = {r.id for r in rows if r.uid == reader.uid or r.privacy == "public"}
    return server, reader, readable


def _total_messages(server) -> int:
    models = server.services.models
    with server.services.db.session() as s:
        return s.execute(select(func.count()).select_from(models.Message)).scalar_one()


def _check(resp, readable):
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        assert resp.status_code in (400, 404), resp.text
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        return None
    body = resp.json()
    ids = [item["id"] for item in body["items"]]
    assert set(ids) <= readable, "a row the caller may not read"
    assert len(ids) == len(set(ids))
    assert body["count"] <= len(readable)
    return body


@HYPO
@given(flt=filters, sort=sorts, limit=st.one_of(st.none(), st.integers(-5, 2000)))
def test_find_any_filter_and_sort_is_safe(world, flt, sort, limit):
    server, reader, readable = world
    before = _total_messages(server)
    params = {"filter": json.dumps(flt)}
    if sort is not None:
        params["sort"] = sort
    if limit is not None:
        params["limit"] = limit
    _check(reader.api.get("/message", params=params), readable)
    assert _total_messages(server) == before


@HYPO
@given(sort=st.sampled_from(["id", "subject", "subject:desc", "created", "content:desc"]),
       limit=st.integers(1, 7),
       flt=st.sampled_from([{}, {"privacy": "public"}, {"subject": "%1%"},
                            {"q": "public"}, {"content": "%\\_%"}]))
def test_paging_returns_each_readable_row_once(world, sort, limit, flt):
    _server, reader, readable = world
    seen: list[str] = []
    params = {"filter": json.dumps(flt), "sort": sort, "limit": limit}
    body = _check(reader.api.get("/message", params=params), readable)
    total = body["count"]
    while True:
        seen += [i["id"] for i in body["items"]]
        if "cursor_next" not in body:
            break
        body = _check(reader.api.get("/message", params={"cursor_next": body["cursor_next"]}),
                      readable)
    assert len(seen) == len(set(seen)) == total


@HYPO
@given(token=st.one_of(st.text(max_size=200), st.binary(max_size=100).map(
    lambda b: b.hex()), st.sampled_from(["", "=", "eyJ9", "A" * 5000, "' OR 1=1 --"])))
def test_garbage_cursor_is_400_never_500(world, token):
    _server, reader, readable = world
    resp = reader.api.get("/message", params={"cursor_next": token})
    assert resp.status_code in (200, 400), resp.text
    if resp.status_code == 200:  # an empty token means "first page"
        _check(resp, readable)
