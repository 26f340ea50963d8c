"""Field rules (issue 14 item 1), from the attacker's side.

An instance of the default application runs with ``tests/fixtures/fieldrules/rbac.yaml``:
list members read a message's subject and who wrote it, never its content, and may set
only ``list_id``, ``subject`` and ``privacy``; invitees read subjects and authors through
two entries that add up; every signed-in user reads a person's ``identity``, only its
owner the ``name``. Every expectation below comes from that file's meaning: a field the
caller may not read must not show, nor be inferable by sorting, filtering, searching,
embedding, the ETag, a cursor or a write probing its value.
"""

from __future__ import annotations

import json
import os

import pytest
import requests

from instances import login, new_account, start_instance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLICY = os.path.join(ROOT, "tests", "fixtures", "fieldrules", "rbac.yaml")
SECRET = "zebracontent"


class Caller:
    def __init__(self, inst, username: str, password: str, uid: str) -> None:
        self.uid = uid
        self.http = login(inst.url, username, password)
        self.url = inst.url
        self.ra = inst.url.rsplit("/api/v1", 1)[0] + inst.settings.react_admin_url

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.url + path, timeout=10, **kw)

    def patch(self, path: str, **kw) -> requests.Response:
        return self.http.patch(self.url + path, timeout=10, **kw)

    def ra_get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.ra + path, timeout=10, **kw)


@pytest.fixture(scope="module")
def world(server):
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          rbac_file=POLICY)
    try:
        people = {name: Caller(inst, *new_account(inst.services))
                  for name in ("alice", "bob", "carol", "dave")}
        people["admin"] = Caller(inst, *new_account(inst.services, admin=True))
        alice, bob, carol = people["alice"], people["bob"], people["carol"]
        lst = alice.post("/list", json={"name": "fields", "privacy": "invitee"}).json()
        for who, level in ((bob, "member"), (carol, "invitee")):
            resp = alice.post("/listmember", json={"list_id": lst["id"], "uid": who.uid,
                                                   "authorization": level})
            assert resp.status_code == 201, resp.text
        msgs = {}
        for key, subject, content, privacy in (
                ("m1", "hello", SECRET, "member"), ("m2", "world", "apple", "member"),
                ("m3", "notice", "invitees see the subject", "invitee")):
            resp = alice.post("/message", json={"list_id": lst["id"], "subject": subject,
                                                "content": content, "privacy": privacy})
            assert resp.status_code == 201, resp.text
            msgs[key] = resp.json()
        yield {"inst": inst, "list": lst, "msgs": msgs, **people}
    finally:
        inst.stop()


