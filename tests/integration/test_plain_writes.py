"""Attacks on the writes made with Core statements (``BasicCRUD.plain_writes``).

A single create or update of a plain resource (list, message, category) is an INSERT or
a versioned UPDATE instead of ORM objects and a flush. These tests take the attacker's
side: every refusal leaves nothing written (no row, no version bump, no audit entry), a
conflict rolls the whole request back, a stale version never overwrites, roles follow a
list moved to another owner at once. And they hold the Core path to an oracle that does
not share its reading: the same requests written by the ORM (the controller's writer
switched off) must answer, store and audit the same.
"""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from sqlalchemy import select

from helpers import assert_problem


def row(server, model_name, id_):
    model = getattr(server.services.models, model_name)
    with server.services.db.session() as db:
        found = db.execute(select(model.__table__).where(model.id == id_)).mappings().first()
        return dict(found) if found else None


def audit(server, **where):
    model = server.services.models.Audit
    with server.services.db.session() as db:
        rows = [dict(r) for r in db.execute(select(model.__table__).where(
            *(getattr(model, k) == v for k, v in where.items())).order_by(model.created))
            .mappings()]
    for entry in rows:
        entry["changes"] = json.loads(entry["changes"]) if entry["changes"] else {}
    return rows


@contextlib.contextmanager
def orm_writes(server, *resources):
    """Switch the Core writer of ``resources`` off (their writes go through the ORM)."""
    controllers = [server.services.controllers[name] for name in resources]
    saved = [c.row_writer for c in controllers]
    try:
        for c in controllers:
            c._row_writer = None
        yield
    finally:
        for c, writer in zip(controllers, saved, strict=True):
            c._row_writer = writer


def test_plain_resources_write_with_core_statements(server):
    controllers = server.services.controllers
    for name in ("list", "message", "category"):
        assert controllers[name].row_writer is not None, name
    # models a flush listener watches, and controllers with write hooks, keep the ORM
    for name in ("person", "account", "contact", "listmember", "file"):
        assert controllers[name].row_writer is None, name


def scrub(body):
    return {k: v for k, v in body.items() if k not in ("id", "created", "modified")}


def scrub_entry(entry):
    return {"action": entry["action"], "rule": entry["rule"], "resource": entry["resource"],
            "changes": {k: v for k, v in entry["changes"].items()
                        if k not in ("list_id", "name")}}


def write_story(api, name):
    """A list and a message created, changed (a field, a null, nothing), read back."""
    lst = api.post("/list", json={"name": name, "privacy": "member",
                                  "description": None})
    assert lst.status_code == 201, lst.text
    lid = lst.json()["id"]
    msg = api.post("/message", json={"list_id": lid, "subject": "s1", "content": "c"})
    assert msg.status_code == 201, msg.text
    mid = msg.json()["id"]
    replies = [lst, msg]
    tag = msg.headers["ETag"]
    for change in ({"subject": "s2", "content": None}, {"subject": "s2"},
                   {"privacy": "public"}, {}):
        resp = api.patch(f"/message/{mid}", json=change, headers={"If-Match": tag})
        assert resp.status_code == 200, resp.text
        tag = resp.headers["ETag"]
        replies.append(resp)
    got = api.get(f"/message/{mid}")
    return lid, mid, replies, got


def test_core_writes_answer_store_and_audit_as_the_orm_does(server, user):
    core = write_story(user.api, "story")
    with orm_writes(server, "list", "message"):
        orm = write_story(user.api, "story 2")
    for (_lid, mid, replies, got) in (core, orm):
        # the answers of the writes are what a read finds stored
        assert got.json() == replies[-1].json()
        assert got.headers["ETag"] == replies[-1].headers["ETag"]
        stored = row(server, "Message", mid)
        assert stored["version"] == 3 and stored["privacy"] == "public"
        assert stored["content"] is None and stored["modified"] is not None
    c_lid, c_mid, c_replies, _ = core
    o_lid, o_mid, o_replies, _ = orm
    for a, b in zip(c_replies, o_replies, strict=True):
        assert a.status_code == b.status_code
        assert scrub(a.json()) | {"list_id": None, "name": None} == \
            scrub(b.json()) | {"list_id": None, "name": None}
        assert set(a.headers) >= {"ETag"} and (("Location" in a.headers) ==
                                               ("Location" in b.headers))
    assert row(server, "Message", c_mid).keys() == row(server, "Message", o_mid).keys()
    for (c_id, o_id) in ((c_lid, o_lid), (c_mid, o_mid)):
        c_entries, o_entries = audit(server, record_id=c_id), audit(server, record_id=o_id)
        assert [scrub_entry(e) for e in c_entries] == [scrub_entry(e) for e in o_entries]
    # one create and two updates with changes (the unchanged ones write nothing)
    assert [e["action"] for e in audit(server, record_id=c_mid)] == \
        ["create", "update", "update"]


