"""Reading the audit trail over HTTP, from the attacker's side first: nobody sees an
entry about a record they cannot read now (another member's secret message, a list
they were removed from, someone's API key), nor fields of it they cannot read; then
GET /audit and the history as collections (filter, sort, cursor, count)."""

from __future__ import annotations

import json

import pytest

from helpers import make_user


def _list_with_member(owner, member, **fields) -> str:
    resp = owner.api.post("/list", json={"name": "shared", "privacy": "member", **fields})
    assert resp.status_code == 201, resp.text
    lid = resp.json()["id"]
    resp = owner.api.post("/listmember", json={"list_id": lid, "uid": member.uid,
                                               "authorization": "member"})
    assert resp.status_code == 201, resp.text
    return lid


def _post(api, list_id: str, privacy: str) -> str:
    resp = api.post("/message", json={"list_id": list_id, "subject": f"a {privacy} one",
                                      "content": f"{privacy} text", "privacy": privacy})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _audit(api, **flt) -> list[dict]:
    resp = api.get("/audit", params={"filter": json.dumps(flt), "limit": 100})
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def test_a_member_never_sees_entries_about_anothers_secret_message(server):
    owner, member = make_user(server), make_user(server)
    lid = _list_with_member(owner, member)
    secret = _post(owner.api, lid, "secret")
    shared = _post(owner.api, lid, "member")
    assert owner.api.patch(f"/message/{secret}", json={"subject": "still secret"}) \
        .status_code == 200
    # the member reads the list and the shared message, not the secret one
    assert member.api.get(f"/message/{shared}").status_code == 200
    assert member.api.get(f"/message/{secret}").status_code == 404
    assert _audit(member.api, record_id=secret) == []
    # (other tests' public messages are readable too: ask about this test's two)
    mine = {"or": [{"record_id": secret}, {"record_id": shared}]}
    assert [e["record_id"] for e in member.api.get("/audit", params={
        "filter": json.dumps({"resource": "message", **mine})}).json()["items"]] == [shared]
    assert member.api.get(f"/message/{secret}/history").status_code == 404
    (entry,) = _audit(owner.api, record_id=secret, action="update")
    assert member.api.get(f"/audit/{entry['id']}").status_code == 404
    assert owner.api.get(f"/audit/{entry['id']}").json()["changes"] == \
        {"subject": {"old": "a secret one", "new": "still secret"}}
    # nor by guessing through filters on what changed: that field cannot be filtered
    resp = member.api.get("/audit", params={"filter": json.dumps({"changes": "%secret%"})})
    assert resp.status_code == 400
    resp = member.api.get("/audit", params={"filter": json.dumps({"q": "secret"})})
    assert resp.status_code == 400 or all(e["record_id"] != secret
                                          for e in resp.json()["items"])
    # nor by counting
    counted = member.api.get("/audit", params={
        "filter": json.dumps({"resource": "message", **mine}), "count": "exact"}).json()["count"]
    assert counted == 1


def test_a_member_removed_from_a_list_no_longer_sees_its_entries(server):
    owner, member = make_user(server), make_user(server)
    lid = _list_with_member(owner, member)
    shared = _post(owner.api, lid, "member")
    assert {e["record_id"] for e in _audit(member.api, resource="list", record_id=lid)} == {lid}
    assert member.api.get(f"/list/{lid}/history").status_code == 200
    (membership,) = owner.api.get("/listmember", params={
        "filter": json.dumps({"list_id": lid, "uid": member.uid})}).json()["items"]
    assert owner.api.delete(f"/listmember/{membership['id']}").status_code == 200
    assert _audit(member.api, record_id=lid) == []
    assert _audit(member.api, record_id=shared) == []
    assert member.api.get(f"/list/{lid}/history").status_code == 404
    assert member.api.get(f"/message/{shared}/history").status_code == 404
    assert len(_audit(owner.api, record_id=lid)) == 1


def test_other_users_records_and_unknown_records_are_invisible(server, admin):
    alice, mallory = make_user(server), make_user(server)
    key = alice.api.post("/apikey", json={"name": "alice's"}).json()
    lst = alice.api.post("/list", json={"name": "private"}).json()
    for path in (f"/apikey/{key['id']}/history", f"/list/{lst['id']}/history",
                 f"/account/{alice.account_id}/history", "/list/x-nope/history",
                 "/nosuchthing/abc/history", "/audit/x-nope"):
        assert mallory.api.get(path).status_code == 404, path
    seen = json.dumps(_audit(mallory.api))
    for value in (key["id"], lst["id"], alice.account_id, alice.uid):
        assert value not in seen
    assert server.anonymous().get("/audit").status_code == 401
    assert server.anonymous().get(f"/list/{lst['id']}/history").status_code == 401
    # the trail is read-only over HTTP
    for method in ("post", "put", "patch", "delete"):
        assert getattr(alice.api, method)("/audit").status_code in (404, 405)


