"""OR/AND groups in filters and sorts over several fields, over HTTP.

Hypothesis checks them against a brute-force reading of the same rows: the count equals
the readable rows matching the predicate, and paging with ``cursor_next`` over several
sort keys returns every row once, in the order one big page has.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from helpers import assert_problem, make_user

PRIVACY = ["public", "invitee", "member", "manager", "secret"]
HYPO = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def world(server):
    """An owner's lists with messages of every privacy (some without content); a reader
    who may read the public ones and their own."""
    owner = make_user(server)
    reader = make_user(server)
    lists = []
    for privacy in ("public", "secret"):
        lst = owner.api.post("/list", json={"name": f"g-{privacy}", "privacy": privacy}).json()
        lists.append(lst["id"])
        for i in range(12):
            body = {"list_id": lst["id"], "subject": f"s{i % 4}", "privacy": PRIVACY[i % 5]}
            if i % 3:
                body["content"] = f"c{i % 2}"
            assert owner.api.post("/message", json=body).status_code == 201
    mine = reader.api.post("/list", json={"name": "reader"}).json()
    lists.append(mine["id"])
    for i in range(5):
        reader.api.post("/message", json={"list_id": mine["id"], "subject": f"s{i % 3}",
                                          "privacy": PRIVACY[i % 5]})
    model = server.services.models.Message
    with server.services.db.session() as s:
        rows = s.execute(select(model.id, model.uid, model.privacy, model.subject,
                                model.content, model.list_id)
                         .where(model.list_id.in_(lists))).mappings().all()
    readable = [dict(r) for r in rows if r["uid"] == reader.uid or r["privacy"] == "public"]
    return reader, lists, readable


def _matches(row: dict, flt: dict) -> bool:
    """The brute-force predicate: the filter language this test generates."""
    for name, value in flt.items():
        if name == "or":
            if not any(_matches(row, f) for f in value):
                return False
        elif name == "and":
            if not all(_matches(row, f) for f in value):
                return False
        elif isinstance(value, list):
            if row[name] not in value:
                return False
        elif row[name] != value:
            return False
    return True


def _leaf(lists):
    return st.one_of(
        st.builds(lambda v: {"privacy": v}, st.sampled_from(PRIVACY)),
        st.builds(lambda v: {"privacy": v}, st.lists(st.sampled_from(PRIVACY), min_size=1,
                                                      max_size=3, unique=True)),
        st.builds(lambda v: {"subject": v}, st.sampled_from(["s0", "s1", "s2", "s3"])),
        st.builds(lambda v: {"content": v}, st.sampled_from(["c0", "c1", None])),
        st.builds(lambda v: {"list_id": v}, st.sampled_from(lists)),
    )


def _filters(lists):
    groups = st.recursive(
        _leaf(lists),
        lambda inner: st.builds(lambda kind, items: {kind: items},
                                st.sampled_from(["or", "and"]),
                                st.lists(inner, min_size=1, max_size=3)),
        max_leaves=6)
    # a group beside a plain condition: both must hold
    return st.one_of(groups, st.builds(lambda g, leaf: {**leaf, **g}, groups, _leaf(lists)))


def _depth(flt) -> int:
    inner = [_depth(f) for k in ("or", "and") for f in flt.get(k, [])]
    return 1 + max(inner) if inner else 0


@HYPO
@given(data=st.data())
def test_or_filters_count_what_brute_force_finds(world, data):
    reader, lists, readable = world
    flt = data.draw(_filters(lists))
    resp = reader.api.get("/message", params={"filter": json.dumps(flt), "limit": 100})
    if _depth(flt) > 4:
        assert resp.status_code == 400 and "nested too deep" in resp.text, resp.text
        return
    assert resp.status_code == 200, resp.text
    expected = {r["id"] for r in readable if _matches(r, flt)}
    body = resp.json()
    assert body["count"] == len(expected)
    assert {i["id"] for i in body["items"]} == expected


SORTS = ["privacy:desc,subject", "subject,content:desc", "content,privacy:desc,subject:desc",
         "subject:desc,id", "list_id,privacy,content"]


def _key(row: dict, field: str, descending: bool):
    value = row[field]
    # nulls last in both directions
    return (value is None, "" if value is None else value)


@HYPO
@given(sort=st.sampled_from(SORTS), limit=st.integers(1, 6),
       flt=st.sampled_from([{}, {"or": [{"privacy": "public"}, {"subject": "s1"}]},
                            {"content": None}]))
def test_cursor_over_several_keys_visits_each_row_once_in_order(world, sort, limit, flt):
    reader, lists, readable = world
    flt = {**flt, "list_id": lists}
    whole = reader.api.get("/message", params={"filter": json.dumps(flt), "sort": sort,
                                               "limit": 100}).json()
    order = [i["id"] for i in whole["items"]]
    assert len(order) == whole["count"]
    # the big page is sorted by the keys (ties by id are the database's to order)
    keys = [(f, d == "desc") for f, _, d in (k.partition(":") for k in sort.split(","))]
    by_id = {r["id"]: r for r in readable}
    for a, b in itertools.pairwise(order):
        for field, descending in keys:
            if field in ("id", "list_id"):
                # ids mix cases: their order is the database collation's (MariaDB's is
                # case-insensitive), so the check stops at them
                break
            ka, kb = _key(by_id[a], field, descending), _key(by_id[b], field, descending)
            if ka != kb:
                assert (ka[0] < kb[0]) or (ka[0] == kb[0] and
                                           ((ka[1] > kb[1]) if descending else (ka[1] < kb[1])))
                break
    seen: list[str] = []
    body = reader.api.get("/message", params={"filter": json.dumps(flt), "sort": sort,
                                              "limit": limit}).json()
    while True:
        seen += [i["id"] for i in body["items"]]
        if "cursor_next" not in body:
            break
        resp = reader.api.get("/message", params={"cursor_next": body["cursor_next"]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
    assert seen == order


def test_cursor_over_several_keys_stays_exact_under_inserts(server, world):
    reader, lists, _ = world
    flt = json.dumps({"list_id": lists[2]})
    first = reader.api.get("/message", params={"filter": flt, "sort": "subject:desc,privacy",
                                               "limit": 2}).json()
    # a row sorting before the cursor and one after it appear meanwhile
    added = []
    for subject in ("s9", "a0"):
        resp = reader.api.post("/message", json={"list_id": lists[2], "subject": subject})
        assert resp.status_code == 201
        added.append(resp.json()["id"])
    seen = [i["subject"] for i in first["items"]]
    body = first
    while "cursor_next" in body:
        body = reader.api.get("/message", params={"cursor_next": body["cursor_next"]}).json()
        seen += [i["subject"] for i in body["items"]]
    assert "s9" not in seen and seen[-1] == "a0"
    assert len(seen) == 6
    # leave the module's world as it was for the tests after this one
    assert reader.api.delete(f"/message/{','.join(added)}").status_code == 200


def test_bad_groups_and_sorts_are_400_naming_the_parameter(world):
    reader, _, _ = world
    deep: dict = {"privacy": "public"}
    for _ in range(5):
        deep = {"or": [deep]}
    for flt in ({"or": []}, {"or": {"privacy": "public"}}, {"or": ["public"]}, deep,
                {"or": [{"nosuch": 1}]}, {"and": [{"privacy": {"x": 1}}]},
                {"or": [{"privacy": p} for p in PRIVACY * 50]}):
        resp = reader.api.get("/message", params={"filter": json.dumps(flt)})
        assert resp.status_code == 400, (flt, resp.text)
        assert all(k.startswith("filter") for k in resp.json()["errors"]), resp.text
    for sort in ("subject,subject", "subject,nosuch", "a,b,c,d", "subject:up,id"):
        assert_problem(reader.api.get("/message", params={"sort": sort}), 400, "sort")


# -- grouped counts (GET /{resource}/groups) ---------------------------------------------

def test_grouped_counts_equal_the_readable_rows(world):
    reader, lists, readable = world
    flt = {"list_id": lists}
    resp = reader.api.get("/message/groups", params={"group_by": "privacy,list_id",
                                                     "filter": json.dumps(flt)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    got = {(g["privacy"], g["list_id"]): g["count"] for g in body["groups"]}
    expected: dict = {}
    for r in readable:
        expected[(r["privacy"], r["list_id"])] = expected.get((r["privacy"], r["list_id"]), 0) + 1
    assert got == expected
    assert body["count"] == len(readable)
    # the same filters as find, OR groups included
    flt = {"list_id": lists, "or": [{"privacy": "public"}, {"subject": "s1"}]}
    body = reader.api.get("/message/groups", params={"group_by": "subject",
                                                     "filter": json.dumps(flt)}).json()
    brute: dict = {}
    for r in readable:
        if r["privacy"] == "public" or r["subject"] == "s1":
            brute[r["subject"]] = brute.get(r["subject"], 0) + 1
    assert {g["subject"]: g["count"] for g in body["groups"]} == brute


def test_grouped_aggregates_and_limits(world):
    reader, lists, _readable = world
    body = reader.api.get("/message/groups", params={
        "group_by": "list_id", "aggregate": "min:created,max:created",
        "filter": json.dumps({"list_id": lists}), "limit": 1}).json()
    assert len(body["groups"]) == 1 and body["truncated"] is True
    group = body["groups"][0]
    assert group["min_created"] <= group["max_created"]


@pytest.mark.parametrize("params,field", [
    ({"group_by": "nosuch"}, "group_by"),
    ({"group_by": "subject,subject"}, "group_by"),
    ({"group_by": "subject", "aggregate": "sum:subject"}, "aggregate"),
    ({"group_by": "subject", "aggregate": "avg:created"}, "aggregate"),
    ({"group_by": "subject", "filter": "{\"nosuch\": 1}"}, "filter"),
    ({}, "group_by"),
])
def test_bad_group_requests_are_400(world, params, field):
    reader, _, _ = world
    assert_problem(reader.api.get("/message/groups", params=params), 400, field)


def test_anonymous_groups_are_401(server):
    assert server.anonymous().get("/message/groups", params={"group_by": "privacy"}) \
        .status_code == 401