def batch_story(server, api, name):
    """A list, then a batch of messages in it (nulls, every privacy, a subject only)."""
    lid = api.post("/list", json={"name": name, "privacy": "member"}).json()["id"]
    items = [{"list_id": lid, "subject": f"b{i}", "content": None if i % 2 else "c",
              "privacy": privacy}
             for i, privacy in enumerate(("public", "invitee", "member", "manager", "secret"))]
    items.append({"list_id": lid, "subject": "plain"})
    resp = api.post("/message", json=items)
    assert resp.status_code == 201, resp.text
    ids = [item["id"] for item in resp.json()["items"]]
    stored = [row(server, "Message", id_) for id_ in ids]
    entries = [audit(server, record_id=id_) for id_ in ids]
    gets = [api.get(f"/message/{id_}").json() for id_ in ids]
    return resp, stored, entries, gets


def test_a_batch_written_with_core_answers_stores_and_audits_as_the_orm_does(server, user):
    """A batch create of a plain resource is one INSERT of every row; the ORM (the
    writer switched off) is the oracle: same answers, same stored rows, same audit."""
    core = batch_story(server, user.api, "batch")
    with orm_writes(server, "list", "message"):
        orm = batch_story(server, user.api, "batch 2")
    for resp, stored, _entries, gets in (core, orm):
        assert resp.json()["items"] == gets  # the answers are what is stored
        assert resp.json()["count"] == len(gets) == 6
        assert all(s is not None and s["version"] == 1 for s in stored)
    keep = ("subject", "content", "privacy", "status", "version", "uid", "modified")
    assert [{k: s[k] for k in keep} for s in core[1]] == \
        [{k: s[k] for k in keep} for s in orm[1]]
    assert [scrub(a) | {"list_id": None} for a in core[0].json()["items"]] == \
        [scrub(b) | {"list_id": None} for b in orm[0].json()["items"]]
    assert [[scrub_entry(e) for e in es] for es in core[2]] == \
        [[scrub_entry(e) for e in es] for es in orm[2]]
    assert all([e["action"] for e in es] == ["create"] for es in core[2])


