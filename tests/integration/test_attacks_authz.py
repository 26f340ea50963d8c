"""Authorization, tried as an attacker would, over HTTP (issue 11).

Each test is one named scenario: what the attacker does, and what must happen. Holes:

- #1 restoring from the trashcan must pass every check a create of the record would
  pass now (``test_restore_*``);
- #2 a record's owner (``uid``) is set or changed to another user only by a principal
  allowed on ``{resource}:*`` (``test_owner_*``);
- #7 ``can-i`` must not tell an unreadable record from a missing one, show the privacy of
  what the caller can't read, or put a filesystem path in a reason (``test_can_i_*``);
- "memberships that work" (``test_membership_*``): the list itself is readable by every
  member at any level whatever its privacy, invitees can accept, ids in a filter only
  narrow, ids in a payload are still checked, and ``can-i`` agrees with the outcome.

Lists in the hole scenarios have privacy invitee, which members could use before issue
11 too: each of those tests fails for its hole alone. A refusal is 403 or 404 (CONTRACT
1: 404 when the caller may not read the record, 403 when they may read it but not do
this); either way nothing may be written, which each test checks in the database or by
reading back as the rightful owner.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
import requests
from sqlalchemy import func, select

from apicrud.db.base import new_id
from helpers import ROOT, assert_problem, make_user

PRIVACY = ("public", "invitee", "member", "manager", "secret")


# -- helpers ------------------------------------------------------------------------------

def refused(resp) -> dict:
    """403 or 404, as a problem document."""
    assert resp.status_code in (403, 404), f"{resp.status_code}: {resp.text}"
    return assert_problem(resp, resp.status_code)


def new_list(api, **fields) -> dict:
    resp = api.post("/list", json={"name": fields.pop("name", f"l{secrets.token_hex(4)}"),
                                   **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def add_member(api, list_id: str, uid: str, level: str = "member") -> dict:
    resp = api.post("/listmember", json={"list_id": list_id, "uid": uid,
                                         "authorization": level})
    assert resp.status_code == 201, resp.text
    return resp.json()


def post(api, list_id: str, **fields) -> dict:
    resp = api.post("/message", json={"list_id": list_id,
                                      "subject": fields.pop("subject", "hello"), **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def stored(server, resource: str, id_: str) -> dict | None:
    """The record as stored (None: no such row), whatever its status."""
    model = server.services.resources[resource].model
    with server.services.db.session() as session:
        row = session.get(model, id_)
        if row is None:
            return None
        return {c.key: getattr(row, c.key) for c in model.__table__.columns}


def count(server, resource: str, **where) -> int:
    model = server.services.resources[resource].model
    with server.services.db.session() as session:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return session.execute(stmt).scalar_one()


def restore(api, resource: str, id_: str):
    return api.put(f"/trashcan/{resource}-{id_}", json={"status": "active"})


def public_person(user) -> None:
    """Make ``user``'s person public: then naming them is not an unreadable id, and a
    refusal to hand them a record is the owner rule itself."""
    resp = user.api.patch(f"/person/{user.uid}", json={"privacy": "public"})
    assert resp.status_code == 200, resp.text


def can_i(api, action: str, resource: str, id_: str | None = None) -> dict:
    params = {"action": action, "resource": resource}
    if id_ is not None:
        params["id"] = id_
    resp = api.get("/auth/can-i", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def without_id(body: dict, id_: str) -> dict:
    return json.loads(json.dumps(body).replace(id_, "<id>"))


# The cast, signed in once per module (each login is an Argon2id verification): every
# test works in lists of its own, so sharing the people costs no isolation. Nobody's
# person is made public except the victim's.

@pytest.fixture(scope="module")
def user(server):
    """Owner of each test's lists."""
    return make_user(server, prefix="own")


@pytest.fixture(scope="module")
def other_user(server):
    """The attacker (usually), or a member of the list."""
    return make_user(server, prefix="att")


@pytest.fixture(scope="module")
def third(server):
    return make_user(server, prefix="third")


@pytest.fixture(scope="module")
def victim(server):
    """Someone whose person is public: naming them is not an unreadable id, so refusing to
    hand them a record is the owner rule itself."""
    u = make_user(server, prefix="victim")
    public_person(u)
    return u


