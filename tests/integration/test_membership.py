"""Memberships (h, i, j), explain (can-i), related data and the cost of find."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import event

from helpers import ROOT, assert_problem, make_user


@pytest.fixture
def club(user):
    """A list owned by ``user`` that members can read (privacy invitee)."""
    resp = user.api.post("/list", json={"name": "club", "privacy": "invitee"})
    assert resp.status_code == 201
    return resp.json()


def add_member(api, list_id, uid, level="member"):
    return api.post("/listmember", json={"list_id": list_id, "uid": uid,
                                         "authorization": level})


def test_owner_adds_member_who_may_then_read_and_post(club, user, other_user):
    assert_problem(other_user.api.get(f"/list/{club['id']}"), 404)
    resp = add_member(user.api, club["id"], other_user.uid)
    assert resp.status_code == 201, resp.text
    assert other_user.api.get(f"/list/{club['id']}").json()["rbac"] == "gijlr"
    assert f"list-{club['id']}-member" in other_user.api.get("/auth").json()["roles"]
    post = other_user.api.post("/message", json={"list_id": club["id"], "subject": "hi"})
    assert post.status_code == 201, post.text


def test_invitee_may_read_but_not_post_then_join(club, user, other_user):
    invite = add_member(user.api, club["id"], other_user.uid, "invitee")
    assert invite.status_code == 201
    assert other_user.api.get(f"/list/{club['id']}").status_code == 200
    refused = other_user.api.post("/message", json={"list_id": club["id"], "subject": "x"})
    assert_problem(refused, 404, "list_id")
    # j: accept the invitation
    accepted = other_user.api.patch(f"/listmember/{invite.json()['id']}",
                                    json={"authorization": "member"})
    assert accepted.status_code == 200, accepted.text
    assert other_user.api.post("/message", json={"list_id": club["id"], "subject": "x"}) \
        .status_code == 201
    # but nobody promotes themselves to manager
    assert_problem(other_user.api.patch(f"/listmember/{invite.json()['id']}",
                                        json={"authorization": "manager"}), 403)


def test_members_may_invite_but_not_add_members_or_managers(server, club, user, other_user):
    third = make_user(server)
    add_member(user.api, club["id"], other_user.uid)
    assert_problem(add_member(other_user.api, club["id"], third.uid, "member"), 404, "list_id")
    assert_problem(add_member(other_user.api, club["id"], third.uid, "manager"), 404,
                   "list_id")
    assert add_member(other_user.api, club["id"], third.uid, "invitee").status_code == 201


def test_manager_manages_members(server, club, user, other_user):
    third = make_user(server)
    add_member(user.api, club["id"], other_user.uid, "manager")
    added = add_member(other_user.api, club["id"], third.uid, "member")
    assert added.status_code == 201, added.text
    assert other_user.api.patch(f"/listmember/{added.json()['id']}",
                                json={"authorization": "invitee"}).status_code == 200
    assert other_user.api.delete(f"/listmember/{added.json()['id']}").status_code == 200


def test_strangers_cannot_join_or_add_to_unreadable_lists(server, club, other_user):
    assert_problem(add_member(other_user.api, club["id"], other_user.uid), 404, "list_id")


def test_member_leaves_list(club, user, other_user):
    m = add_member(user.api, club["id"], other_user.uid).json()
    assert other_user.api.delete(f"/listmember/{m['id']}").status_code == 200
    assert_problem(other_user.api.get(f"/list/{club['id']}"), 404)


def test_duplicate_membership_is_409(club, user, other_user):
    assert add_member(user.api, club["id"], other_user.uid).status_code == 201
    assert_problem(add_member(user.api, club["id"], other_user.uid), 409)


def test_adding_unknown_person_is_404(club, user):
    assert_problem(add_member(user.api, club["id"], "x-nobody000000"), 404, "uid")


# -- explain ----------------------------------------------------------------------------

def test_can_i_answers_with_the_deciding_rule(club, user, other_user):
    mine = user.api.get("/auth/can-i", params={"action": "u", "resource": "list",
                                                "id": club["id"]}).json()
    assert mine["allowed"] and mine["answer"] == "yes"
    assert "policies.list[1]" in mine["reason"]
    theirs = other_user.api.get("/auth/can-i", params={"action": "u", "resource": "list",
                                                        "id": club["id"]}).json()
    assert not theirs["allowed"] and theirs["answer"] == "no"
    add_member(user.api, club["id"], other_user.uid)
    post = other_user.api.get("/auth/can-i", params={"action": "c", "resource": "message",
                                                      "id": club["id"]}).json()
    assert post["allowed"] and "list-{{list_id}}-member" in post["reason"]
    secret = other_user.api.post("/message", json={"list_id": club["id"],
                                                   "privacy": "manager"})
    assert secret.status_code == 201
    # the author may read it as author; another member may not, and is told why
    third_answer = user.api.get("/auth/can-i", params={"action": "r", "resource": "message",
                                                        "id": secret.json()["id"]}).json()
    assert third_answer["allowed"]


def test_can_i_unreadable_record_is_answered_as_missing(server, club, user, other_user):
    # an invitee may not read a member-privacy message: can-i says no exactly as it does
    # for an id that does not exist, and names neither the privacy nor the level
    add_member(user.api, club["id"], other_user.uid, "invitee")
    msg = user.api.post("/message", json={"list_id": club["id"], "privacy": "member"}).json()
    answers = [other_user.api.get("/auth/can-i", params={
        "action": "r", "resource": "message", "id": id_}).json() for id_ in
        (msg["id"], "x-doesnotexist00")]
    assert not answers[0]["allowed"] and not answers[1]["allowed"]
    assert answers[0]["reason"].replace(msg["id"], "ID") == \
        answers[1]["reason"].replace("x-doesnotexist00", "ID")
    assert "member" not in answers[0]["reason"] and "invitee" not in answers[0]["reason"]


def test_can_i_bad_input_is_400(user):
    assert_problem(user.api.get("/auth/can-i", params={"action": "x", "resource": "list"}),
                   400, "action")
    assert_problem(user.api.get("/auth/can-i", params={"action": "r", "resource": "nope"}),
                   400, "resource")


def test_cli_can_i_explains(server, club, user, other_user):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(APICRUD_DATA_DIR=str(server.settings.data_dir),
               APICRUD_SECRET_KEY=server.settings.secret_key,
               APICRUD_DATABASE_URL=server.settings.sqlalchemy_url,
               APICRUD_REDIS_URL=server.services.redis.url)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "apicrud.cli", "rbac", "can-i", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    yes = run("u", f"list:{club['id']}", "--as", user.username)
    assert yes.returncode == 0 and yes.stdout.startswith("yes:"), yes.stderr
    no = run("u", f"list:{club['id']}", "--as", other_user.username)
    assert no.returncode == 1 and no.stdout.startswith("no:"), no.stderr


# -- no scope jumps on output -------------------------------------------------------------

def test_related_author_shown_only_when_person_readable(club, user, other_user):
    add_member(user.api, club["id"], other_user.uid)
    msg = user.api.post("/message", json={"list_id": club["id"], "subject": "s"}).json()
    assert msg["author"] == user.api.get(f"/person/{user.uid}").json()["name"]
    seen = other_user.api.get(f"/message/{msg['id']}").json()
    assert seen["author"] is None  # the message is readable, its author's person is not
    listed = other_user.api.get("/message", params={"filter": f'{{"id": "{msg["id"]}"}}'})
    assert listed.json()["items"][0]["author"] is None
    user.api.patch(f"/person/{user.uid}", json={"privacy": "public"})
    assert other_user.api.get(f"/message/{msg['id']}").json()["author"] is not None



def test_callers_taking_turns_never_get_each_others_view(club, user, other_user):
    # statements are reused per caller's access: two callers alternating on one record
    # each keep their own answer, and a member removed mid-way loses the record at once
    added = add_member(user.api, club["id"], other_user.uid).json()
    msg = user.api.post("/message", json={"list_id": club["id"], "subject": "s"}).json()
    name = user.api.get(f"/person/{user.uid}").json()["name"]
    for _ in range(3):
        assert user.api.get(f"/message/{msg['id']}").json()["author"] == name
        assert other_user.api.get(f"/message/{msg['id']}").json()["author"] is None
    assert user.api.delete(f"/listmember/{added['id']}").status_code == 200
    assert_problem(other_user.api.get(f"/message/{msg['id']}"), 404)
    listed = other_user.api.get("/message", params={"filter": f'{{"id": "{msg["id"]}"}}'})
    assert listed.json()["count"] == 0 and listed.json()["items"] == []
    assert_problem(other_user.api.put(f"/message/{msg['id']}", json={"subject": "mine"}), 404)
    assert user.api.get(f"/message/{msg['id']}").json()["subject"] == "s"

# -- cost of find -----------------------------------------------------------------------------

class QueryCounter:
    def __init__(self, engine):
        self.engine = engine
        self.count = 0
        self.lock = threading.Lock()

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._on)

    def _on(self, *args, **kw):
        with self.lock:
            self.count += 1


def test_find_runs_bounded_queries_whatever_the_page_size(server, club, user, other_user):
    add_member(user.api, club["id"], other_user.uid)
    for i in range(60):
        user.api.post("/message", json={"list_id": club["id"], "subject": f"m{i}",
                                        "privacy": ["invitee", "member"][i % 2]})
    other_user.api.get("/auth")  # warm the roles cache
    counts = {}
    for size in (5, 50):
        with QueryCounter(server.services.db.engine) as qc:
            # counted each time (no-cache): a kept count would be a statement less
            resp = other_user.api.get("/message", params={"limit": size},
                                      headers={"Cache-Control": "no-cache"})
        assert resp.status_code == 200 and len(resp.json()["items"]) == size
        counts[size] = qc.count
    assert counts[5] == counts[50] <= 3, counts  # count, page, related authors
