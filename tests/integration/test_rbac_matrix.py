"""The RBAC matrix: every role x action x privacy level against a reference evaluator.

``tests/rbac_reference.py`` reads rbac.yaml and the OpenAPI documents itself and says,
independently of ``apicrud.access``, what each request must answer (CONTRACT 1, 3, 5 as
corrected by issue 11). Worlds are built directly in the database, each once per module
and on first use: an owner, a list they own, its invitee, member and manager, a
"victim" (another user whose person is public, so that refusing to hand them a record
is the owner rule and not the reference check), a newcomer to add to lists, and the
records under test. Around them: an unrelated user, a pending account, an administrator
and anonymous.

Worlds, per (kind, key):

- ``list``/p: the list itself has privacy p (list records; also where messages are
  posted and members added: "a list of every privacy level");
- ``message``/p: a list of privacy invitee holding a message of privacy p by the owner
  and one by the member (variants ``p`` and ``p-by-member``);
- ``listmember``/invitee: the membership rows of the owner (at level member), the
  invitee, the member and the manager (variants ``of-*``); /secret: those of the invitee
  and the member in a secret list (``secret-of-*``);
- ``category``, ``contact``/p, ``person``/p (a person world has its own owner).

One generated test per (resource, variant, role, action); each makes one request (plus
the ``can-i`` question it must agree with) and compares both with the reference:

- ``get``: 200 with ``rbac`` = the letters held, or 404; 401 for anonymous;
- ``find``: messages and members filtered by their list's id, other records by id (and
  owner): exactly the readable rows, never an error (ids in a filter only narrow);
- ``update``: a PATCH rewriting a field with its own value: 200, 403 or 404;
- ``delete``: 200, 403 or 404; a record trashed by the test is put back afterwards;
- ``chown`` (records with ``uid``): a PUT of ``uid`` to the caller (stealing) or, for the
  owner, admin and anyone not in the list, to the victim (giving away): only
  ``{resource}:*`` principals may (CONTRACT 3); refusals are 403 or 404, nothing written;
- ``trash``: the record trashed; ``GET /trashcan/<id>`` is 200 iff ``d`` is held and the
  record could be read live (see ``Reference.may_trash``: the security reading of an
  ambiguity), and ``PUT /trashcan/<id> {"status": "active"}`` succeeds iff it is seen
  and a create of the record as it is would pass now; a refused one stays trashed;
- ``restore-removed`` (messages, members; invitee, member, manager): the same restore
  after the caller's own membership was removed;
- creates: ``post`` (a message into a list of each privacy), ``post-for-other`` (with
  ``uid`` of the victim), ``add-invitee``/``add-member``/``add-manager``/``add-self``
  (listmember, lists of each privacy), ``accept`` (an invitee's row raised to member),
  ``create-for-other`` (list, category, contact with the victim's ``uid``).

``can-i`` (``GET /auth/can-i``) is asked before every request of a signed-in caller, for
the letter the request needs (r, l, u, d; c with the list's id for posts), and must say
yes exactly when the request succeeds; for a record the caller may not read, its answer
must be the answer for a missing id (apart from the id), and no reason names a path.
Where the outcome depends on the body (``chown``, ``*-for-other``, restores), ``can-i``
cannot tell and is not compared.

Cases where the service disagrees with the reference are marked ``xfail(strict=True)``
in ``KNOWN`` below, with the rule involved.

A second generated matrix (``test_bulk_and_embed_matrix``, per role and privacy) covers
bulk writes and embedding (README "Richer reads and bulk writes"), expected outcomes from
``Reference.bulk_create``/``bulk_write``/``bulk_matched``/``embedded_*``:

- ``bulk-create`` (``POST /message``, ``POST /list`` with an array): a batch of an allowed
  and a refused record (two refused ones where nothing is allowed) is refused as its
  first refused record alone, ``errors`` naming ``[index]``, nothing written; the allowed
  ones alone are 201 ``{items, count}``;
- ``bulk-update-ids``/``bulk-delete-ids`` (``PATCH``/``DELETE /message/{id},{id}``): all or
  none, as each single write; ``-filter`` (``?filter={"id": [...]}``): unreadable records
  are not matched, a readable one the caller may not write refuses the batch; every
  record is checked in the database afterwards;
- ``embed-list`` (get and find with ``embed=list``): the list as the caller reads it, or
  null; ``embed-messages`` (``GET /list/{id}?embed=messages``, ``embed``/p worlds of 12
  messages): the five newest the caller may read, newest first.

After the matrices: the trashcan lists exactly what each role may delete, membership
changes take effect on the next request, trashing a list, refusing a message for an
unusable list with nothing written, and keyset paging that returns exactly the readable
rows (also when filtered by a list the reader may not read).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import delete, func, select, update
from sqlalchemy import inspect as sa_inspect

from apicrud.db.base import new_id
from helpers import ROOT, Api, User, assert_problem, make_user, random_account
from rbac_reference import ANONYMOUS, Caller, Outcome, Reference, World

PRIVACY = ("public", "invitee", "member", "manager", "secret")
ROLES = ("anonymous", "pending", "owner", "unrelated", "invitee", "member", "manager", "admin")
LEVELS = ("invitee", "member", "manager")
HOLDERS = ("of-owner", "of-invitee", "of-member", "of-manager")
#: resources with an owner field (``uid``) that a PUT could move
OWNED = ("list", "message", "listmember", "category", "contact")
#: field rewritten with its own value by the update test
FIELD = {"list": "description", "message": "subject", "listmember": "authorization",
         "category": "description", "contact": "label", "person": "name"}


def _variants() -> dict[str, dict[str, tuple[str, str, str]]]:
    """resource -> variant -> (world kind, world key, record key)."""
    out: dict[str, dict[str, tuple[str, str, str]]] = {
        "list": {p: ("list", p, "list") for p in PRIVACY},
        "message": {}, "listmember": {},
        "category": {"none": ("category", "none", "category")},
        "contact": {p: ("contact", p, "contact") for p in PRIVACY},
        "person": {p: ("person", p, "person") for p in PRIVACY},
    }
    for p in PRIVACY:
        out["message"][p] = ("message", p, "by-owner")
        out["message"][f"{p}-by-member"] = ("message", p, "by-member")
    for h in HOLDERS:
        out["listmember"][h] = ("listmember", "invitee", h)
    for h in ("of-invitee", "of-member"):  # rows of a secret list (the default privacy)
        out["listmember"][f"secret-{h}"] = ("listmember", "secret", h)
    return out


VARIANTS = _variants()
#: ids in a body that name other records: field -> resource
REFERENCES = {"list_id": "list", "uid": "person", "category_id": "category"}
UNIQUE = {"listmember": (("list_id", "uid"),), "list": (("uid", "name"),),
          "category": (("uid", "name"),), "contact": (("uid", "type", "info"),)}
#: messages in an embed world (more than the five embed=messages gives)
EMBED_MESSAGES = 12
ADD_KINDS = ("add-invitee", "add-member", "add-manager", "add-self")

# The service disagrees with the reference here; see the module docstring.
KNOWN: dict[str, str] = {}  # case id -> reason, for disagreements under investigation


def _actions(resource: str, variant: str, role: str) -> list[str]:
    acts = ["get", "find", "update", "delete"]
    if resource in OWNED:
        acts.append("chown")
    if resource in ("message", "listmember") and role in LEVELS and \
            VARIANTS[resource][variant][2] != f"of-{role}":
        acts.append("restore-removed")
    acts.append("trash")  # last: a trashed person may lose their session (issue 11, #5)
    return acts


def _cases():
    out = []
    for resource, variants in VARIANTS.items():
        for variant in variants:
            for role in ROLES:
                for action in _actions(resource, variant, role):
                    out.append((resource, variant, role, action))
    for role in ROLES:
        for p in PRIVACY:
            out.append(("message", f"in-{p}", role, "post"))
        out.append(("message", "in-member", role, "post-for-other"))
        for p in PRIVACY:
            for kind in (*ADD_KINDS, "accept"):
                out.append(("listmember", f"in-{p}", role, kind))
        for res in ("list", "category", "contact"):
            out.append((res, "new", role, "create-for-other"))
    params = []
    for resource, variant, role, action in out:
        id_ = f"{resource}-{variant}-{role}-{action}"
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
    victim: User  # a user whose person is public: someone to hand records to

    def uids(self) -> list[str]:
        return [u.uid for u in self.users.values()] + [self.victim.uid]


def _caller(user: User, role: str) -> Caller:
    return Caller(uid=user.uid, is_admin=role == "admin",
                  status="pending" if role == "pending" else "active", name=role)


@pytest.fixture(scope="module")
def people(server, admin) -> People:
    users = {role: make_user(server, prefix=role[:4]) for role in
             ("owner", "unrelated", "invitee", "member", "manager")}
    users["pending"] = make_pending_user(server)
    users["admin"] = admin
    victim = make_user(server, prefix="vict")
    person = server.services.resources["person"].model
    with server.services.db.session() as session, session.begin():
        session.execute(update(person).where(person.id == victim.uid).values(privacy="public"))
    return People(users, {role: _caller(u, role) for role, u in users.items()}, victim)


@dataclass
class Built:
    world: World  # the reference's view of the database
    owner: User
    owner_caller: Caller
    list_id: str
    records: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # level -> listmember row
    newcomer: str = ""  # a person who is no member of anything
    uids: list[str] = field(default_factory=list)


class Worlds:
    """Builds each (kind, key) world once, on first use, directly in the DB."""

    def __init__(self, server, people: People) -> None:
        self.server = server
        self.people = people
        self.cache: dict[tuple[str, str], Built] = {}

    def get(self, kind: str, key: str) -> Built:
        if (kind, key) not in self.cache:
            self.cache[(kind, key)] = self.build(kind, key)
        return self.cache[(kind, key)]

    def build(self, kind: str, key: str) -> Built:
        server, people = self.server, self.people
        services = server.services
        prefix = server.settings.id_prefix
        # a person's privacy is the one under test: that world has its own owner
        owner = make_user(server, prefix="pown") if kind == "person" \
            else people.users["owner"]
        owner_caller = Caller(uid=owner.uid, name="owner")
        world = World()
        for u in [owner, *people.users.values()]:
            world.add("person", id=u.uid, name=u.username, privacy="member")
        world.add("person", id=people.victim.uid, name=people.victim.username,
                  privacy="public")
        newcomer = world.add("person", id=new_id(prefix), name="newcomer", privacy="member")
        tag = secrets.token_hex(4)
        list_privacy = key if kind in ("list", "listmember", "embed") else "invitee"
        lst = world.add("list", id=new_id(prefix), name=f"world-{tag}", description="d",
                        privacy=list_privacy, uid=owner.uid, category_id=None)
        built = Built(world, owner, owner_caller, lst["id"], newcomer=newcomer["id"])
        built.rows = {level: world.add("listmember", id=new_id(prefix), list_id=lst["id"],
                                       uid=people.users[level].uid, authorization=level)
                      for level in LEVELS}
        if kind == "listmember":
            own = world.add("listmember", id=new_id(prefix), list_id=lst["id"],
                            uid=owner.uid, authorization="member")
            built.records = {"of-" + k: ("listmember", v) for k, v in built.rows.items()}
            built.records["of-owner"] = ("listmember", own)
        elif kind == "list":
            built.records["list"] = ("list", lst)
        elif kind == "message":
            for author, uid in (("owner", owner.uid), ("member", people.users["member"].uid)):
                built.records[f"by-{author}"] = ("message", world.add(
                    "message", id=new_id(prefix), list_id=lst["id"], subject=f"s-{author}",
                    content="c", privacy=key, uid=uid))
        elif kind == "embed":  # more messages than embed=messages gives, distinct times
            base = datetime(2024, 1, 1, tzinfo=UTC)
            for i in range(EMBED_MESSAGES):
                uid = people.users["member"].uid if i % 3 == 1 else owner.uid
                built.records[f"m{i}"] = ("message", world.add(
                    "message", id=new_id(prefix), list_id=lst["id"], subject=f"e-{i}",
                    content="c", privacy=PRIVACY[i % 5], uid=uid,
                    created=base + timedelta(minutes=7 * i)))
        elif kind == "category":
            built.records["category"] = ("category", world.add(
                "category", id=new_id(prefix), name=f"cat-{tag}", description="d",
                uid=owner.uid))
        elif kind == "contact":
            built.records["contact"] = ("contact", world.add(
                "contact", id=new_id(prefix), info=f"c{tag}@example.com", type="email",
                label="home", privacy=key, uid=owner.uid))
        elif kind == "person":
            rec = world.get("person", owner.uid)
            rec["privacy"] = key
            built.records["person"] = ("person", rec)
        with services.db.session() as session, session.begin():
            session.add(services.resources["person"].model(id=newcomer["id"], name="newcomer",
                                                           privacy="member"))
            session.flush()
            for res in ("list", "listmember", "message", "category", "contact"):
                model = services.resources[res].model
                for values in world.rows(res):
                    session.add(model(**values))
                    session.flush()
            if kind == "person":
                person = services.resources["person"].model
                session.execute(update(person).where(person.id == owner.uid)
                                .values(privacy=key))
        built.uids = [owner.uid, *people.uids()]
        services.roles.uncache(*built.uids)
        return built


@pytest.fixture(scope="module")
def worlds(server, people) -> Worlds:
    return Worlds(server, people)


# -- helpers ----------------------------------------------------------------------------

def _who(role: str, built: Built, people: People, server) -> tuple[Caller, Api]:
    if role == "anonymous":
        return ANONYMOUS, server.anonymous()
    if role == "owner":
        return built.owner_caller, built.owner.api
    return people.callers[role], people.users[role].api


def _model(server, resource: str):
    return server.services.resources[resource].model


def _snapshot(server, resource: str, id_: str) -> dict[str, Any]:
    """Every column of a record as stored now (to put it back exactly afterwards)."""
    model = _model(server, resource)
    with server.services.db.session() as session:
        row = session.get(model, id_)
        return {a.key: getattr(row, a.key) for a in sa_inspect(model).column_attrs}


def _stored(server, resource: str, id_: str, column: str):
    model = _model(server, resource)
    with server.services.db.session() as session:
        return session.execute(select(getattr(model, column))
                               .where(model.id == id_)).scalar_one_or_none()


def _put_back(server, built: Built, resource: str, snapshot: dict[str, Any]) -> None:
    """Put back a record as it was, and forget cached roles it may have changed."""
    model = _model(server, resource)
    with server.services.db.session() as session, session.begin():
        session.execute(update(model).where(model.id == snapshot["id"]).values(**snapshot))
    server.services.roles.uncache(*built.uids)


def _remove_created(server, built: Built, resource: str, id_: str) -> None:
    model = _model(server, resource)
    with server.services.db.session() as session, session.begin():
        session.execute(delete(model).where(model.id == id_))
    server.services.roles.uncache(*built.uids)


def _count(server, resource: str, **where) -> int:
    model = _model(server, resource)
    with server.services.db.session() as session:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return session.execute(stmt).scalar_one()


@contextlib.contextmanager
def _trashed(server, built: Built, items: list[tuple[str, dict[str, Any]]]):
    """Records trashed in the database and in the reference's world, put back after."""
    snaps = [(res, _snapshot(server, res, rec["id"])) for res, rec in items]
    for res, rec in items:
        model = _model(server, res)
        with server.services.db.session() as session, session.begin():
            session.execute(update(model).where(model.id == rec["id"])
                            .values(status="disabled", live=None))
        rec["status"] = "disabled"
    server.services.roles.uncache(*built.uids)
    try:
        yield
    finally:
        for (res, rec), (_, snap) in zip(items, snaps, strict=True):
            rec["status"] = "active"
            _put_back(server, built, res, snap)