@pytest.fixture(scope="module")
def posters(server):
    return {level: make_user(server, prefix=level[:3]) for level in
            ("invitee", "member", "manager", "none")}


# == hole 1: restoring from the trashcan is a create =========================================

@pytest.mark.parametrize("level", ["invitee", "member", "manager"])
def test_restore_removed_member_cannot_restore_own_membership(server, user, other_user, level):
    """The manager removes me; I restore my own listmember row from my trashcan and am
    back (at my old level, manager included). Must be refused: I could not add myself."""
    lst = new_list(user.api, privacy="invitee")
    row = add_member(user.api, lst["id"], other_user.uid, level)
    assert other_user.api.get(f"/list/{lst['id']}").status_code == 200
    assert user.api.delete(f"/listmember/{row['id']}").status_code == 200
    assert_problem(other_user.api.get(f"/list/{lst['id']}"), 404)
    refused(restore(other_user.api, "listmember", row["id"]))
    assert stored(server, "listmember", row["id"])["status"] == "disabled"
    assert_problem(other_user.api.get(f"/list/{lst['id']}"), 404)
    assert not any(r.startswith(f"list-{lst['id']}")
                   for r in other_user.api.get("/auth").json()["roles"])
    # the list's owner still finds it in the trashcan, and may restore it
    trash = user.api.get("/trashcan", params={"filter": json.dumps({"resource": "listmember"}),
                                              "limit": 1000})
    assert f"listmember-{row['id']}" in [e["id"] for e in trash.json()["items"]]
    assert restore(user.api, "listmember", row["id"]).status_code == 200


def test_restore_removed_member_of_public_list_still_cannot_rejoin(server, user, other_user):
    """Even when the list stays readable to me after removal (public), restoring my old
    manager row would bring me back as manager: refused."""
    lst = new_list(user.api, privacy="public")
    row = add_member(user.api, lst["id"], other_user.uid, "manager")
    assert user.api.delete(f"/listmember/{row['id']}").status_code == 200
    assert other_user.api.get(f"/list/{lst['id']}").json()["rbac"] == "lr"
    refused(restore(other_user.api, "listmember", row["id"]))
    assert stored(server, "listmember", row["id"])["status"] == "disabled"
    refused(other_user.api.patch(f"/list/{lst['id']}", json={"description": "mine"}))


def test_restore_author_cannot_bring_back_post_deleted_by_manager_after_removal(
        server, user, other_user):
    """A manager deletes my post and removes me; I restore the post from my trashcan."""
    lst = new_list(user.api, privacy="invitee")
    row = add_member(user.api, lst["id"], other_user.uid, "member")
    msg = post(other_user.api, lst["id"], subject="spam")
    assert user.api.delete(f"/message/{msg['id']}").status_code == 200
    assert user.api.delete(f"/listmember/{row['id']}").status_code == 200
    refused(restore(other_user.api, "message", msg["id"]))
    assert stored(server, "message", msg["id"])["status"] == "disabled"


def test_restore_author_cannot_post_into_list_they_were_removed_from(server, user, other_user):
    """Removed from the list, I delete my own old post and restore it: a way to post
    into a list I no longer belong to. Refused, as a new post would be."""
    lst = new_list(user.api, privacy="invitee")
    row = add_member(user.api, lst["id"], other_user.uid, "member")
    msg = post(other_user.api, lst["id"])
    assert user.api.delete(f"/listmember/{row['id']}").status_code == 200
    assert_problem(other_user.api.post("/message", json={"list_id": lst["id"]}), 404, "list_id")
    assert other_user.api.delete(f"/message/{msg['id']}").status_code == 200  # my own post
    refused(restore(other_user.api, "message", msg["id"]))
    assert stored(server, "message", msg["id"])["status"] == "disabled"
    assert user.api.get(f"/trashcan/message-{msg['id']}").status_code == 200


def test_restore_author_still_member_gets_own_post_back(user, other_user):
    """The control: while I may post there, restoring my post works."""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "member")
    msg = post(other_user.api, lst["id"])
    assert other_user.api.delete(f"/message/{msg['id']}").status_code == 200
    resp = restore(other_user.api, "message", msg["id"])
    assert resp.status_code == 200, resp.text
    assert other_user.api.get(f"/message/{msg['id']}").json()["uid"] == other_user.uid