def test_a_batch_is_one_insert_of_every_row(server, user):
    lid = user.api.post("/list", json={"name": "one insert"}).json()["id"]
    seen = []

    def note(_conn, _cursor, statement, parameters, _context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGE"):
            seen.append(statement)

    from sqlalchemy import event

    event.listen(server.services.db.engine, "before_cursor_execute", note)
    try:
        resp = user.api.post("/message", json=[{"list_id": lid, "subject": str(i)}
                                               for i in range(7)])
    finally:
        event.remove(server.services.db.engine, "before_cursor_execute", note)
    assert resp.status_code == 201, resp.text
    assert len(seen) == 1, seen  # (executemany, or one INSERT of many VALUES)
    assert len(resp.json()["items"]) == 7


def test_a_refused_create_writes_nothing(server, user, other_user):
    theirs = other_user.api.post("/list", json={"name": "private", "privacy": "secret"}).json()
    mine = user.api.post("/list", json={"name": "mine", "privacy": "member"}).json()
    before = len(audit(server, uid=user.uid))
    attempts = [
        ({"list_id": theirs["id"], "subject": "in"}, 404, "list_id"),  # not theirs to post
        # for someone else (whose person the caller may not even read)
        ({"list_id": mine["id"], "uid": other_user.uid}, 404, "uid"),
        ({"list_id": mine["id"], "status": "disabled"}, 400, "status"),  # read-only
        ({"list_id": mine["id"], "version": 7}, 400, "version"),
        ({"list_id": "x-doesnotexist00000", "subject": "ghost"}, 404, "list_id"),
    ]
    for body, status, field in attempts:
        resp = user.api.post("/message", json=body)
        assert_problem(resp, status)
        assert field in json.dumps(resp.json()), resp.text
    found = user.api.get("/message", params={"filter": json.dumps({"list_id": mine["id"]})})
    assert found.json()["count"] == 0
    assert len(audit(server, uid=user.uid)) == before


def test_a_conflicting_create_rolls_back_the_request(server, user):
    first = user.api.post("/list", json={"name": "twin"})
    assert first.status_code == 201
    before = audit(server, uid=user.uid)
    resp = user.api.post("/list", json={"name": "twin", "description": "second"})
    assert_problem(resp, 409)
    assert audit(server, uid=user.uid) == before
    lists = user.api.get("/list", params={"filter": json.dumps({"name": "twin"})}).json()
    assert lists["count"] == 1 and lists["items"][0]["description"] is None


def test_a_refused_update_changes_nothing(server, user, other_user):
    lst = user.api.post("/list", json={"name": "club", "privacy": "public"}).json()
    elsewhere = other_user.api.post("/list", json={"name": "away", "privacy": "secret"}).json()
    msg = user.api.post("/message", json={"list_id": lst["id"], "subject": "mine",
                                          "privacy": "public"}).json()
    before = row(server, "Message", msg["id"])
    entries = audit(server, record_id=msg["id"])
    # a reader who may not change it; the owner moving it where they may not post, or
    # giving it away; a stale ETag; a read-only field
    for api, body, headers, status in (
            (other_user.api, {"subject": "taken"}, {}, 403),
            (user.api, {"list_id": elsewhere["id"]}, {}, 404),
            (user.api, {"uid": other_user.uid}, {}, 404),
            (user.api, {"subject": "late"}, {"If-Match": '"0123456789abcdef0123"'}, 412),
            (user.api, {"created": "2020-01-01T00:00:00Z"}, {}, 400)):
        assert_problem(api.patch(f"/message/{msg['id']}", json=body, headers=headers),
                       status)
    assert row(server, "Message", msg["id"]) == before
    assert audit(server, record_id=msg["id"]) == entries


def test_two_writers_of_one_version_one_wins(server, user):
    lst = user.api.post("/list", json={"name": "race", "privacy": "member"}).json()
    msg = user.api.post("/message", json={"list_id": lst["id"], "subject": "v1"})
    tag = msg.headers["ETag"]
    mid = msg.json()["id"]
    won = user.api.patch(f"/message/{mid}", json={"subject": "a"}, headers={"If-Match": tag})
    assert won.status_code == 200
    assert_problem(user.api.patch(f"/message/{mid}", json={"subject": "b"},
                                  headers={"If-Match": tag}), 412)
    assert row(server, "Message", mid)["subject"] == "a"


def test_the_versioned_update_refuses_a_row_read_before_another_write(server, user):
    """Behind If-Match and the row lock: the UPDATE itself carries the version read, so a
    row changed since is never overwritten (the statement matches nothing)."""
    lst = user.api.post("/list", json={"name": "guard", "privacy": "member"}).json()
    mid = user.api.post("/message", json={"list_id": lst["id"], "subject": "v1"}).json()["id"]
    crud = server.services.controllers["message"]
    writer = crud.row_writer
    with server.services.db.session() as db:
        stmt = select(*crud.row_columns).where(crud.model.id == mid)
        stale = crud.row_class.of(crud.row_keys, db.connection().execute(stmt).one())
    assert user.api.patch(f"/message/{mid}", json={"subject": "v2"}).status_code == 200
    with server.services.db.session() as db, db.begin():
        written, _ = writer.update(db.connection(), stale, {"subject": "overwrite"})
    assert written is None
    stored = row(server, "Message", mid)
    assert stored["subject"] == "v2" and stored["version"] == 2


def test_a_list_moved_to_another_owner_moves_its_roles_at_once(server, admin, user,
                                                               other_user):
    lst = user.api.post("/list", json={"name": "handed over", "privacy": "secret"}).json()
    assert user.api.patch(f"/list/{lst['id']}", json={"description": "mine"}).ok
    assert_problem(other_user.api.get(f"/list/{lst['id']}"), 404)
    moved = admin.api.patch(f"/list/{lst['id']}", json={"uid": other_user.uid})
    assert moved.status_code == 200, moved.text
    # the new owner manages it and posts in it; the old one sees nothing of it any more
    assert other_user.api.patch(f"/list/{lst['id']}", json={"description": "theirs"}).ok
    assert other_user.api.post("/message", json={"list_id": lst["id"],
                                                 "subject": "hi"}).status_code == 201
    assert_problem(user.api.get(f"/list/{lst['id']}"), 404)
    assert_problem(user.api.post("/message", json={"list_id": lst["id"], "subject": "x"}),
                   404)
    (entry,) = [e for e in audit(server, record_id=lst["id"])
                if e["action"] == "update" and "uid" in e["changes"]]
    assert entry["changes"]["uid"] == {"old": user.uid, "new": other_user.uid}


@pytest.mark.parametrize("body", [{"name": None}, {"name": "x" * 65}, {"privacy": "nope"}])
def test_bad_input_on_the_core_path_is_a_problem_and_writes_nothing(server, user, body):
    lst = user.api.post("/list", json={"name": "kept"}).json()
    resp = user.api.patch(f"/list/{lst['id']}", json=body)
    assert 400 <= resp.status_code < 500, resp.text
    assert row(server, "List", lst["id"])["name"] == "kept"
    assert row(server, "List", lst["id"])["version"] == 1


def test_a_create_reads_its_list_and_its_author_in_one_statement(server, user):
    from sqlalchemy import event

    lst = user.api.post("/list", json={"name": "one read", "privacy": "member"}).json()
    engine = server.services.db.engine
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    for orm in (False, True):
        seen.clear()
        event.listen(engine, "before_cursor_execute", record)
        try:
            with orm_writes(server, "message") if orm else contextlib.nullcontext():
                resp = user.api.post("/message", json={"list_id": lst["id"], "subject": "s"})
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert resp.status_code == 201, resp.text
        # the statements reading the author's name (a grant's lock on the owner's person
        # row reads only its id)
        people = [s for s in seen if re.search(r"person(_\d+)?\.name", s)]
        assert len(people) == 1 and " list AS " in people[0].replace("\n", " "), seen
        got = user.api.get(f"/message/{resp.json()['id']}").json()
        assert resp.json()["author"] == got["author"] is not None