def _check_status(resp, expected, fields=frozenset()) -> None:
    """``expected``: a status or an Outcome (which may accept a refusal as 403 or 404)."""
    if isinstance(expected, Outcome):
        if expected.also and resp.status_code in expected.also:
            expected = resp.status_code
        else:
            fields = expected.fields or fields
            expected = expected.status
    if expected >= 400:
        body = assert_problem(resp, expected)
        if fields:
            assert set(body.get("errors") or {}) & set(fields), \
                f"404 should name one of {sorted(fields)}: {body}"
    else:
        assert resp.status_code == expected, resp.text


def _references(ref: Reference, resource: str) -> dict[str, str]:
    return {k: v for k, v in REFERENCES.items() if k in ref.fields.get(resource, ())}


# -- can-i ------------------------------------------------------------------------------

# a path in a reason: "/x/y", "C:\x", or the checkout's own location
_PATH = re.compile(r"(?:^|[\s'\"(=:,\[])(?:/[^\s/'\"]+/|[A-Za-z]:\\)")


def assert_no_path(text: str) -> None:
    assert ROOT not in text and "/rbac.yaml" not in text and not _PATH.search(text), \
        f"a filesystem path in a reason: {text!r}"


class CanI:
    """Asks ``GET /auth/can-i`` and remembers each caller's answer for a missing id."""

    def __init__(self, server) -> None:
        self.prefix = server.settings.id_prefix
        self.missing: dict[tuple[str, str, str], tuple[str, dict]] = {}

    @staticmethod
    def ask(api: Api, letter: str, resource: str, id_: str | None = None) -> dict:
        params = {"action": letter, "resource": resource}
        if id_ is not None:
            params["id"] = id_
        resp = api.get("/auth/can-i", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["allowed"] == (body["answer"] == "yes"), body
        return body

    @staticmethod
    def normal(body: dict, id_: str) -> Any:
        return json.loads(json.dumps(body).replace(id_, "<id>"))

    def check(self, api: Api, caller: Caller, letter: str, resource: str, id_: str,
              allowed: bool | None, readable: bool, target: str | None = None):
        """Asks now, before the request; returns the check of the answer, to be called
        once the request's own outcome is checked (so a wrong outcome is reported first).

        ``allowed`` None: not compared. ``readable``: whether the caller may read the
        record named (for c: the list), else the answer must be the missing one's.
        ``target``: the resource ``id_`` names (its own, except for c)."""
        body = self.ask(api, letter, resource, id_)

        def verify() -> dict:
            if allowed is not None:
                assert body["allowed"] is allowed, \
                    f"can-i {letter} {resource} {id_} says {body}, the request says otherwise"
            if not readable:
                key = (caller.uid, letter, resource)
                if key not in self.missing:
                    miss = new_id(self.prefix)
                    self.missing[key] = (miss, self.ask(api, letter, resource, miss))
                miss, answer = self.missing[key]
                assert self.normal(body, id_) == self.normal(answer, miss), \
                    f"can-i tells an unreadable {target or resource} from a missing one: " \
                    f"{body} vs {answer}"
            assert_no_path(body["reason"])
            return body
        return verify


@pytest.fixture(scope="module")
def cani(server) -> CanI:
    return CanI(server)


# -- the matrix ---------------------------------------------------------------------------

@pytest.mark.parametrize("resource,variant,role,action", CASES)
def test_matrix(server, ref, people, worlds, cani, resource, variant, role, action):
    if variant.startswith("in-") or variant == "new":
        return _create_case(server, ref, people, worlds, cani, resource, variant, role, action)
    kind, key, rkey = VARIANTS[resource][variant]
    built = worlds.get(kind, key)
    caller, api = _who(role, built, people, server)
    res, record = built.records[rkey]
    world = built.world
    rid = record["id"]
    signed_in = caller.authenticated
    readable = ref.holds(world, caller, "r", res, record)
    if action == "get":
        expected = ref.get(world, caller, res, record)
        verify = cani.check(api, caller, "r", res, rid, expected == 200, readable) \
            if signed_in else None
        resp = api.get(f"/{res}/{rid}")
        _check_status(resp, expected)
        if expected == 200:
            assert resp.json()["id"] == rid
            assert resp.json()["rbac"] == ref.letters(world, caller, res, record), \
                f"rbac of {role} on {res} {variant}"
        if verify:
            verify()
    elif action == "find":
        _find_case(ref, world, caller, api, cani, built, res, record, readable)
    elif action in ("update", "delete"):
        letter = action[0]
        expected = ref.write(world, caller, letter, res, record)
        verify = cani.check(api, caller, letter, res, rid, expected == 200, readable) \
            if signed_in else None
        before = _snapshot(server, res, rid)
        if letter == "u":
            name = FIELD[res]
            resp = api.patch(f"/{res}/{rid}", json={name: record[name]})
        else:
            resp = api.delete(f"/{res}/{rid}")
        try:
            _check_status(resp, expected)
            if expected == 200 and letter == "u":
                assert resp.json()["id"] == rid and resp.json()[name] == record[name]
            elif expected == 200:
                assert resp.json()["id"] == rid and resp.json()["status"] == "disabled"
        finally:
            if resp.status_code == 200:
                _put_back(server, built, res, before)
        if verify:
            verify()
    elif action == "chown":
        _chown_case(server, ref, people, built, caller, api, res, record)
    elif action == "trash":
        _trash_case(server, ref, built, caller, api, res, record, role)
    elif action == "restore-removed":
        own_row = built.rows[role]
        with _trashed(server, built, [("listmember", own_row), (res, record)]):
            _restore_check(server, ref, built, caller, api, res, record, visible=None)
    else:
        raise AssertionError(action)


def _find_case(ref, world, caller, api, cani, built, res, record, readable):
    """Ids in a filter only narrow: filtered by their own list (or owner) the records the
    caller may read are there, the others are not, and it is never an error."""
    rid = record["id"]
    if res in ("message", "listmember"):
        flt = {"list_id": built.list_id}
        pool = [r for r in world.rows(res) if r.get("list_id") == built.list_id]
    elif res == "person":
        flt, pool = {"id": rid}, [record]
    else:
        flt, pool = {"id": rid, "uid": record["uid"]}, [record]
    listed = ref.listed(world, caller, res, record)
    verify = cani.check(api, caller, "l", res, rid, bool(listed), readable) \
        if caller.authenticated else None
    resp = api.get(f"/{res}", params={"filter": json.dumps(flt), "limit": 100})
    if listed is None:
        assert_problem(resp, 401)
        return
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = {r["id"] for r in pool if ref.listed(world, caller, res, r)}
    assert (rid in expected) == listed
    assert {i["id"] for i in body["items"]} == expected, f"filter {flt}"
    assert body["count"] == len(expected)
    assert resp.headers["X-Total-Count"] == str(body["count"])
    for item in body["items"]:
        assert item["rbac"] == ref.letters(world, caller, res, world.get(res, item["id"]))
    if verify:
        verify()


def _chown_case(server, ref, people, built, caller, api, res, record):
    """PUT ``uid``: to the caller (taking someone's record), or away to the victim (the
    owner giving it away, anyone else trying to): only ``{resource}:*`` principals."""
    world, rid = built.world, record["id"]
    mine = caller.authenticated and record.get("uid") == caller.uid
    target = people.victim.uid if mine or caller.name in ("owner", "admin", "anonymous",
                                                          "pending") else caller.uid
    expected = ref.update(world, caller, res, record, {"uid": target})
    before = _snapshot(server, res, rid)
    resp = api.put(f"/{res}/{rid}", json={"uid": target})
    try:
        _check_status(resp, expected)
        now = _stored(server, res, rid, "uid")
        if expected.ok:
            assert resp.json()["uid"] == target and now == target
        else:
            assert now == before["uid"], f"refused ({resp.status_code}) but uid is now {now}"
    finally:
        if _stored(server, res, rid, "uid") != before["uid"] or resp.status_code == 200:
            _put_back(server, built, res, before)


def _trash_case(server, ref, built, caller, api, res, record, role):
    """Seen in the trashcan by those who may delete it (d); restored by those of them
    for whom a create of it would pass now."""
    with _trashed(server, built, [(res, record)]):
        visible = ref.trash_visible(built.world, caller, res, record)
        also = frozenset({401}) if res == "person" and role == "owner" else frozenset()
        # (a trashed person's own sessions may end at once: issue 11, hole 5)
        got = api.get(f"/trashcan/{res}-{record['id']}")
        _check_status(got, Outcome(visible, also=also))
        _restore_check(server, ref, built, caller, api, res, record, visible, also)


def _restore_check(server, ref, built, caller, api, res, record, visible, also=frozenset()):
    expected = ref.restore(built.world, caller, res, record, _references(ref, res),
                           UNIQUE.get(res, ()))
    if visible is not None:
        assert (visible == 200) or expected.status in (401, 404)
    tid = f"{res}-{record['id']}"
    resp = api.put(f"/trashcan/{tid}", json={"status": "active"})
    _check_status(resp, Outcome(expected.status, expected.fields, expected.also | also))
    status = _stored(server, res, record["id"], "status")
    if resp.status_code == 200:
        assert status == "active"
    else:
        assert status == "disabled", f"refused ({resp.status_code}) but restored"


def _create_case(server, ref, people, worlds, cani, resource, variant, role, kind):
    privacy = variant[3:] if variant.startswith("in-") else "invitee"
    built = worlds.get("list", privacy)
    caller, api = _who(role, built, people, server)
    world = built.world
    lst = world.get("list", built.list_id)
    list_readable = ref.holds(world, caller, "r", "list", lst)
    marker = f"m{secrets.token_hex(5)}"
    if kind == "accept":
        row = built.rows["invitee"]
        expected = ref.update(world, caller, "listmember", row, {"authorization": "member"})
        verify = cani.check(api, caller, "u", "listmember", row["id"], expected.ok,
                            ref.holds(world, caller, "r", "listmember", row)) \
            if caller.authenticated else None
        before = _snapshot(server, "listmember", row["id"])
        resp = api.patch(f"/listmember/{row['id']}", json={"authorization": "member"})
        try:
            _check_status(resp, expected)
            level = _stored(server, "listmember", row["id"], "authorization")
            assert level == ("member" if expected.ok else "invitee")
        finally:
            if resp.status_code == 200 or \
                    _stored(server, "listmember", row["id"], "authorization") != "invitee":
                _put_back(server, built, "listmember", before)
        if verify:
            verify()
        return
    if resource == "message":
        body = {"list_id": built.list_id, "subject": marker}
        if kind == "post-for-other":
            body["uid"] = people.victim.uid
    elif resource == "listmember":
        body = {"list_id": built.list_id}
        if kind != "add-self":
            body.update(uid=built.newcomer, authorization=kind.split("-", 1)[1])
    else:  # create-for-other: list, category, contact
        body = {"info": f"{marker}@example.com"} if resource == "contact" else {"name": marker}
        body["uid"] = people.victim.uid
    expected = ref.create(world, caller, resource, body, _references(ref, resource),
                          UNIQUE.get(resource, ()))
    verify = None
    if caller.authenticated and resource == "message" and kind == "post":
        may = ref.may_create_in(world, caller, "message", built.list_id)
        assert may == (expected.status == 201), "reference: can-i c disagrees with create"
        verify = cani.check(api, caller, "c", "message", built.list_id, may, list_readable,
                            "list")
    elif caller.authenticated and resource == "listmember":
        may = ref.may_create_in(world, caller, "listmember", built.list_id)
        # can-i c listmember <list> says whether some membership may be added there; an
        # invitee holds only j (add themself, which their own invitation makes a 409),
        # so their answer is not compared: either reading keeps yes => some POST works
        only_j = may and not any(ref.holds(world, caller, a, "list", lst) for a in "hi") \
            and not ref.holds(world, caller, "c", "listmember", {"list_id": built.list_id})
        verify = cani.check(api, caller, "c", "listmember", built.list_id,
                            None if only_j else may, list_readable, "list")
    resp = api.post(f"/{resource}", json=body)
    try:
        _check_status(resp, expected)
        if expected.status == 201:
            made = resp.json()
            if resource in ("message", "listmember"):
                assert made["list_id"] == built.list_id
            assert made["uid"] == body.get("uid", caller.uid)
    finally:
        if resp.status_code == 201:
            _remove_created(server, built, resource, resp.json()["id"])
    if resp.status_code != 201 and resource != "listmember":
        name = {"message": "subject", "contact": "info"}.get(resource, "name")
        value = body.get(name)
        assert _count(server, resource, **{name: value}) == 0, "refused, but written"
    if verify:
        answer = verify()
        assert resp.status_code != 201 or answer["allowed"], "POST worked, can-i said no"


# -- the trashcan as each role sees it ----------------------------------------------------

@pytest.mark.parametrize("resource", [r for r in VARIANTS if r != "person"])
def test_trashcan_lists_exactly_what_each_role_may_delete(server, ref, people, worlds,
                                                           resource):
    """Every record of the resource's worlds trashed at once: each role's trashcan lists
    exactly the ones it may delete (d), as rbac.yaml says."""
    items: dict[tuple[str, str], list] = {}
    for kind, key, rkey in VARIANTS[resource].values():
        items.setdefault((kind, key), []).append(worlds.get(kind, key).records[rkey])
    with contextlib.ExitStack() as stack:
        for (kind, key), recs in items.items():
            stack.enter_context(_trashed(server, worlds.get(kind, key), recs))
        for role in ROLES:
            expected, all_ids = set(), set()
            for (kind, key), recs in items.items():
                built = worlds.get(kind, key)
                caller, api = _who(role, built, people, server)
                for res, rec in recs:
                    all_ids.add(f"{res}-{rec['id']}")
                    if ref.trash_visible(built.world, caller, res, rec) == 200:
                        expected.add(f"{res}-{rec['id']}")
            resp = api.get("/trashcan", params={"filter": json.dumps({"resource": resource}),
                                                "limit": 1000})
            if role == "anonymous":
                assert_problem(resp, 401)
                continue
            assert resp.status_code == 200, resp.text
            seen = {e["id"] for e in resp.json()["items"]} & all_ids
            assert seen == expected, f"{role}: {sorted(seen ^ expected)}"


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
    with limit 7 yields each readable row once, and ``count`` says how many there are;
    filtered by the list the reader may not read, exactly its readable rows (never an
    error: ids in a filter only narrow)."""
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
    outside = lists[1]["id"]
    assert ref.get(world, me, "list", lists[1]) == 404
    resp = reader.api.get("/message", params={"filter": json.dumps({"list_id": outside}),
                                              "limit": 100})
    assert resp.status_code == 200, resp.text
    in_outside = {i for i in expected if world.get("message", i)["list_id"] == outside}
    assert {i["id"] for i in resp.json()["items"]} == in_outside
    assert resp.json()["count"] == len(in_outside)


# -- bulk writes and embedding, for every role ---------------------------------------------
#
# README "Richer reads and bulk writes": every path goes through the same evaluator as a
# single read or write. Expected outcomes come from ``Reference.bulk_*``/``embedded_*``
# (rbac_reference.py), built on the single-record rules above; the worlds are the
# matrix's own (``list``/p, ``message``/p) plus ``embed``/p (a list with 12 messages of
# every privacy, distinct creation times). One or two requests per case.

BULK_WRITES = ("bulk-update-ids", "bulk-delete-ids", "bulk-update-filter",
               "bulk-delete-filter")
EMBED_LIST_PRIVACY = ("public", "invitee")


def _bulk_cases():
    out = []
    for role in ROLES:
        for p in PRIVACY:
            out.append(("message", p, role, "bulk-create"))
            out.append(("list", p, role, "bulk-create"))
            for action in (*BULK_WRITES, "embed-list"):
                out.append(("message", p, role, action))
        for p in EMBED_LIST_PRIVACY:
            out.append(("list", p, role, "embed-messages"))
    params = []
    for resource, variant, role, action in out:
        id_ = f"{resource}-{variant}-{role}-{action}"
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN[id_])] if id_ in KNOWN else []
        params.append(pytest.param(resource, variant, role, action, id=id_, marks=marks))
    return params


BULK_CASES = _bulk_cases()


@pytest.mark.parametrize("resource,variant,role,action", BULK_CASES)
def test_bulk_and_embed_matrix(server, ref, people, worlds, resource, variant, role, action):
    if action == "bulk-create":
        return _bulk_create_case(server, ref, people, worlds, resource, variant, role)
    if action == "embed-messages":
        return _embed_messages_case(ref, people, worlds, server, variant, role)
    built = worlds.get("message", variant)
    caller, api = _who(role, built, people, server)
    records = [built.records["by-owner"][1], built.records["by-member"][1]]
    if action == "embed-list":
        return _embed_list_case(ref, built, caller, api, records)
    _bulk_write_case(server, ref, built, caller, api, records, action)


def _refusal(resp, outcomes: list[Outcome], index_keys: tuple[str, ...] = ()) -> None:
    """A refused batch: the status of one of the refused single writes (``outcomes``);
    with ``index_keys``, every ``errors`` key names one of them (``[1].list_id``...)."""
    refused = [o for o in outcomes if not o.ok]
    assert refused, "reference: nothing refused"
    codes = set().union(*({o.status} | o.also for o in refused))
    assert resp.status_code in codes, \
        f"expected one of {sorted(codes)}, got {resp.status_code}: {resp.text}"
    body = assert_problem(resp, resp.status_code)
    if index_keys and resp.status_code != 401:
        errors = body.get("errors") or {}
        assert errors and all(k.startswith(index_keys) for k in errors), \
            f"errors should name {index_keys}: {body}"


def _bulk_create_case(server, ref, people, worlds, resource, privacy, role):
    """A batch of records the caller may create is 201 ``{items, count}``; one mixing an
    allowed record and a refused one (or two refused) is refused as its first refused
    record would be alone, naming its index, and nothing is written."""
    built = worlds.get("list", privacy)
    caller, api = _who(role, built, people, server)
    world = built.world
    marker = f"b{secrets.token_hex(5)}"
    missing = new_id(server.settings.id_prefix)
    if resource == "message":
        name = "subject"
        pool = [{"list_id": built.list_id, name: f"{marker}-a", "privacy": privacy},
                {"list_id": built.list_id, name: f"{marker}-b", "uid": people.victim.uid},
                {"list_id": missing, name: f"{marker}-c"}]
    else:
        name = "name"
        pool = [{name: f"{marker}-a", "privacy": privacy},
                {name: f"{marker}-b", "privacy": privacy, "uid": people.victim.uid},
                {name: f"{marker}-c", "privacy": privacy, "category_id": missing}]
    refs, unique = _references(ref, resource), UNIQUE.get(resource, ())
    single = [ref.create(world, caller, resource, b, refs, unique) for b in pool]
    allowed = [b for b, o in zip(pool, single, strict=True) if o.ok]
    refused = [b for b, o in zip(pool, single, strict=True) if not o.ok]
    assert refused, "reference: the pool should hold a refused record for everyone"
    mixed = [allowed[0], refused[0]] if allowed else refused[:2]
    expected, index = ref.bulk_create(world, caller, resource, mixed, refs, unique)
    assert not expected.ok and index == (1 if allowed else 0)
    resp = api.post(f"/{resource}", json=mixed)
    created = []
    try:
        if resp.status_code == 201:
            created = [i["id"] for i in resp.json()["items"]]
        _refusal(resp, [expected], (f"[{index}]",))
        if expected.fields and resp.status_code == expected.status:
            keys = set(resp.json().get("errors") or {})
            assert keys & {f"[{index}].{f}" for f in expected.fields}, \
                f"should name [{index}].{sorted(expected.fields)}: {resp.text}"
        for body in mixed:
            assert _count(server, resource, **{name: body[name]}) == 0, "refused, but written"
        if not allowed:
            return
        expected, _ = ref.bulk_create(world, caller, resource, allowed, refs, unique)
        assert expected.status == 201
        resp = api.post(f"/{resource}", json=allowed)
        assert resp.status_code == 201, resp.text
        got = resp.json()
        created = [i["id"] for i in got["items"]]
        assert got["count"] == len(allowed) == len(got["items"])
        for body, item in zip(allowed, got["items"], strict=True):
            assert item[name] == body[name]
            assert item["uid"] == body.get("uid", caller.uid)
            if resource == "message":
                assert item["list_id"] == built.list_id
            assert _count(server, resource, id=item["id"], **{name: body[name]}) == 1
    finally:
        for id_ in created:
            _remove_created(server, built, resource, id_)


def _bulk_write_case(server, ref, built, caller, api, records, action):
    """By ids: all or none, as each single write would be. By filter: the records the
    caller can't read are not matched; a matched one the caller may not write refuses the
    batch. Checked in the database afterwards: nothing changed unless it all worked."""
    world = built.world
    letter = "u" if "update" in action else "d"
    column = "content" if letter == "u" else "status"
    marker = f"x{secrets.token_hex(5)}"
    changes = {"content": marker}
    ids = [r["id"] for r in records]
    before = {r["id"]: _snapshot(server, "message", r["id"]) for r in records}
    if action.endswith("-ids"):
        touched = records
        outcomes = ref.bulk_write(world, caller, letter, "message", records, changes)
        path, params = f"/message/{','.join(ids)}", None
    else:
        touched = ref.bulk_matched(world, caller, "message", records) \
            if caller.authenticated else records
        outcomes = ref.bulk_write(world, caller, letter, "message", touched, changes) \
            if caller.authenticated else [Outcome(401)]
        path, params = "/message", {"filter": json.dumps({"id": ids})}
    ok = all(o.ok for o in outcomes)
    if letter == "u":
        resp = api.patch(path, params=params, json=changes)
    else:
        resp = api.delete(path, params=params)
    try:
        if ok:
            assert resp.status_code == 200, resp.text
            got = resp.json()
            if action.endswith("-filter"):
                assert got["count"] == len(got["items"])
                got = got["items"]
            assert sorted(i["id"] for i in got) == sorted(r["id"] for r in touched)
            for item in got:
                assert item[column] == (marker if letter == "u" else "disabled")
                assert item.get("rbac", ref.letters(world, caller, "message",
                                                    world.get("message", item["id"]))) == \
                    ref.letters(world, caller, "message", world.get("message", item["id"]))
        else:
            _refusal(resp, outcomes)
        done = {r["id"] for r in touched} if ok else set()
        for rid in ids:
            now = _stored(server, "message", rid, column)
            if rid in done:
                assert now == (marker if letter == "u" else "disabled"), f"{rid}: {now}"
            else:
                assert now == before[rid][column], \
                    f"{rid} not to be written ({resp.status_code}), but {column} is {now}"
    finally:
        for rid in ids:
            if _stored(server, "message", rid, column) != before[rid][column]:
                _put_back(server, built, "message", before[rid])


def _check_embedded_list(ref, world, caller, item: dict) -> None:
    assert "list" in item, f"embed=list missing: {item}"
    want = ref.embedded_one(world, caller, "list", item["list_id"])
    emb = item["list"]
    if want is None:
        assert emb is None, f"an unreadable list embedded: {emb}"
        return
    assert emb is not None and emb["id"] == want["id"], emb
    assert emb["name"] == want["name"] and emb["privacy"] == want["privacy"]
    if "rbac" in emb:
        assert emb["rbac"] == ref.letters(world, caller, "list", want)


def _embed_list_case(ref, built, caller, api, records):
    """``embed=list`` on get and find: the list as the caller would read it, or null."""
    world, rec = built.world, records[0]
    resp = api.get(f"/message/{rec['id']}", params={"embed": "list"})
    expected = ref.get(world, caller, "message", rec)
    _check_status(resp, expected)
    if expected == 200:
        assert resp.json()["id"] == rec["id"]
        _check_embedded_list(ref, world, caller, resp.json())
    flt = json.dumps({"id": [r["id"] for r in records]})
    resp = api.get("/message", params={"filter": flt, "embed": "list"})
    if not caller.authenticated:
        assert_problem(resp, 401)
        return
    assert resp.status_code == 200, resp.text
    body = resp.json()
    listed = {r["id"] for r in records if ref.listed(world, caller, "message", r)}
    assert {i["id"] for i in body["items"]} == listed
    for item in body["items"]:
        _check_embedded_list(ref, world, caller, item)


def _embed_messages_case(ref, people, worlds, server, privacy, role):
    """``GET /list/{id}?embed=messages``: the five newest messages the caller may read."""
    built = worlds.get("embed", privacy)
    caller, api = _who(role, built, people, server)
    world = built.world
    lst = world.get("list", built.list_id)
    resp = api.get(f"/list/{built.list_id}", params={"embed": "messages"})
    expected = ref.get(world, caller, "list", lst)
    _check_status(resp, expected)
    if expected != 200:
        return
    body = resp.json()
    assert body["id"] == built.list_id
    assert body["rbac"] == ref.letters(world, caller, "list", lst)
    want = ref.embedded_many(world, caller, "message", "list_id", built.list_id, 5)
    got = body.get("messages")
    assert got is not None, f"embed=messages missing: {body}"
    assert [m["id"] for m in got] == [m["id"] for m in want], \
        f"{role}: got {[m.get('subject') for m in got]}, " \
        f"expected {[m['subject'] for m in want]}"
    for m in got:
        if "rbac" in m:
            assert m["rbac"] == ref.letters(world, caller, "message",
                                            world.get("message", m["id"]))