@pytest.mark.parametrize("restorer", ["manager", "owner"])
def test_restore_manager_cannot_revive_someone_elses_post(server, user, other_user, third,
                                                          restorer):
    """A member deletes their own post; a manager (or the list's owner) restores it on
    their behalf: that is creating a record for another uid (CONTRACT 3). Refused."""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], third.uid, "member")
    add_member(user.api, lst["id"], other_user.uid, "manager")
    msg = post(third.api, lst["id"], subject="regret")
    assert third.api.delete(f"/message/{msg['id']}").status_code == 200
    who = other_user if restorer == "manager" else user
    refused(restore(who.api, "message", msg["id"]))
    assert stored(server, "message", msg["id"])["status"] == "disabled"


def test_restore_ex_manager_cannot_restore_what_they_trashed(server, user, other_user, third):
    """As manager I removed a member; demoted since, I restore the row I trashed."""
    lst = new_list(user.api, privacy="invitee")
    mine = add_member(user.api, lst["id"], other_user.uid, "manager")
    theirs = add_member(other_user.api, lst["id"], third.uid, "member")
    assert other_user.api.delete(f"/listmember/{theirs['id']}").status_code == 200
    assert user.api.patch(f"/listmember/{mine['id']}", json={"authorization": "member"}) \
        .status_code == 200
    assert_problem(restore(other_user.api, "listmember", theirs["id"]), 404)
    assert stored(server, "listmember", theirs["id"])["status"] == "disabled"


def test_restore_message_into_trashed_list_is_refused(server, user):
    """A message whose list is in the trashcan cannot come back on its own (a create
    naming a trashed list is a 404 for list_id)."""
    lst = new_list(user.api, privacy="invitee")
    msg = post(user.api, lst["id"])
    assert user.api.delete(f"/message/{msg['id']}").status_code == 200
    assert user.api.delete(f"/list/{lst['id']}").status_code == 200
    resp = restore(user.api, "message", msg["id"])
    # (409 "restore the list first" is as good for its owner, who sees the list trashed)
    assert resp.status_code in (403, 404, 409), resp.text
    assert_problem(resp, resp.status_code)
    assert stored(server, "message", msg["id"])["status"] == "disabled"


def test_restore_list_needs_d_managers_cannot(server, user, other_user):
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "manager")
    assert user.api.delete(f"/list/{lst['id']}").status_code == 200
    assert_problem(restore(other_user.api, "list", lst["id"]), 404)
    assert stored(server, "list", lst["id"])["status"] == "disabled"


def test_restore_grant_and_scope_stay_admin_only(server, admin, user):
    """An admin takes back a user's grant override and deletes a scope; the user may read
    their grants but neither restore the grant nor the scope."""
    grant = admin.api.post("/grant", json={"uid": user.uid, "name": "lists", "value": 500})
    assert grant.status_code == 201, grant.text
    scope = admin.api.post("/scope", json={"name": f"s{secrets.token_hex(4)}"})
    assert scope.status_code == 201, scope.text
    for resource, rid in (("grant", grant.json()["id"]), ("scope", scope.json()["id"])):
        assert admin.api.delete(f"/{resource}/{rid}").status_code == 200
        refused(restore(user.api, resource, rid))
        assert stored(server, resource, rid)["status"] == "disabled"
        assert restore(admin.api, resource, rid).status_code == 200


def test_restore_admin_restores_a_removed_membership(server, user, other_user, admin):
    lst = new_list(user.api, privacy="invitee")
    row = add_member(user.api, lst["id"], other_user.uid, "member")
    assert user.api.delete(f"/listmember/{row['id']}").status_code == 200
    assert restore(admin.api, "listmember", row["id"]).status_code == 200
    assert other_user.api.get(f"/list/{lst['id']}").status_code == 200


