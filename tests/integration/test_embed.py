"""embed=: related records in one response, each under its own resource's read rules."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from helpers import assert_problem, make_user


@pytest.fixture(scope="module")
def world(server):
    """An owner's public list (open to all) and secret list; a reader who is a member of
    neither, and a member of the secret one."""
    owner = make_user(server)
    reader = make_user(server)
    member = make_user(server)
    public = owner.api.post("/list", json={"name": "open", "privacy": "public"}).json()
    secret = owner.api.post("/list", json={"name": "closed"}).json()
    assert owner.api.post("/listmember", json={"list_id": secret["id"], "uid": member.uid,
                                                "authorization": "member"}).status_code == 201
    msgs = {}
    for lst in (public, secret):
        for i, privacy in enumerate(["public", "member", "secret", "public", "member",
                                     "public", "member", "public"]):
            resp = owner.api.post("/message", json={"list_id": lst["id"], "privacy": privacy,
                                                    "subject": f"{lst['name']} {i}"})
            msgs.setdefault(lst["id"], []).append(resp.json())
    return server, owner, reader, member, public, secret, msgs


def _statements(server, call):
    seen = []

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(server.services.db.engine, "before_cursor_execute", note)
    try:
        resp = call()
    finally:
        event.remove(server.services.db.engine, "before_cursor_execute", note)
    return resp, seen


def test_to_one_embed_follows_the_embedded_resource_rules(world):
    _server, _owner, reader, member, public, secret, msgs = world
    # the reader may read public messages of the secret list, not the list itself
    resp = reader.api.get("/message", params={
        "filter": json.dumps({"list_id": [public["id"], secret["id"]]}), "embed": "list",
        "limit": 100})
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert items and all(i["privacy"] == "public" for i in items)
    for item in items:
        if item["list_id"] == public["id"]:
            assert item["list"]["id"] == public["id"] and item["list"]["name"] == "open"
            assert item["list"]["rbac"] == reader.api.get(f"/list/{public['id']}").json()["rbac"]
        else:
            assert item["list"] is None, "a list the caller may not read was embedded"
    one = member.api.get(f"/message/{msgs[secret['id']][1]['id']}", params={"embed": "list"})
    assert one.json()["list"]["name"] == "closed"
    plain = member.api.get(f"/message/{msgs[secret['id']][1]['id']}")
    assert "list" not in plain.json()
    assert plain.headers["ETag"] != one.headers["ETag"]


def test_to_many_embed_gives_the_newest_readable_records(world):
    _server, owner, reader, member, public, secret, msgs = world
    body = member.api.get(f"/list/{secret['id']}", params={"embed": "messages"}).json()
    readable = [m for m in msgs[secret["id"]] if m["privacy"] != "secret"]
    expected = [m["id"] for m in sorted(readable, key=lambda m: m["created"],
                                        reverse=True)[:5]]
    assert [m["id"] for m in body["messages"]] == expected
    assert all(m["privacy"] != "secret" for m in body["messages"])
    # the reader sees the public list and only its public messages
    found = reader.api.get("/list", params={"filter": json.dumps({"id": public["id"]}),
                                            "embed": "messages"}).json()
    embedded = found["items"][0]["messages"]
    assert embedded and all(m["privacy"] == "public" for m in embedded)
    assert len(embedded) == 4
    # the owner sees everything, five at most
    assert len(owner.api.get(f"/list/{public['id']}",
                             params={"embed": "messages"}).json()["messages"]) == 5


FRESH = {"Cache-Control": "no-cache"}  # a count counted anew, not a kept one


def test_embedding_costs_the_same_statements_for_any_page_size(world):
    server, owner, _reader, _member, public, secret, _msgs = world
    flt = json.dumps({"list_id": [public["id"], secret["id"]]})
    small, few = _statements(server, lambda: owner.api.get("/message", params={
        "filter": flt, "embed": "list", "limit": 2}, headers=FRESH))
    large, many = _statements(server, lambda: owner.api.get("/message", params={
        "filter": flt, "embed": "list", "limit": 16}, headers=FRESH))
    assert small.status_code == large.status_code == 200
    assert len(large.json()["items"]) == 16
    assert len(few) == len(many), (few, many)
    lists, lists_seen = _statements(server, lambda: owner.api.get("/list", params={
        "filter": json.dumps({"uid": owner.uid}), "embed": "messages", "limit": 2},
        headers=FRESH))
    assert lists.status_code == 200
    assert len(lists_seen) <= len(few) + 1


def test_unknown_embeds_are_400(world):
    _server, owner, _reader, _member, public, _secret, _msgs = world
    for value in ("nosuch", "list,nosuch", "author", "uid"):
        assert_problem(owner.api.get("/message", params={"embed": value}), 400, "embed")
    assert_problem(owner.api.get(f"/list/{public['id']}", params={"embed": "list"}),
                   400, "embed")
    # embed properties are not fields: fields= cannot name them
    assert_problem(owner.api.get("/message", params={"fields": "list"}), 400, "fields")


# -- the embed statements are built once per embed and caller's access, then reused ------

def _embedded_lists(api, secret, public):
    resp = api.get("/message", params={
        "filter": json.dumps({"list_id": [public["id"], secret["id"]]}), "embed": "list",
        "limit": 100})
    assert resp.status_code == 200, resp.text
    return {i["id"]: i["list"] for i in resp.json()["items"] if i["list_id"] == secret["id"]}


def test_two_callers_embedding_in_turns_each_get_their_own_answer(world):
    _server, _owner, reader, member, public, secret, _msgs = world
    for _ in range(3):
        assert set(map(str, _embedded_lists(reader.api, secret, public).values())) == {"None"}
        mine = _embedded_lists(member.api, secret, public)
        assert mine and all(lst and lst["id"] == secret["id"] for lst in mine.values())
        kids = member.api.get(f"/list/{secret['id']}", params={"embed": "messages"}).json()
        assert len(kids["messages"]) == 5
        assert reader.api.get(f"/list/{secret['id']}",
                              params={"embed": "messages"}).status_code == 404


def test_a_membership_between_two_requests_changes_the_next_embed(world):
    server, owner, _reader, _member, public, secret, _msgs = world
    newcomer = make_user(server)
    assert set(map(str, _embedded_lists(newcomer.api, secret, public).values())) == {"None"}
    found = newcomer.api.get("/list", params={"filter": json.dumps({"id": public["id"]}),
                                              "embed": "messages"}).json()["items"][0]
    assert all(m["privacy"] == "public" for m in found["messages"])
    grant = owner.api.post("/listmember", json={"list_id": secret["id"], "uid": newcomer.uid,
                                                "authorization": "member"})
    assert grant.status_code == 201, grant.text
    assert all(lst and lst["id"] == secret["id"]
               for lst in _embedded_lists(newcomer.api, secret, public).values())
    assert owner.api.delete(f"/listmember/{grant.json()['id']}").status_code in (200, 204)
    assert set(map(str, _embedded_lists(newcomer.api, secret, public).values())) == {"None"}


def test_every_embedded_record_is_what_its_get_shows(world):
    _server, owner, reader, member, public, secret, _msgs = world
    for caller in (owner, reader, member):
        api = caller.api
        items = api.get("/message", params={
            "filter": json.dumps({"list_id": [public["id"], secret["id"]]}),
            "embed": "list", "limit": 100}).json()["items"]
        for item in items:
            if item["list"] is not None:
                assert item["list"] == api.get(f"/list/{item['list_id']}").json()
        lists = api.get("/list", params={"embed": "messages", "limit": 100}).json()["items"]
        assert lists
        for lst in lists:
            for message in lst["messages"]:
                assert message == api.get(f"/message/{message['id']}").json()
