"""Attacks on the statements find and get reuse between requests.

A caller's find runs a count and a page statement built once per caller's access (the
evaluator's memoized WHERE clauses) and reused, the keyset clause bound by parameters;
a get reads a row without the ORM. These tests take the attacker's side: two callers
taking turns page by page must each see only their own rows and counts, a membership
granted or removed between two pages changes the very next one, and the cursor of one
caller's page never opens another caller's rows.
"""

from __future__ import annotations

from helpers import assert_problem

PAGE = {"limit": 2, "sort": "created:desc"}


def walk(api, pages=3, **params):
    """ids of the first ``pages`` pages, newest first, and the count of the first."""
    ids, reply = [], api.get("/message", params={**PAGE, **params})
    assert reply.status_code == 200, reply.text
    count = reply.json()["count"]
    for _ in range(pages):
        body = reply.json()
        ids += [m["id"] for m in body["items"]]
        if not body.get("cursor_next"):
            break
        reply = api.get("/message", params={**PAGE, "cursor_next": body["cursor_next"]})
        assert reply.status_code == 200, reply.text
    return ids, count


def post(api, list_id, n, subject):
    out = []
    for i in range(n):
        resp = api.post("/message", json={"list_id": list_id, "subject": f"{subject} {i}",
                                          "privacy": "member"})
        assert resp.status_code == 201, resp.text
        out.append(resp.json()["id"])
    return out


def test_two_callers_paging_in_turns_each_see_only_their_rows(user, other_user):
    club = user.api.post("/list", json={"name": "club", "privacy": "invitee"}).json()
    mine = other_user.api.post("/list", json={"name": "mine", "privacy": "invitee"}).json()
    theirs = post(user.api, club["id"], 4, "club")
    own = post(other_user.api, mine["id"], 2, "mine")
    first: dict = {"u": user.api.get("/message", params=PAGE),
             "o": other_user.api.get("/message", params=PAGE)}
    pages = {"u": [], "o": []}
    # turn by turn: each caller's next page runs the statement the other just ran, with
    # their own access and their own cursor
    replies: dict = dict(first)
    for _ in range(3):
        for who, api in (("u", user.api), ("o", other_user.api)):
            if replies[who] is None:
                continue
            body = replies[who].json()
            pages[who] += [m["id"] for m in body["items"]]
            replies[who] = body.get("cursor_next") and api.get(
                "/message", params={**PAGE, "cursor_next": body["cursor_next"]})
    assert pages["u"][:4] == theirs[::-1]
    assert pages["o"][:2] == own[::-1]
    assert not set(theirs) & set(pages["o"]) and not set(own) & set(pages["u"])
    # a cursor is no key: the other caller following it gets their own rows after it
    follow = other_user.api.get("/message", params={
        **PAGE, "cursor_next": first["u"].json()["cursor_next"]})
    assert follow.status_code == 200 and not set(theirs) & {
        m["id"] for m in follow.json()["items"]}
    # every row shown is one the caller may get, and nobody else's
    for mid in pages["o"]:
        assert other_user.api.get(f"/message/{mid}").status_code == 200
    for mid in theirs:
        assert_problem(other_user.api.get(f"/message/{mid}"), 404)


def test_membership_between_two_pages_changes_the_next_one(user, other_user):
    club = user.api.post("/list", json={"name": "club", "privacy": "invitee"}).json()
    theirs = post(user.api, club["id"], 3, "club")
    before, count_before = walk(other_user.api)
    assert not set(theirs) & set(before)
    added = user.api.post("/listmember", json={"list_id": club["id"], "uid": other_user.uid,
                                               "authorization": "member"})
    assert added.status_code == 201, added.text
    during, count_during = walk(other_user.api)
    assert during[:3] == theirs[::-1] and count_during == count_before + 3
    for mid in theirs:
        got = other_user.api.get(f"/message/{mid}")
        assert got.status_code == 200 and got.json()["rbac"]
    assert user.api.delete(f"/listmember/{added.json()['id']}").status_code == 200
    after, count_after = walk(other_user.api)
    assert not set(theirs) & set(after) and count_after == count_before
    for mid in theirs:
        assert_problem(other_user.api.get(f"/message/{mid}"), 404)
    # the owner's own view never changed
    assert walk(user.api)[0][:3] == theirs[::-1]


def test_a_row_read_without_the_orm_is_the_same_record(user):
    club = user.api.post("/list", json={"name": "club", "privacy": "invitee"}).json()
    (mid,) = post(user.api, club["id"], 1, "same")
    got = user.api.get(f"/message/{mid}")
    listed = user.api.get("/message", params={"filter": f'{{"id": "{mid}"}}'})
    assert got.json() == listed.json()["items"][0]
    changed = user.api.put(f"/message/{mid}", json={"subject": "changed"},
                           headers={"If-Match": got.headers["ETag"]})
    assert changed.status_code == 200, changed.text
    again = user.api.get(f"/message/{mid}")
    assert again.json()["subject"] == "changed" and again.headers["ETag"] != got.headers["ETag"]
    assert again.headers["ETag"] == changed.headers["ETag"]