def test_restore_trashcan_does_not_show_a_manager_what_they_could_never_read(
        server, user, other_user, third):
    """A member posts a secret message: the list's manager can't read it. Once its author
    trashes it, the manager must not read it in the trashcan either (GET shows the fields),
    nor restore or purge it. (Security reading: d through a membership ignores privacy,
    so the trashcan needs the read a live record needs; CONTRACT 1.)"""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "manager")
    add_member(user.api, lst["id"], third.uid, "member")
    msg = post(third.api, lst["id"], subject="diary", content="private", privacy="secret")
    assert_problem(other_user.api.get(f"/message/{msg['id']}"), 404)
    assert_problem(other_user.api.delete(f"/message/{msg['id']}"), 404)
    assert third.api.delete(f"/message/{msg['id']}").status_code == 200
    tid = f"message-{msg['id']}"
    for who in (other_user, user):  # the manager, and the list's owner
        assert_problem(who.api.get(f"/trashcan/{tid}"), 404)
        listed = who.api.get("/trashcan", params={"filter": json.dumps({"resource": "message"}),
                                                  "limit": 1000})
        assert tid not in [e["id"] for e in listed.json()["items"]]
        assert_problem(restore(who.api, "message", msg["id"]), 404)
        assert_problem(who.api.delete(f"/trashcan/{tid}"), 404)
    assert stored(server, "message", msg["id"])["status"] == "disabled"
    assert third.api.get(f"/trashcan/{tid}").json()["record"]["content"] == "private"


def test_restore_refused_is_not_a_purge_and_purge_stays_a_d(server, user, other_user, third):
    """A refused restore leaves the record in the trashcan; purging it needs only d: the
    removed author may purge their own post, a stranger may not touch it."""
    lst = new_list(user.api, privacy="invitee")
    row = add_member(user.api, lst["id"], other_user.uid, "member")
    msg = post(other_user.api, lst["id"])
    assert other_user.api.delete(f"/message/{msg['id']}").status_code == 200
    assert user.api.delete(f"/listmember/{row['id']}").status_code == 200
    refused(restore(other_user.api, "message", msg["id"]))
    assert_problem(third.api.delete(f"/trashcan/message-{msg['id']}"), 404)
    assert stored(server, "message", msg["id"]) is not None
    purged = other_user.api.delete(f"/trashcan/message-{msg['id']}")
    assert purged.status_code == 200, purged.text
    assert stored(server, "message", msg["id"]) is None


# == hole 2: owners are changed only by {resource}:* principals ================================

def _ra_put(server, user, path: str, body: dict):
    """PUT through the react-admin dialect (simple-rest sends the whole record as read)."""
    return requests.put(f"{server.url}/ra{path}", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {user.token}",
                                 "Accept": "application/json"})


@pytest.mark.parametrize("how", ["patch", "put", "react-admin"])
def test_owner_manager_cannot_take_the_list(server, user, other_user, how):
    """A list manager (u on the list) sets uid to themself: the owner would lose it."""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "manager")
    # (their own person: an id they may read, so this is the owner rule alone)
    if how == "react-admin":
        record = other_user.api.get(f"/list/{lst['id']}").json()
        resp = _ra_put(server, other_user, f"/list/{lst['id']}",
                       {**record, "uid": other_user.uid})
        assert resp.status_code in (403, 404), resp.text
    else:
        resp = getattr(other_user.api, how)(f"/list/{lst['id']}", json={"uid": other_user.uid})
        refused(resp)
    assert stored(server, "list", lst["id"])["uid"] == user.uid
    assert user.api.get(f"/list/{lst['id']}").json()["rbac"] == "cdghijlru"
    # while a change of what a manager may change still works
    assert other_user.api.patch(f"/list/{lst['id']}", json={"description": "ok"}) \
        .status_code == 200


def test_owner_member_cannot_post_as_someone_else(server, user, other_user, victim):
    """A member posts a message with uid: <a readable person>: it would appear as theirs,
    and spend their quotas."""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "member")
    add_member(user.api, lst["id"], victim.uid, "member")
    marker = f"forged-{secrets.token_hex(4)}"
    refused(other_user.api.post("/message", json={"list_id": lst["id"], "subject": marker,
                                                  "uid": victim.uid}))
    assert count(server, "message", subject=marker) == 0
    # a manager may not either (c on the list is not c for another uid)
    refused(user.api.post("/message", json={"list_id": lst["id"], "subject": marker,
                                            "uid": victim.uid}))
    assert count(server, "message", subject=marker) == 0