def problem(resp, status: int, field: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert field in body["errors"], body
    return body


def in_list(caller, world, **params) -> requests.Response:
    flt = params.pop("filter", {})
    return caller.get("/message", params={
        "filter": json.dumps({"list_id": world["list"]["id"], **flt}), **params})


# -- reading -------------------------------------------------------------------------

def test_get_shows_only_the_granted_fields(world):
    m1 = world["msgs"]["m1"]["id"]
    body = world["bob"].get(f"/message/{m1}").json()
    assert body["subject"] == "hello" and "content" not in body
    assert body["id"] == m1 and "r" in body["rbac"]
    assert world["alice"].get(f"/message/{m1}").json()["content"] == SECRET


def test_fields_of_several_entries_add_up(world):
    m3 = world["msgs"]["m3"]["id"]
    body = world["carol"].get(f"/message/{m3}").json()
    assert set(body) == {"id", "rbac", "subject", "uid", "list_id"}
    assert body["uid"] == world["alice"].uid


def test_find_and_ra_rows_carry_no_hidden_field(world):
    items = in_list(world["bob"], world).json()["items"]
    assert len(items) == 3 and all("content" not in row for row in items)
    assert SECRET not in json.dumps(items)
    rows = world["bob"].ra_get("/message", params={"list_id": world["list"]["id"]}).json()
    assert len(rows) == 3 and SECRET not in json.dumps(rows)
    mine = in_list(world["alice"], world).json()["items"]
    assert SECRET in json.dumps(mine)


def test_every_item_of_a_page_shows_the_fields_its_get_shows(world):
    """find serializes a page in one loop, a get one record: on a page mixing records
    whose readable fields differ (bob's own, which he reads whole, beside alice's, of
    which he reads a member's fields; public ones a stranger reads as the lowest level),
    each item has exactly the fields of its get, page by page."""
    alice, bob = world["alice"], world["bob"]
    lst = alice.post("/list", json={"name": "mixed fields", "privacy": "invitee"}).json()
    resp = alice.post("/listmember", json={"list_id": lst["id"], "uid": bob.uid,
                                           "authorization": "member"})
    assert resp.status_code == 201, resp.text
    for privacy in ("member", "public", "member"):
        resp = alice.post("/message", json={"list_id": lst["id"], "subject": privacy,
                                            "content": SECRET, "privacy": privacy})
        assert resp.status_code == 201, resp.text
    for n in range(2):
        resp = bob.post("/message", json={"list_id": lst["id"], "subject": f"bob {n}",
                                          "privacy": "member"})
        assert resp.status_code == 201, resp.text
    shapes = {}
    for who in ("alice", "bob", "carol", "dave", "admin"):
        caller = world[who]
        items, params = [], {"filter": json.dumps({"list_id": lst["id"]}), "limit": 2}
        while True:
            body = caller.get("/message", params=params).json()
            items += body["items"]
            if not body.get("cursor_next"):
                break
            params = {"cursor_next": body["cursor_next"]}
        for item in items:
            assert item == caller.get(f"/message/{item['id']}").json(), (who, item["id"])
        shapes[who] = {frozenset(item) for item in items}
    assert len(shapes["bob"]) == 2  # his own whole, alice's without content
    assert all("content" not in s for s in shapes["dave"]) and shapes["dave"]


def test_related_value_follows_the_target_field_rules(world):
    """author is the author's person name: bob may read alice's person, not its name."""
    m1 = world["msgs"]["m1"]["id"]
    assert world["bob"].get(f"/message/{m1}").json()["author"] is None
    assert world["bob"].get("/message", params={"filter": json.dumps(
        {"list_id": world["list"]["id"]})}).json()["items"][0]["author"] is None
    assert world["alice"].get(f"/message/{m1}").json()["author"]
    person = world["bob"].get(f"/person/{world['alice'].uid}").json()
    assert "name" not in person and "identity" in person


def test_sort_on_a_hidden_field_is_an_unknown_field(world):
    for sort in ("content", "content:desc", "subject,content"):
        problem(in_list(world["bob"], world, sort=sort), 400, "sort")
    problem(world["bob"].ra_get("/message", params={"_sort": "content"}), 400, "sort")
    problem(world["bob"].ra_get("/message", params={"sort": '["content","DESC"]'}),
            400, "sort")
    assert in_list(world["bob"], world, sort="subject").status_code == 200
    # an entry of every field on every message: nothing to hide from its holder
    assert in_list(world["admin"], world, sort="content").status_code == 200


def test_a_field_hidden_on_some_listed_records_is_hidden_to_filters(world):
    """alice reads the content of every message of her list, but her listing also holds
    the public messages of other lists, whose content she may not read."""
    problem(in_list(world["alice"], world, sort="content"), 400, "sort")
    problem(in_list(world["alice"], world, filter={"content": SECRET}), 400, "filter")


@pytest.mark.parametrize("flt", [{"content": SECRET}, {"content_like": "zeb"},
                                 {"content_gte": "a"}, {"content": None},
                                 {"or": [{"subject": "x"}, {"content": "apple"}]}])
def test_filter_on_a_hidden_field_is_an_unknown_field(world, flt):
    problem(in_list(world["bob"], world, filter=flt), 400, "filter")
    assert in_list(world["admin"], world, filter=flt).status_code == 200


def test_filter_on_a_hidden_field_through_ra_is_an_unknown_field(world):
    problem(world["bob"].ra_get("/message", params={"content": SECRET}), 400, "filter")
    problem(world["bob"].ra_get("/message", params={"content_like": "zeb"}), 400, "filter")


def test_q_searches_only_readable_fields(world):
    found = in_list(world["bob"], world, filter={"q": SECRET}).json()
    assert found["items"] == [] and found["count"] == 0
    assert world["bob"].ra_get("/message", params={"q": SECRET}).json() == []
    assert in_list(world["bob"], world, filter={"q": "hello"}).json()["count"] == 1
    assert in_list(world["admin"], world, filter={"q": SECRET}).json()["count"] == 1


def test_group_by_a_hidden_field_is_an_unknown_field(world):
    problem(world["bob"].get("/message/groups", params={"group_by": "content"}), 400,
            "group_by")
    assert world["bob"].get("/message/groups",
                            params={"group_by": "subject"}).status_code == 200


def test_fields_selection_of_a_hidden_field_is_an_unknown_field(world):
    m1 = world["msgs"]["m1"]["id"]
    problem(world["bob"].get(f"/message/{m1}", params={"fields": "content"}), 400,
            "fields")
    problem(world["carol"].get(f"/message/{world['msgs']['m3']['id']}",
                               params={"fields": "privacy"}), 400, "fields")
    # a list may hold records of either kind: each row shows what it grants
    rows = in_list(world["bob"], world, fields="subject,content").json()["items"]
    assert rows and all(set(r) == {"id", "subject"} for r in rows)
    assert world["bob"].get(f"/message/{m1}", params={"fields": "subject"}).json() == \
        {"id": m1, "subject": "hello"}


def test_embedded_records_follow_their_own_field_rules(world):
    lid = world["list"]["id"]
    body = world["bob"].get(f"/list/{lid}", params={"embed": "messages"}).json()
    assert len(body["messages"]) == 3
    assert SECRET not in json.dumps(body)
    assert SECRET in json.dumps(world["alice"].get(
        f"/list/{lid}", params={"embed": "messages"}).json())


def test_an_embed_the_entry_leaves_out_is_unknown(world):
    m1 = world["msgs"]["m1"]["id"]
    problem(world["bob"].get(f"/message/{m1}", params={"embed": "list"}), 400, "embed")
    assert world["alice"].get(f"/message/{m1}",
                              params={"embed": "list"}).json()["list"]["id"]


def test_a_cursor_sorted_on_a_hidden_field_does_not_serve_another_caller(world):
    page = in_list(world["admin"], world, sort="content", limit=1).json()
    problem(world["bob"].get("/message", params={"cursor_next": page["cursor_next"]}),
            400, "sort")


def test_cursors_carry_no_hidden_value(world):
    page = in_list(world["bob"], world, sort="subject", limit=1).json()
    token = page["cursor_next"]
    # what the cursor carries, read without its key (as a client could: it is signed,
    # not encrypted): base64url of a 16-byte tag, a flag byte (1: zlib) and the JSON
    import base64
    import zlib

    sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    flag, payload = sealed[16:17], sealed[17:]
    carried = (zlib.decompress(payload) if flag == b"\x01" else payload).decode()
    assert "subject" in carried  # the decoding worked: the sort is in there
    assert SECRET not in carried and "apple" not in carried


def test_etag_does_not_change_with_a_hidden_field(world):
    alice, bob = world["alice"], world["bob"]
    m2 = alice.post("/message", json={"list_id": world["list"]["id"], "subject": "tag",
                                      "content": "one"}).json()["id"]
    seen = bob.get(f"/message/{m2}").headers["ETag"]
    owner_seen = alice.get(f"/message/{m2}").headers["ETag"]
    assert alice.patch(f"/message/{m2}", json={"content": "two"}).status_code == 200
    assert bob.get(f"/message/{m2}").headers["ETag"] == seen
    assert alice.get(f"/message/{m2}").headers["ETag"] != owner_seen
    # the tag bob holds still serves as If-Match for what he may change
    resp = bob.patch(f"/message/{m2}", json={"subject": "retitled"},
                     headers={"If-Match": seen})
    assert resp.status_code == 200, resp.text
    assert resp.headers["ETag"] != seen
    problem_resp = bob.patch(f"/message/{m2}", json={"subject": "again"},
                             headers={"If-Match": seen})
    assert problem_resp.status_code == 412
    assert alice.patch(f"/message/{m2}", json={"subject": "changed"}).status_code == 200
    assert bob.get(f"/message/{m2}").headers["ETag"] != resp.headers["ETag"]


# -- writing -------------------------------------------------------------------------

def count_messages(world) -> int:
    return in_list(world["alice"], world).json()["count"]


def test_create_with_a_field_the_entry_may_not_write_is_403_naming_it(world):
    before = count_messages(world)
    body = problem(world["bob"].post("/message", json={
        "list_id": world["list"]["id"], "subject": "mine", "content": "x"}), 403, "content")
    assert "content" in body["detail"]
    assert count_messages(world) == before
    resp = world["bob"].post("/message", json={"list_id": world["list"]["id"],
                                               "subject": "mine"})
    assert resp.status_code == 201, resp.text
    # his own message: the owner's entry grants every field
    mine = resp.json()["id"]
    assert world["bob"].patch(f"/message/{mine}", json={"content": "own"}).status_code == 200
    assert world["bob"].get(f"/message/{mine}").json()["content"] == "own"


def test_bulk_create_refuses_the_whole_batch(world):
    before = count_messages(world)
    lid = world["list"]["id"]
    resp = world["bob"].post("/message", json=[{"list_id": lid, "subject": "a"},
                                               {"list_id": lid, "content": "b"}])
    problem(resp, 403, "[1].content")
    assert count_messages(world) == before


def test_update_of_a_hidden_field_is_403_right_or_wrong_guess(world):
    """The stored value and a wrong guess get the same answer: no probing."""
    m1 = world["msgs"]["m1"]["id"]
    wrong = world["bob"].patch(f"/message/{m1}", json={"content": "guess"})
    right = world["bob"].patch(f"/message/{m1}", json={"content": SECRET})
    problem(wrong, 403, "content")
    problem(right, 403, "content")
    assert wrong.json()["detail"] == right.json()["detail"]
    assert world["alice"].get(f"/message/{m1}").json()["content"] == SECRET


def test_update_may_send_back_readable_fields_unchanged(world):
    m1 = world["msgs"]["m1"]["id"]
    bob = world["bob"]
    seen = bob.get(f"/message/{m1}").json()
    form = {k: v for k, v in seen.items() if k not in ("id", "rbac", "author", "status",
                                                       "created")}
    resp = bob.patch(f"/message/{m1}", json={**form, "subject": "hello again"})
    assert resp.status_code == 200, resp.text
    # a readable field he may not write, changed: refused, naming it
    problem(bob.patch(f"/message/{m1}", json={"uid": bob.uid}), 403, "uid")
    assert bob.patch(f"/message/{m1}", json={"subject": "hello"}).status_code == 200


def test_bulk_update_by_filter_applies_the_field_rules(world):
    resp = world["bob"].patch("/message", params={"filter": json.dumps(
        {"list_id": world["list"]["id"], "subject": "world"})}, json={"content": "x"})
    problem(resp, 403, next(iter(resp.json()["errors"])))
    assert "content" in resp.json()["detail"]


# -- can-i ---------------------------------------------------------------------------

def ask(caller, **params) -> dict:
    resp = caller.get("/auth/can-i", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_can_i_names_the_entry_of_a_field(world):
    m1 = world["msgs"]["m1"]["id"]
    bob, alice = world["bob"], world["alice"]
    no = ask(bob, action="r", resource="message", id=m1, field="content")
    assert no["allowed"] is False and "content" in no["reason"]
    assert "policies.message[3]" in no["reason"] and no["field"] == "content"
    yes = ask(bob, action="r", resource="message", id=m1, field="subject")
    assert yes["allowed"] is True and "policies.message[3]" in yes["reason"]
    assert ask(bob, action="u", resource="message", id=m1, field="subject")["allowed"]
    assert not ask(bob, action="u", resource="message", id=m1, field="content")["allowed"]
    assert not ask(bob, action="c", resource="message", id=world["list"]["id"],
                   field="content")["allowed"]
    assert ask(alice, action="r", resource="message", id=m1, field="content")["allowed"]
    assert not ask(bob, action="l", resource="message", field="content")["allowed"]
    assert ask(bob, action="l", resource="message", field="subject")["allowed"]
    assert not ask(alice, action="l", resource="message", field="content")["allowed"]
    assert ask(world["admin"], action="l", resource="message", field="content")["allowed"]


def test_can_i_says_nothing_of_records_the_caller_cannot_read(world):
    m1 = world["msgs"]["m1"]["id"]
    out = ask(world["dave"], action="r", resource="message", id=m1, field="subject")
    gone = ask(world["dave"], action="r", resource="message", id="nosuchid", field="subject")
    assert out["allowed"] is False and out["reason"] == gone["reason"].replace(
        "nosuchid", m1)


def test_can_i_refuses_an_unknown_field(world):
    resp = world["bob"].get("/auth/can-i", params={"action": "r", "resource": "message",
                                                   "field": "nosuch"})
    problem(resp, 400, "field")


# -- the policy itself ---------------------------------------------------------------

def test_field_rules_naming_unknown_fields_refuse_to_start(server, tmp_path):
    from apicrud.app import create_app
    from apicrud.errors import StartupError

    with open(POLICY, encoding="utf-8") as fh:
        text = fh.read()
    text = text.replace(
        "read_fields: [subject]}", "read_fields: [subjekt]}").replace(
        "write_fields: [list_id, subject, privacy]", "write_fields: [list_id, created]")
    bad = tmp_path / "rbac.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(StartupError) as caught:
        create_app(settings=server.settings.replace(rbac_file=str(bad),
                                                    redis_url=server.services.redis.url),
                   migrate=False)
    text = "\n".join(caught.value.problems)
    assert "policies.message[4]: read_fields names unknown fields ['subjekt']" in text
    assert "policies.message[3]: write_fields names fields a client cannot set " \
           "['created']" in text