def test_fields_the_reader_may_not_read_are_left_out(server):
    owner, member = make_user(server), make_user(server)
    key = owner.api.post("/apikey", json={"name": "k"}).json()
    (created,) = owner.api.get(f"/apikey/{key['id']}/history").json()["items"]
    assert "hash" not in created["changes"]  # not a field of the apikey representation
    assert created["changes"]["name"] == {"old": None, "new": "k"}
    # another member's client address is not shown to a co-member
    lid = _list_with_member(owner, member)
    items = member.api.get(f"/list/{lid}/history").json()["items"]
    assert items and all(e["client_addr"] is None for e in items)
    assert all(e["client_addr"] == "127.0.0.1"
               for e in owner.api.get(f"/list/{lid}/history").json()["items"])


def test_purged_records_entries_stay_visible_to_admins_only(server, admin):
    user = make_user(server)
    lid = user.api.post("/list", json={"name": "to purge"}).json()["id"]
    assert user.api.delete(f"/list/{lid}").status_code == 200
    # trashed: its owner still sees its history, as the trashcan shows it
    assert [e["action"] for e in user.api.get(f"/list/{lid}/history").json()["items"]] \
        == ["delete", "create"]
    assert user.api.delete(f"/trashcan/list-{lid}").status_code == 200
    assert user.api.get(f"/list/{lid}/history").status_code == 404
    assert _audit(user.api, record_id=lid) == []
    history = admin.api.get(f"/list/{lid}/history")
    assert history.status_code == 200
    assert [e["action"] for e in history.json()["items"]] == ["purge", "delete", "create"]
    assert len(_audit(admin.api, record_id=lid)) == 3


def test_audit_is_a_collection_with_filter_sort_cursor_and_count(server):
    user = make_user(server)
    lid = user.api.post("/list", json={"name": "v0"}).json()["id"]
    for i in range(1, 5):
        assert user.api.patch(f"/list/{lid}", json={"name": f"v{i}"}).status_code == 200
    first = user.api.get(f"/list/{lid}/history", params={"limit": 2})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["count"] == 5 and len(body["items"]) == 2
    names = [e["changes"]["name"]["new"] for e in body["items"]]
    while body.get("cursor_next"):
        body = user.api.get(f"/list/{lid}/history",
                            params={"cursor_next": body["cursor_next"]}).json()
        names += [e["changes"]["name"]["new"] for e in body["items"]]
    assert names == ["v4", "v3", "v2", "v1", "v0"]  # newest first
    oldest = user.api.get("/audit", params={
        "filter": json.dumps({"record_id": lid}), "sort": "created:asc", "limit": 1,
        "fields": "action,created"})
    assert oldest.status_code == 200, oldest.text
    assert oldest.json()["items"] == [{"id": oldest.json()["items"][0]["id"],
                                       "action": "create",
                                       "created": oldest.json()["items"][0]["created"]}]
    assert oldest.headers["X-Total-Count"] == "5"
    updates = user.api.get("/audit", params={
        "filter": json.dumps({"record_id": lid, "action": "update"}), "count": "exact"})
    assert updates.json()["count"] == 4
    assert user.api.get("/audit", params={"sort": "changes"}).status_code == 400


@pytest.mark.parametrize("path", ["/audit", "/list/x-abc/history"])
def test_bad_parameters_are_problems(user, path):
    resp = user.api.get(path, params={"limit": 0})
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/problem+json")


def test_can_i_agrees_with_what_the_trail_shows(server):
    owner, other = make_user(server), make_user(server)
    lid = owner.api.post("/list", json={"name": "asked about"}).json()["id"]
    (entry,) = owner.api.get(f"/list/{lid}/history").json()["items"]

    def can_i(api, action):
        resp = api.get("/auth/can-i", params={"action": action, "resource": "audit",
                                              "id": entry["id"]})
        assert resp.status_code == 200, resp.text
        return resp.json()["allowed"]

    assert can_i(owner.api, "r") is True
    assert can_i(other.api, "r") is False
    assert can_i(owner.api, "u") is False and can_i(owner.api, "d") is False