@pytest.mark.parametrize("how", ["patch", "put", "react-admin"])
def test_owner_member_cannot_hand_own_post_to_someone_else(server, user, other_user, victim,
                                                           how):
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "member")
    add_member(user.api, lst["id"], victim.uid, "member")
    msg = post(other_user.api, lst["id"])
    if how == "react-admin":
        resp = _ra_put(server, other_user, f"/message/{msg['id']}",
                       {**other_user.api.get(f"/message/{msg['id']}").json(),
                        "uid": victim.uid})
        assert resp.status_code in (403, 404), resp.text
    else:
        refused(getattr(other_user.api, how)(f"/message/{msg['id']}",
                                             json={"uid": victim.uid}))
    assert stored(server, "message", msg["id"])["uid"] == other_user.uid


def test_owner_manager_cannot_reassign_a_members_post(server, user, other_user, third):
    """A manager (u on every message of the list) moves a member's post to themself."""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "manager")
    add_member(user.api, lst["id"], third.uid, "member")
    msg = post(third.api, lst["id"])
    refused(other_user.api.patch(f"/message/{msg['id']}", json={"uid": other_user.uid}))
    assert stored(server, "message", msg["id"])["uid"] == third.uid


CREATE_FOR_OTHER = {
    "list": lambda m: {"name": m},
    "category": lambda m: {"name": m},
    "contact": lambda m: {"info": f"{m}@example.com"},
    "apikey": lambda m: {"name": m},
}


@pytest.mark.parametrize("resource", sorted(CREATE_FOR_OTHER))
def test_owner_user_cannot_create_records_for_another_uid(server, user, victim, resource):
    marker = f"for-{secrets.token_hex(4)}"
    body = {**CREATE_FOR_OTHER[resource](marker), "uid": victim.uid}
    refused(user.api.post(f"/{resource}", json=body))
    name = "info" if resource == "contact" else "name"
    assert count(server, resource, **{name: body[name]}) == 0


@pytest.mark.parametrize("resource", sorted(CREATE_FOR_OTHER))
def test_owner_user_cannot_give_own_record_away(server, user, victim, resource):
    """Moving my record to someone else: spends their quotas, or makes a key act as them."""
    marker = f"mine-{secrets.token_hex(4)}"
    made = user.api.post(f"/{resource}", json=CREATE_FOR_OTHER[resource](marker))
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    for how in ("patch", "put"):
        refused(getattr(user.api, how)(f"/{resource}/{rid}", json={"uid": victim.uid}))
    assert stored(server, resource, rid)["uid"] == user.uid


def test_owner_settings_cannot_be_moved(server, user, victim):
    settings = user.api.get("/settings")
    assert settings.status_code == 200, settings.text
    items = settings.json()["items"]
    assert items, settings.text
    sid = items[0]["id"]
    resp = user.api.patch(f"/settings/{sid}", json={"uid": victim.uid})
    assert resp.status_code in (400, 403, 404), resp.text
    assert stored(server, "settings", sid)["uid"] == user.uid


@pytest.mark.parametrize("field", ["uid", "list_id"])
def test_owner_manager_cannot_move_a_membership(server, user, other_user, third, victim,
                                                field):
    """A manager may add, change and remove members, but moving an existing membership
    to another person (or another list) is only for listmember:* principals."""
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "manager")
    row = add_member(other_user.api, lst["id"], third.uid, "member")
    other = new_list(other_user.api)  # a list the manager owns
    target = victim.uid if field == "uid" else other["id"]
    refused(other_user.api.patch(f"/listmember/{row['id']}", json={field: target}))
    now = stored(server, "listmember", row["id"])
    assert (now["uid"], now["list_id"]) == (third.uid, lst["id"])


def test_owner_member_cannot_take_over_someone_elses_invitation(server, user, other_user,
                                                                third):
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "member")
    invite = add_member(user.api, lst["id"], third.uid, "invitee")
    refused(other_user.api.patch(f"/listmember/{invite['id']}",
                                 json={"uid": other_user.uid, "authorization": "member"}))
    now = stored(server, "listmember", invite["id"])
    assert (now["uid"], now["authorization"]) == (third.uid, "invitee")


