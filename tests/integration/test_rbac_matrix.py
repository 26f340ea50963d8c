"""The RBAC matrix: every role x action x privacy level against a reference evaluator.

``tests/rbac_reference.py`` reads rbac.yaml and the OpenAPI documents itself and says,
independently of ``apicrud.access``, what each request must answer (CONTRACT 1, 3, 5).
For each (resource, privacy) one world is built, directly in the database and only
once per module: an owner, a list they own (privacy ``invitee`` so that its members
may read it, except for the ``list`` resource itself, whose privacy is the one under
test), the record under test, and three users who are invitee, member and manager of
that list. Around them: an unrelated user, a pending account, an administrator and
anonymous. Then one generated test per role x action compares the HTTP answer with the
reference:

- ``get``: 200 (and ``rbac`` = the letters held) or 404; 401 for anonymous;
- ``find``: the record is in ``?filter={"id": ...}`` (and ``count`` is 1) iff ``l`` is held;
- ``update``: a PUT and a PATCH that change nothing: 200, 403 (readable, not writable)
  or 404;
- ``delete``: 200, 403 or 404; a record trashed by the test is put back afterwards;
- ``create`` (message, listmember): a POST naming the world's list: 201, or 404 naming
  ``list_id`` (list not readable, or no ``c`` there: indistinguishable); listmember
  creates follow the membership controller's h/i/j rules.

For ``listmember`` the variants are whose membership row is under test (the owner's own
row in their list, or the invitee's, member's or manager's); ``owner`` is always the
owner of the list and, elsewhere, of the record.

Cases where the service disagrees with the reference are marked ``xfail(strict=True)``
in ``KNOWN`` below, with the rule involved.

After the matrix: membership changes taking effect on the next request, trashing a list,
refusing a message for an unusable list with nothing written, and keyset paging that
returns exactly the readable rows.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from sqlalchemy import delete, func, select, update
from sqlalchemy import inspect as sa_inspect

from apicrud.db.base import new_id
from conftest import ROOT, Api, User, make_user, random_account
from rbac_reference import ANONYMOUS, Caller, Reference, World
from test_crud import assert_problem

PRIVACY = ("public", "invitee", "member", "manager", "secret")
ROLES = ("anonymous", "pending", "owner", "unrelated", "invitee", "member", "manager", "admin")
LEVELS = ("invitee", "member", "manager")
ACTIONS = ("get", "find", "update", "delete", "trash")
HOLDERS = ("of-owner", "of-invitee", "of-member", "of-manager")
#: resource -> (variants, field rewritten with its own value by the update test)
RESOURCES = {
    "list": (PRIVACY, "description"),
    "message": (PRIVACY, "subject"),
    "listmember": (HOLDERS, "authorization"),
    "category": (("none",), "description"),
    "contact": (PRIVACY, "label"),
    "person": (PRIVACY, "name"),
}
#: creates naming the world's list: resource -> (variant of the world used, kinds)
CREATES = {
    "message": ("member", ("post",)),
    "listmember": ("of-owner", ("add-invitee", "add-member", "add-manager", "add-self")),
}
#: ids in a body that name other records: field -> resource
REFERENCES = {"list_id": "list", "uid": "person"}
UNIQUE = {"listmember": (("list_id", "uid"),)}

# The service disagrees with the reference here; see the module docstring.
KNOWN: dict[str, str] = {}  # case id -> reason, for disagreements under investigation


def _cases():
    out = []
    for resource, (variants, _) in RESOURCES.items():
        for variant in variants:
            for role in ROLES:
                for action in ACTIONS:
                    out.append((resource, variant, role, action,
                                f"{resource}-{variant}-{role}-{action}"))
    for resource, (_, kinds) in CREATES.items():
        for role in ROLES:
            for kind in kinds:
                out.append((resource, "create", role, kind, f"{resource}-create-{role}-{kind}"))
    params = []
    for resource, variant, role, action, id_ in out:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN[id_])] if id_ in KNOWN else []
        params.append(pytest.param(resource, variant, role, action, id=id_, marks=marks))
    assert set(KNOWN) <= {p.id for p in params}, "KNOWN names a case that does not exist"
    return params


CASES = _cases()


@pytest.fixture(scope="module")
def ref(server) -> Reference:
    s = server.settings
    return Reference(os.path.join(ROOT, s.rbac_file), os.path.join(ROOT, s.openapi_dir))


# -- people and worlds ------------------------------------------------------------------

def make_pending_user(server) -> User:
    """An account awaiting confirmation (status pending), signed in."""
    with server.services.db.session() as session, session.begin():
        username, password, uid, account_id = random_account(
            session, server.settings, prefix="pend", status="pending")
    resp = requests.post(server.url + "/auth", json={"username": username,
                                                     "password": password}, timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.json()["roles"] == ["pending"]
    token = resp.json()["token"]
    return User(username, password, uid, account_id, Api(server.url, token), token)


@dataclass
class People:
    users: dict[str, User]  # role -> user (owner: the shared owner of non-person worlds)
    callers: dict[str, Caller]

    def uids(self) -> list[str]:
        return [u.uid for u in self.users.values()]


def _caller(user: User, role: str) -> Caller:
    return Caller(uid=user.uid, is_admin=role == "admin",
                  status="pending" if role == "pending" else "active", name=role)


@pytest.fixture(scope="module")
def people(server, admin) -> People:
    users = {role: make_user(server, prefix=role[:4]) for role in
             ("owner", "unrelated", "invitee", "member", "manager")}
    users["pending"] = make_pending_user(server)
    users["admin"] = admin
    return People(users, {role: _caller(u, role) for role, u in users.items()})


@dataclass
class Built:
    world: World  # the reference's view of the database
    owner: User
    owner_caller: Caller
    list_id: str
    records: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    uids: list[str] = field(default_factory=list)


class Worlds:
    """Builds each (resource, variant) world once, on first use, directly in the DB."""

    def __init__(self, server, people: People) -> None:
        self.server = server
        self.people = people
        self.cache: dict[tuple[str, str], Built] = {}

    def get(self, resource: str, variant: str) -> Built:
        key = (resource, "*" if resource == "listmember" else variant)
        if key not in self.cache:
            self.cache[key] = self.build(resource, variant)
        return self.cache[key]

    def build(self, resource: str, variant: str) -> Built:
        server, people = self.server, self.people
        services = server.services
        prefix = server.settings.id_prefix
        # a person's privacy is the one under test: that world has its own owner
        owner = make_user(server, prefix="pown") if resource == "person" \
            else people.users["owner"]
        owner_caller = Caller(uid=owner.uid, name="owner")
        world = World()
        for u in [owner, *people.users.values()]:
            world.add("person", id=u.uid, name=u.username, privacy="member")
        tag = secrets.token_hex(4)
        list_privacy = variant if resource == "list" else "invitee"
        lst = world.add("list", id=new_id(prefix), name=f"world-{tag}", description="d",
                        privacy=list_privacy, uid=owner.uid, category_id=None)
        built = Built(world, owner, owner_caller, lst["id"])
        rows = {"of-" + level: world.add("listmember", id=new_id(prefix), list_id=lst["id"],
                                         uid=people.users[level].uid, authorization=level)
                for level in LEVELS}
        if resource == "listmember":
            rows["of-owner"] = world.add("listmember", id=new_id(prefix), list_id=lst["id"],
                                         uid=owner.uid, authorization="member")
            built.records = {k: ("listmember", v) for k, v in rows.items()}
        elif resource == "list":
            built.records[variant] = ("list", lst)
        elif resource == "message":
            built.records[variant] = ("message", world.add(
                "message", id=new_id(prefix), list_id=lst["id"], subject="s", content="c",
                privacy=variant, uid=owner.uid))
        elif resource == "category":
            built.records[variant] = ("category", world.add(
                "category", id=new_id(prefix), name=f"cat-{tag}", description="d",
                uid=owner.uid))
        elif resource == "contact":
            built.records[variant] = ("contact", world.add(
                "contact", id=new_id(prefix), info=f"c{tag}@example.com", type="email",
                label="home", privacy=variant, uid=owner.uid))
        elif resource == "person":
            rec = world.get("person", owner.uid)
            rec["privacy"] = variant
            built.records[variant] = ("person", rec)
        with services.db.session() as session, session.begin():
            for res in ("list", "listmember", "message", "category", "contact"):
                model = services.resources[res].model
                for values in world.rows(res):
                    session.add(model(**values))
                    session.flush()
            if resource == "person":
                person = services.resources["person"].model
                session.execute(update(person).where(person.id == owner.uid)
                                .values(privacy=variant))
        built.uids = [owner.uid, *people.uids()]
        services.roles.uncache(*built.uids)
        return built


@pytest.fixture(scope="module")
def worlds(server, people) -> Worlds:
    return Worlds(server, people)


# -- the matrix ---------------------------------------------------------------------------

def _who(role: str, built: Built, people: People, server) -> tuple[Caller, Api]:
    if role == "anonymous":
        return ANONYMOUS, server.anonymous()
    if role == "owner":
        return built.owner_caller, built.owner.api
    return people.callers[role], people.users[role].api


def _snapshot(server, resource: str, id_: str) -> dict[str, Any]:
    """Every column of a record as stored now (to put it back exactly after a delete)."""
    services = server.services
    model = services.resources[resource].model
    with services.db.session() as session:
        row = session.get(model, id_)
        return {a.key: getattr(row, a.key) for a in sa_inspect(model).column_attrs}


def _restore(server, built: Built, resource: str, snapshot: dict[str, Any]) -> None:
    """Put back a record the test trashed, and forget cached roles it may have changed."""
    services = server.services
    model = services.resources[resource].model
    with services.db.session() as session, session.begin():
        session.execute(update(model).where(model.id == snapshot["id"]).values(**snapshot))
    services.roles.uncache(*built.uids)


def _remove_created(server, built: Built, resource: str, id_: str) -> None:
    services = server.services
    model = services.resources[resource].model
    with services.db.session() as session, session.begin():
        session.execute(delete(model).where(model.id == id_))
    services.roles.uncache(*built.uids)


def _check_status(resp, expected: int, fields=frozenset()) -> None:
    if expected >= 400:
        body = assert_problem(resp, expected)
        if fields:
            assert set(body.get("errors") or {}) & set(fields), \
                f"404 should name one of {sorted(fields)}: {body}"
    else:
        assert resp.status_code == expected, resp.text


@pytest.mark.parametrize("resource,variant,role,action", CASES)
def test_matrix(server, ref, people, worlds, resource, variant, role, action):
    if variant == "create":
        return _create_case(server, ref, people, worlds, resource, role, action)
    built = worlds.get(resource, variant)
    caller, api = _who(role, built, people, server)
    res, record = built.records[variant]
    world = built.world
    rid = record["id"]
    if action == "get":
        expected = ref.get(world, caller, res, record)
        resp = api.get(f"/{res}/{rid}")
        _check_status(resp, expected)
        if expected == 200:
            assert resp.json()["id"] == rid
            assert resp.json()["rbac"] == ref.letters(world, caller, res, record), \
                f"rbac of {role} on {res} {variant}"
    elif action == "find":
        listed = ref.listed(world, caller, res, record)
        resp = api.get(f"/{res}", params={"filter": json.dumps({"id": rid})})
        if listed is None:
            assert_problem(resp, 401)
            return
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert [i["id"] for i in body["items"]] == ([rid] if listed else [])
        assert body["count"] == (1 if listed else 0)
        assert resp.headers["X-Total-Count"] == str(body["count"])
        if listed:
            assert body["items"][0]["rbac"] == ref.letters(world, caller, res, record)
    elif action == "update":
        name = RESOURCES[resource][1]
        expected = ref.write(world, caller, "u", res, record)
        for method in (api.patch, api.put):
            resp = method(f"/{res}/{rid}", json={name: record[name]})
            _check_status(resp, expected)
            if expected == 200:
                assert resp.json()["id"] == rid and resp.json()[name] == record[name]
    elif action == "trash":
        _trash_case(server, ref, built, caller, api, res, record)
    elif action == "delete":
        expected = ref.write(world, caller, "d", res, record)
        before = _snapshot(server, res, rid)
        resp = api.delete(f"/{res}/{rid}")
        try:
            _check_status(resp, expected)
            if expected == 200:
                assert resp.json()["id"] == rid
                assert resp.json()["status"] == "disabled"
        finally:
            if resp.status_code == 200:
                _restore(server, built, res, before)


def _trash_case(server, ref, built, caller, api, res, record):
    """In the trashcan, a record is seen, listed and restored exactly by those who may
    delete it (d), per rbac.yaml; others get 404, anonymous 401."""
    world, rid = built.world, record["id"]
    may = caller.authenticated and ref.holds(world, caller, "d", res, record)
    expected = 401 if not caller.authenticated else (200 if may else 404)
    before = _snapshot(server, res, rid)
    services = server.services
    model = services.resources[res].model
    with services.db.session() as session, session.begin():
        session.execute(update(model).where(model.id == rid).values(status="disabled",
                                                                     live=None))
    services.roles.uncache(*built.uids)
    tid = f"{res}-{rid}"
    try:
        _check_status(api.get(f"/trashcan/{tid}"), expected)
        listed = api.get("/trashcan", params={"filter": json.dumps({"resource": res}),
                                              "limit": 1000})
        if expected == 401:
            assert_problem(listed, 401)
        else:
            assert (tid in [e["id"] for e in listed.json()["items"]]) == may
        _check_status(api.put(f"/trashcan/{tid}", json={"status": "active"}), expected)
    finally:
        _restore(server, built, res, before)


def _create_case(server, ref, people, worlds, resource, role, kind):
    built = worlds.get(resource, CREATES[resource][0])
    caller, api = _who(role, built, people, server)
    world = built.world
    services = server.services
    if resource == "message":
        body = {"list_id": built.list_id, "subject": "new"}
    else:
        body = {"list_id": built.list_id}
        if kind != "add-self":
            # a person to add, who exists but is no member of anything
            person = services.resources["person"].model
            pid = new_id(server.settings.id_prefix)
            with services.db.session() as session, session.begin():
                session.add(person(id=pid, name="newcomer", privacy="member"))
            world.add("person", id=pid, name="newcomer", privacy="member")
            body.update(uid=pid, authorization=kind.split("-", 1)[1])
    expected = ref.create(world, caller, resource, body,
                          {k: v for k, v in REFERENCES.items()
                           if k in ref.fields.get(resource, ())},
                          UNIQUE.get(resource, ()))
    resp = api.post(f"/{resource}", json=body)
    try:
        _check_status(resp, expected.status, expected.fields)
        if expected.status == 201:
            assert resp.json()["list_id"] == built.list_id
            assert resp.json()["uid"] == body.get("uid", caller.uid)
    finally:
        if resp.status_code == 201:
            _remove_created(server, built, resource, resp.json()["id"])


# -- membership changes over time ---------------------------------------------------------

def _list_with_message(owner: User, privacy: str = "member") -> tuple[dict, dict]:
    lst = owner.api.post("/list", json={"name": f"l{secrets.token_hex(4)}",
                                        "privacy": "invitee"})
    assert lst.status_code == 201, lst.text
    msg = owner.api.post("/message", json={"list_id": lst.json()["id"], "subject": "hello",
                                           "privacy": privacy})
    assert msg.status_code == 201, msg.text
    return lst.json(), msg.json()


def _add(owner: User, list_id: str, who: User, level: str) -> dict:
    resp = owner.api.post("/listmember", json={"list_id": list_id, "uid": who.uid,
                                               "authorization": level})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _ref_world(lst: dict, rows: list[dict], *records: tuple[str, dict]) -> World:
    world = World()
    world.add("list", **lst)
    for row in rows:
        world.add("listmember", **row)
    for res, rec in records:
        world.add(res, **rec)
    return world


def test_removed_member_loses_access_on_next_request(ref, user, other_user):
    lst, msg = _list_with_message(user)
    row = _add(user, lst["id"], other_user, "member")
    got = other_user.api.get(f"/message/{msg['id']}")
    assert got.status_code == 200, got.text  # roles now cached for other_user
    me = Caller(uid=other_user.uid)
    world = _ref_world(lst, [row], ("message", msg))
    assert got.json()["rbac"] == ref.letters(world, me, "message", msg)
    removed = user.api.delete(f"/listmember/{row['id']}")
    assert removed.status_code == 200, removed.text
    assert_problem(other_user.api.get(f"/message/{msg['id']}"), 404)
    assert_problem(other_user.api.get(f"/list/{lst['id']}"), 404)
    found = other_user.api.get("/message", params={"filter": json.dumps({"id": msg["id"]})})
    assert found.json()["count"] == 0


def test_demoted_member_loses_rights_on_next_request(ref, user, other_user):
    lst, msg = _list_with_message(user, privacy="member")
    row = _add(user, lst["id"], other_user, "manager")
    me = Caller(uid=other_user.uid)
    world = _ref_world(lst, [row], ("message", msg))
    got = other_user.api.get(f"/message/{msg['id']}")
    assert got.status_code == 200 and \
        got.json()["rbac"] == ref.letters(world, me, "message", msg)
    assert other_user.api.patch(f"/message/{msg['id']}", json={"subject": "hello"}) \
        .status_code == 200  # a manager edits messages of the list
    demoted = user.api.patch(f"/listmember/{row['id']}", json={"authorization": "invitee"})
    assert demoted.status_code == 200, demoted.text
    world.get("listmember", row["id"])["authorization"] = "invitee"
    assert ref.get(world, me, "message", msg) == 404
    assert_problem(other_user.api.get(f"/message/{msg['id']}"), 404)
    assert_problem(other_user.api.patch(f"/message/{msg['id']}", json={"subject": "x"}), 404)
    got = other_user.api.get(f"/list/{lst['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["rbac"] == ref.letters(world, me, "list", lst)
    post = other_user.api.post("/message", json={"list_id": lst["id"], "subject": "x"})
    assert_problem(post, 404, "list_id")


def test_trashed_list_revokes_members_access_to_its_messages(user, other_user):
    lst, msg = _list_with_message(user)
    _add(user, lst["id"], other_user, "manager")
    assert other_user.api.get(f"/message/{msg['id']}").status_code == 200
    assert user.api.delete(f"/list/{lst['id']}").status_code == 200
    assert_problem(other_user.api.get(f"/message/{msg['id']}"), 404)
    found = other_user.api.get("/message", params={"filter": json.dumps({"id": msg["id"]})})
    assert found.status_code == 200 and found.json()["count"] == 0
    post = other_user.api.post("/message", json={"list_id": lst["id"], "subject": "x"})
    assert_problem(post, 404, "list_id")


def _count(server, resource: str, **where) -> int:
    services = server.services
    model = services.resources[resource].model
    with services.db.session() as session:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return session.execute(stmt).scalar_one()


def test_message_for_unusable_list_is_refused_and_nothing_written(server, user, other_user):
    hidden = user.api.post("/list", json={"name": "hidden", "privacy": "secret"}).json()
    _, invited_msg = _list_with_message(user)
    invited = invited_msg["list_id"]
    _add(user, invited, other_user, "invitee")  # may read the list, not post there
    mine = other_user.api.post("/list", json={"name": "mine"}).json()
    own_msg = other_user.api.post("/message", json={"list_id": mine["id"], "subject": "m"})
    assert own_msg.status_code == 201, own_msg.text
    before = _count(server, "message")
    for list_id in (hidden["id"], invited, "x-doesnotexist00"):
        resp = other_user.api.post("/message", json={"list_id": list_id, "subject": "x"})
        assert_problem(resp, 404, "list_id")
        # moving one's own message there is refused the same way
        moved = other_user.api.patch(f"/message/{own_msg.json()['id']}",
                                     json={"list_id": list_id})
        assert_problem(moved, 404, "list_id")
    assert _count(server, "message") == before
    assert _count(server, "message", id=own_msg.json()["id"], list_id=mine["id"]) == 1


def test_paging_as_member_returns_exactly_the_readable_rows(server, ref, user, other_user):
    """~60 messages of every privacy in two lists (caller member of one): cursor paging
    with limit 7 yields each readable row once, and ``count`` says how many there are."""
    services = server.services
    prefix = server.settings.id_prefix
    reader = other_user
    world = World()
    tag = "pg" + secrets.token_hex(4)
    lists = []
    for name in ("in", "out"):
        lists.append(world.add("list", id=new_id(prefix), name=f"{name}-{secrets.token_hex(3)}",
                               privacy="invitee", uid=user.uid))
    world.add("listmember", id=new_id(prefix), list_id=lists[0]["id"], uid=reader.uid,
              authorization="member")
    for i in range(60):
        author = reader.uid if i % 7 == 3 else user.uid
        world.add("message", id=new_id(prefix), list_id=lists[i % 2]["id"],
                  subject=f"{tag}-{i:02d}", privacy=PRIVACY[i % 5], uid=author)
    with services.db.session() as session, session.begin():
        for res in ("list", "listmember", "message"):
            model = services.resources[res].model
            for values in world.rows(res):
                session.add(model(**values))
            session.flush()
    services.roles.uncache(user.uid, reader.uid)
    me = Caller(uid=reader.uid)
    expected = {m["id"] for m in world.rows("message") if ref.holds(world, me, "l", "message", m)}
    assert 0 < len(expected) < 60
    # readable rows in both lists: the caller's own and public ones in the other list
    assert {world.get("message", i)["list_id"] for i in expected} == {lst["id"] for lst in lists}
    seen: list[str] = []
    # (a filter naming the list the reader may not read would be refused: select by subject)
    params = {"filter": json.dumps({"subject": f"{tag}-%"}), "limit": 7}
    for _ in range(20):
        resp = reader.api.get("/message", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["count"] == len(expected)
        assert len(body["items"]) <= 7
        for item in body["items"]:
            rec = world.get("message", item["id"])
            assert item["rbac"] == ref.letters(world, me, "message", rec)
        seen += [i["id"] for i in body["items"]]
        if "cursor_next" not in body:
            break
        params = {"cursor_next": body["cursor_next"]}
    else:
        pytest.fail("paging did not end")
    assert len(seen) == len(set(seen)), "a row came twice"
    assert set(seen) == expected