def test_owner_admin_may_assign_and_move(server, admin, user, third, victim):
    """The control: admin (a {resource}:* principal) creates for and moves to others."""
    made = admin.api.post("/category", json={"name": f"a-{secrets.token_hex(3)}",
                                             "uid": user.uid})
    assert made.status_code == 201 and made.json()["uid"] == user.uid, made.text
    moved = admin.api.patch(f"/category/{made.json()['id']}", json={"uid": victim.uid})
    assert moved.status_code == 200 and moved.json()["uid"] == victim.uid, moved.text
    lst = new_list(user.api, privacy="invitee")
    row = add_member(user.api, lst["id"], victim.uid, "member")
    moved = admin.api.patch(f"/listmember/{row['id']}", json={"uid": third.uid})
    assert moved.status_code == 200, moved.text


# == hole 7: can-i does not leak =================================================================

_PATH = re.compile(r"(?:^|[\s'\"(=:,\[])(?:/[^\s/'\"]+/|[A-Za-z]:\\)")


def _no_path(reason: str) -> None:
    assert ROOT not in reason and "/rbac.yaml" not in reason and not _PATH.search(reason), \
        f"path in reason: {reason!r}"


@pytest.mark.parametrize("privacy", ["invitee", "member", "manager", "secret"])
def test_can_i_unreadable_message_answers_as_missing(server, user, other_user, third,
                                                    privacy):
    """The attacker probes message ids: an existing one they can't read and a made-up
    one must give the same answer, for every action, and never their privacy."""
    lst = new_list(user.api)
    add_member(user.api, lst["id"], other_user.uid, "invitee")
    msg = post(user.api, lst["id"], privacy=privacy)
    stranger = third  # no member of this list
    missing = new_id(server.settings.id_prefix)
    # (the invitee reads the list, and an invitee-privacy message, not the others)
    for who in (stranger,) if privacy == "invitee" else (stranger, other_user):
        for action in "rudl":
            seen = can_i(who.api, action, "message", msg["id"])
            none = can_i(who.api, action, "message", missing)
            assert not seen["allowed"]
            assert without_id(seen, msg["id"]) == without_id(none, missing), (seen, none)
            # the record's privacy never shows (the missing one has none to show)
            assert f"'{privacy}'" not in seen["reason"], seen
            _no_path(seen["reason"])


def test_can_i_create_in_unreadable_list_answers_as_missing(server, user, other_user):
    hidden = new_list(user.api)
    missing = new_id(server.settings.id_prefix)
    for resource in ("message", "listmember"):
        seen = can_i(other_user.api, "c", resource, hidden["id"])
        none = can_i(other_user.api, "c", resource, missing)
        assert not seen["allowed"]
        assert without_id(seen, hidden["id"]) == without_id(none, missing), (seen, none)


def test_can_i_unreadable_list_person_contact_answer_as_missing(server, user, other_user):
    lst = new_list(user.api, privacy="member")
    contact = user.api.post("/contact", json={"info": "me@example.com", "privacy": "secret"})
    assert contact.status_code == 201, contact.text
    missing = new_id(server.settings.id_prefix)
    for resource, rid in (("list", lst["id"]), ("person", user.uid),
                          ("contact", contact.json()["id"])):
        for action in "rud":
            seen = can_i(other_user.api, action, resource, rid)
            none = can_i(other_user.api, action, resource, missing)
            assert without_id(seen, rid) == without_id(none, missing), (resource, seen, none)


def test_can_i_reasons_name_the_policy_entry_never_a_path(server, user, other_user):
    lst = new_list(user.api, privacy="invitee")
    add_member(user.api, lst["id"], other_user.uid, "invitee")
    msg = post(user.api, lst["id"], privacy="member")
    answers = [can_i(user.api, "u", "list", lst["id"]),
               can_i(other_user.api, "u", "list", lst["id"]),
               can_i(other_user.api, "r", "list", lst["id"]),
               can_i(other_user.api, "r", "message", msg["id"]),
               can_i(other_user.api, "c", "message", lst["id"]),
               can_i(other_user.api, "c", "category"),
               can_i(user.api, "d", "message", msg["id"])]
    for answer in answers:
        _no_path(answer["reason"])
    yes = answers[0]
    assert yes["allowed"] and re.search(r"policies\.list\[\d+\]", yes["reason"]), yes


def test_can_i_anonymous_is_401(server):
    assert_problem(server.anonymous().get("/auth/can-i", params={"action": "r",
                                                                 "resource": "list"}), 401)


# == memberships that work ========================================================================

def test_membership_member_of_new_secret_list_reads_posts_and_invites(server, user,
                                                                     other_user, third):
    """Lists are created secret: their members must still be able to use them."""
    lst = new_list(user.api)
    assert lst["privacy"] == "secret"
    add_member(user.api, lst["id"], other_user.uid, "member")
    got = other_user.api.get(f"/list/{lst['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["rbac"] == "gijlr"
    assert can_i(other_user.api, "c", "message", lst["id"])["allowed"]
    msg = post(other_user.api, lst["id"])
    assert can_i(other_user.api, "i", "list", lst["id"])["allowed"]
    invite = other_user.api.post("/listmember", json={"list_id": lst["id"], "uid": third.uid,
                                                      "authorization": "invitee"})
    assert invite.status_code == 201, invite.text
    # the invitee reads the secret list too, but not the member-privacy message
    assert third.api.get(f"/list/{lst['id']}").json()["rbac"] == "jlr"
    assert_problem(third.api.get(f"/message/{msg['id']}"), 404)
    found = other_user.api.get("/list", params={"filter": json.dumps({"id": lst["id"]})})
    assert found.json()["count"] == 1


def test_membership_manager_of_secret_list_manages_it(server, user, other_user, third):
    lst = new_list(user.api)
    add_member(user.api, lst["id"], other_user.uid, "manager")
    assert other_user.api.get(f"/list/{lst['id']}").json()["rbac"] == "ghijlru"
    assert other_user.api.patch(f"/list/{lst['id']}", json={"description": "x"}) \
        .status_code == 200
    row = add_member(other_user.api, lst["id"], third.uid, "member")
    assert other_user.api.patch(f"/listmember/{row['id']}", json={"authorization": "manager"}) \
        .status_code == 200
    assert other_user.api.delete(f"/listmember/{row['id']}").status_code == 200
    # but not delete the list (no d), nor give it away (owner rule)
    assert_problem(other_user.api.delete(f"/list/{lst['id']}"), 403)


@pytest.mark.parametrize("privacy", ["member", "manager", "secret"])
def test_membership_invitee_accepts_whatever_the_list_privacy(server, user, other_user,
                                                              privacy):
    """Invitees of a member-privacy list could never accept: they could not read it."""
    lst = new_list(user.api, privacy=privacy)
    invite = add_member(user.api, lst["id"], other_user.uid, "invitee")
    assert other_user.api.get(f"/list/{lst['id']}").status_code == 200
    row = other_user.api.get(f"/listmember/{invite['id']}")
    assert row.status_code == 200 and "u" in row.json()["rbac"], row.text
    assert can_i(other_user.api, "u", "listmember", invite["id"])["allowed"]
    assert can_i(other_user.api, "j", "list", lst["id"])["allowed"]
    accepted = other_user.api.patch(f"/listmember/{invite['id']}",
                                    json={"authorization": "member"})
    assert accepted.status_code == 200, accepted.text
    post(other_user.api, lst["id"])
    # accepting is as far as j goes
    assert other_user.api.patch(f"/listmember/{invite['id']}",
                                json={"authorization": "manager"}).status_code == 403
    assert stored(server, "listmember", invite["id"])["authorization"] == "member"


def test_membership_filter_by_unreadable_list_only_narrows(server, user, other_user):
    """Naming a list I can't read in a filter matches the rows of it I may read."""
    lst = new_list(user.api)  # secret, other_user is no member
    public = post(user.api, lst["id"], privacy="public")
    post(user.api, lst["id"], privacy="member")
    for flt, expected in (({"list_id": lst["id"]}, [public["id"]]),
                          ({"list_id": [lst["id"], "x-nosuchlist000"]}, [public["id"]]),
                          ({"list_id": "x-nosuchlist000"}, [])):
        resp = other_user.api.get("/message", params={"filter": json.dumps(flt)})
        assert resp.status_code == 200, resp.text
        assert [i["id"] for i in resp.json()["items"]] == expected
        assert resp.json()["count"] == len(expected)
    for resource, flt in (("listmember", {"list_id": lst["id"]}),
                          ("list", {"uid": user.uid, "id": lst["id"]}),
                          ("category", {"uid": user.uid}),
                          ("list", {"category_id": "x-nosuchcat0000"})):
        resp = other_user.api.get(f"/{resource}", params={"filter": json.dumps(flt)})
        assert resp.status_code == 200 and resp.json()["count"] == 0, (resource, resp.text)


def test_membership_rows_of_a_listing_stay_visible_filtered_by_their_own_list(
        server, user, other_user):
    mine = new_list(user.api, privacy="invitee")
    add_member(user.api, mine["id"], other_user.uid, "member")
    elsewhere = new_list(user.api, privacy="secret")
    tag = f"seen-{secrets.token_hex(3)}"
    for lst in (mine, elsewhere):
        for p in PRIVACY:
            post(user.api, lst["id"], subject=f"{tag}-{p}", privacy=p)
    plain = other_user.api.get("/message", params={"filter": json.dumps({"subject": f"{tag}%"}),
                                                   "limit": 100}).json()["items"]
    assert {i["list_id"] for i in plain} == {mine["id"], elsewhere["id"]}
    for item in plain:
        flt = {"list_id": item["list_id"], "subject": f"{tag}%"}
        narrowed = other_user.api.get("/message", params={"filter": json.dumps(flt),
                                                          "limit": 100})
        assert narrowed.status_code == 200, narrowed.text
        assert item["id"] in [i["id"] for i in narrowed.json()["items"]]


def test_membership_payload_ids_are_still_checked(server, user, other_user):
    """In a payload, a list I can't use is a 404 naming the field, as if it did not exist."""
    hidden = new_list(user.api)
    readable = new_list(user.api, privacy="public")
    cat = user.api.post("/category", json={"name": f"c{secrets.token_hex(3)}"}).json()
    mine = new_list(other_user.api)
    msg = post(other_user.api, mine["id"])
    for list_id in (hidden["id"], readable["id"], "x-nosuchlist000"):
        assert_problem(other_user.api.post("/message", json={"list_id": list_id}), 404,
                       "list_id")
        assert_problem(other_user.api.patch(f"/message/{msg['id']}",
                                            json={"list_id": list_id}), 404, "list_id")
        assert_problem(other_user.api.post("/listmember", json={"list_id": list_id}), 404,
                       "list_id")
    assert_problem(other_user.api.post("/list", json={"name": "x", "category_id": cat["id"]}),
                   404, "category_id")
    assert stored(server, "message", msg["id"])["list_id"] == mine["id"]


@pytest.mark.parametrize("privacy", PRIVACY)
def test_membership_can_i_post_agrees_with_posting(server, user, posters, privacy):
    """If can-i c message <list> says yes, the post succeeds; if no, it is refused."""
    lst = new_list(user.api, privacy=privacy)
    people = posters
    for level, who in people.items():
        if level != "none":
            add_member(user.api, lst["id"], who.uid, level)
    for level, who in [*people.items(), ("owner", user)]:
        answer = can_i(who.api, "c", "message", lst["id"])
        resp = who.api.post("/message", json={"list_id": lst["id"], "subject": level})
        assert answer["allowed"] == (resp.status_code == 201), (level, answer, resp.text)
        assert answer["allowed"] == (level in ("member", "manager", "owner")), (level, answer)


def test_membership_rbac_letters_agree_with_outcomes_for_every_level(server, user, posters):
    """For each level, every letter in rbac works and every letter missing is refused,
    on the list and on a member-privacy message of it."""
    lst = new_list(user.api)
    msg = post(user.api, lst["id"], privacy="member")
    for level in ("invitee", "member", "manager"):
        who = posters[level]
        add_member(user.api, lst["id"], who.uid, level)
        for resource, rid, body in (("list", lst["id"], {"description": "same"}),
                                    ("message", msg["id"], {"subject": "hello"})):
            got = who.api.get(f"/{resource}/{rid}")
            if got.status_code == 404:
                assert resource == "message" and level == "invitee", (level, resource)
                assert not can_i(who.api, "r", resource, rid)["allowed"]
                continue
            letters = got.json()["rbac"]
            for action in "rud":
                assert can_i(who.api, action, resource, rid)["allowed"] == (action in letters)
            resp = who.api.patch(f"/{resource}/{rid}", json=body)
            assert (resp.status_code == 200) == ("u" in letters), (level, resource, resp.text)
