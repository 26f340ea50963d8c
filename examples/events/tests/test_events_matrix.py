"""The RBAC matrix of the events example, expected outcomes from the reference evaluator.

``tests/rbac_reference.py`` (the repository's) reads this project's rbac.yaml and spec
itself and says what each request must answer; nothing here asks ``apicrud.access``.
One `apicrud serve` for the module, seeded once over HTTP by the administrator:

- events ``draft`` and ``published``, owned by ``owner`` (their organizer by ownership),
  with eventroles: ``organizer`` (role organizer) and ``coorganizer``;
- in each event one session per state (pending, accepted, approved, rejected) submitted
  by ``submitter``, and one speaker per session added by them (email hidden from
  everyone else);
- the site settings (one record; analytics_key and admin_email private).

Callers: admin, owner, organizer, coorganizer, submitter, other (a registered user with
no part in any event) and anonymous. Per resource and caller, every record: ``get``
(status, ``rbac`` letters, exactly the readable fields), ``find`` and ``ra`` (exactly the
listable records, each with its readable fields; ``count``), ``update`` (a PATCH writing
a field's own value), ``delete`` (of a copy made for it), ``create`` (sessions and
speakers into every event and session, an eventrole, an event), and filter, sort and
``q`` on every field: a 400 where the field is not readable on every listable record,
and a ``q`` for a hidden value finds nothing.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

import events_harness as h

sys.path.insert(0, os.path.join(h.ROOT, "..", "..", "tests"))
from rbac_reference import ANONYMOUS, Caller, Reference, World

ROLES = ("admin", "owner", "organizer", "coorganizer", "submitter", "other", "anonymous")
STATES = ("pending", "accepted", "approved", "rejected")
RESOURCES = ("event", "eventrole", "session", "speaker", "eventsettings")
REFS = {"eventrole": {"event_id": "event"}, "session": {"event_id": "event"},
        "speaker": {"session_id": "session"}}
SKIP_FIELDS = {"rbac"}


class Site:
    """The seeded service: base URL, sessions per role, the reference world."""

    def __init__(self, base, apis, callers, world, admin):
        self.base, self.apis, self.callers, self.world, self.admin = \
            base, apis, callers, world, admin


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(os.path.join(h.ROOT, "rbac.yaml"), os.path.join(h.ROOT, "openapi"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    password = "admin-" + os.urandom(6).hex()
    env = h.service_env(str(tmp_path_factory.mktemp("events")),
                        APICRUD_ADMIN_PASSWORD=password)
    with h.serve(env) as (base, env):
        names = [r for r in ROLES if r not in ("admin", "anonymous")] + ["newcomer"]
        made = h.add_accounts(env, names)
        admin = h.login(base, "admin", password)
        apis = {n: h.login(base, n, made[n]["password"]) for n in names}
        apis["admin"], apis["anonymous"] = admin, h.Http()
        me = admin.get(base + "/auth").json()
        callers = {n: Caller(uid=made[n]["uid"], name=n) for n in names}
        callers["admin"] = Caller(uid=me["uid"], is_admin=True, name="admin")
        callers["anonymous"] = ANONYMOUS
        world = World()

        def add(resource, body):
            resp = admin.post(f"{base}/{resource}", json=body)
            assert resp.status_code == 201, resp.text
            rec = {k: v for k, v in resp.json().items() if k != "rbac"}
            return world.add(resource, **rec)

        for state in ("draft", "published"):
            ev = add("event", {"name": f"{state} event", "state": state,
                               "uid": made["owner"]["uid"]})
            for who in ("organizer", "coorganizer"):
                add("eventrole", {"event_id": ev["id"], "uid": made[who]["uid"],
                                  "role": who})
            for st in STATES:
                sess = add("session", {"event_id": ev["id"], "title": f"{st} talk",
                                       "state": st, "uid": made["submitter"]["uid"]})
                add("speaker", {"session_id": sess["id"], "name": f"speaker {st}",
                                "email": f"hidden{sess['id'][-6:].lower()}@example.com",
                                "uid": made["submitter"]["uid"]})
        add("eventsettings", {"app_name": "Events", "tagline": "talks",
                              "support_url": "https://example.com/help",
                              "analytics_key": "hiddenanalytics", "admin_email": "a@x.example"})
        world.newcomer = made["newcomer"]["uid"]
        yield Site(base, apis, callers, world, admin)


def _shown(body: dict) -> set:
    return set(body) - SKIP_FIELDS


def _expect_fields(ref, world, caller, resource, record) -> set:
    fields = ref.readable_fields(world, caller, resource, record)
    every = ref.fields[resource] - SKIP_FIELDS
    return every if fields is None else (set(fields) & every)


def _copy(site, ref, resource, record) -> dict:
    body = {k: v for k, v in record.items() if k not in ref.read_only[resource]}
    resp = site.admin.post(f"{site.base}/{resource}", json=body)
    assert resp.status_code == 201, resp.text
    return {k: v for k, v in resp.json().items() if k != "rbac"}


def _trash(site, resource, id_) -> None:
    site.admin.delete(f"{site.base}/{resource}/{id_}")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", RESOURCES)
def test_matrix(site, ref, resource, role):
    world, caller, api, base = site.world, site.callers[role], site.apis[role], site.base
    bad: list[str] = []
    records = list(world.rows(resource))

    def check(what, got, want):
        if got != want:
            bad.append(f"{resource} {what} as {role}: got {got!r}, expected {want!r}")

    for rec in records:
        rid = rec["id"]
        # get: the status, the letters and exactly the readable fields
        resp = api.get(f"{base}/{resource}/{rid}")
        want = ref.get(world, caller, resource, rec)
        check(f"get {rec.get('name') or rec.get('title') or rid}", resp.status_code, want)
        if want == 200 and resp.status_code == 200:
            body = resp.json()
            check(f"rbac of {rid}", body.get("rbac"), ref.letters(world, caller, resource, rec))
            check(f"fields of {rid}", _shown(body),
                  _expect_fields(ref, world, caller, resource, rec))
        # update: a PATCH writing one readable field's own value
        field = next(f for f in ("name", "title", "role", "app_name") if f in rec)
        want = ref.write(world, caller, "u", resource, rec)
        if want == 200:
            writable = ref.writable_fields(world, caller, "u", resource, rec)
            readable = ref.readable_fields(world, caller, resource, rec)
            if writable is not None and field not in writable and \
                    readable is not None and field not in readable:
                want = 403
        resp = api.patch(f"{base}/{resource}/{rid}", json={field: rec[field]})
        check(f"update {rid}", resp.status_code, want)
        # delete: of a copy (same event, session and owner)
        if resource not in ("eventsettings",):
            copy = _copy(site, ref, resource, rec)
            world.add(resource, **copy)
            try:
                want = ref.write(world, caller, "d", resource, copy)
                resp = api.delete(f"{base}/{resource}/{copy['id']}")
                check(f"delete copy of {rid}", resp.status_code, want)
            finally:
                _trash(site, resource, copy["id"])
                world.records[resource].pop(copy["id"])

    # find and ra: exactly the listable records, with their readable fields, and count
    listed = {r["id"] for r in records if ref.listed(world, caller, resource, r)}
    never = ref.listed(world, caller, resource, records[0]) is None
    for path in (f"/{resource}", f"/ra/{resource}"):
        resp = api.get(base + path, params={"limit": 100} if "/ra/" not in path else {})
        if never:
            check(f"find {path}", resp.status_code, 401)
            continue
        check(f"find {path}", resp.status_code, 200)
        if resp.status_code != 200:
            continue
        items = resp.json()["items"] if "/ra/" not in path else resp.json()
        check(f"find {path} ids", {i["id"] for i in items}, listed)
        if "/ra/" not in path:
            check("count", resp.json().get("count"), len(listed))
        for item in items:
            rec = world.get(resource, item["id"])
            if rec is not None:
                check(f"find {path} fields of {item['id']}", _shown(item),
                      _expect_fields(ref, world, caller, resource, rec))

    # filter, sort and q on every field: only those read on every listable record
    if not never:
        usable = ref.listable_fields(world, caller, resource)
        for name in sorted(ref.fields[resource] - SKIP_FIELDS - {"id"}):
            ok = usable is None or name in usable
            want = 200 if ok else 400
            resp = api.get(f"{base}/{resource}", params={"filter": json.dumps({name: "*"})})
            check(f"filter on {name}", resp.status_code, want)
            resp = api.get(f"{base}/{resource}", params={"sort": name})
            check(f"sort on {name}", resp.status_code, want)
            resp = api.get(f"{base}/ra/{resource}", params={"_sort": name, "_order": "ASC"})
            check(f"ra sort on {name}", resp.status_code, want)
            secrets_ = {r[name] for r in records if isinstance(r.get(name), str)
                        and r[name].startswith("hidden")}
            for value in secrets_:
                resp = api.get(f"{base}/{resource}", params={"filter": json.dumps({"q": value})})
                found = {i["id"] for i in resp.json().get("items", [])} \
                    if resp.status_code == 200 else set()
                expected = {r["id"] for r in records if r["id"] in listed and
                            r.get(name) == value} if ok else set()
                check(f"q for the {name} value", found, expected)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("role", ROLES)
def test_create_matrix(site, ref, role):
    """Sessions into each event, speakers into each session (also naming a field the
    caller may not write), an eventrole for a newcomer, an event."""
    world, caller, api, base = site.world, site.callers[role], site.apis[role], site.base
    bad: list[str] = []
    cases = []
    for ev in list(world.rows("event")):
        cases.append(("session", {"event_id": ev["id"], "title": "new talk"}, {}))
        cases.append(("session", {"event_id": ev["id"], "title": "self-approved",
                                  "state": "approved"}, {}))
        cases.append(("eventrole", {"event_id": ev["id"], "uid": world.newcomer}, {}))
    for sess in list(world.rows("session")):
        cases.append(("speaker", {"session_id": sess["id"], "name": "new speaker"},
                      {"event_id": sess["event_id"]}))
    cases.append(("event", {"name": "my own event"}, {}))
    for resource, body, derived in cases:
        out = ref.create(world, caller, resource, {**body, **derived},
                         REFS.get(resource, {}))
        want, fields = out.status, set(out.fields)
        if resource == "speaker" and fields == {"event_id"}:
            fields = {"session_id"}  # the speaker controller names the session it was given
        if out.ok:
            values = {**ref.schema_defaults(resource), **body, **derived,
                      "uid": body.get("uid", caller.uid)}
            writable = ref.writable_fields(world, caller, "c", resource, values)
            if writable is not None and set(body) - set(writable):
                want = 403
        resp = api.post(f"{base}/{resource}", json=body)
        what = f"create {resource} {body} as {role}"
        if not out.accepts(resp.status_code) and resp.status_code != want:
            bad.append(f"{what}: got {resp.status_code} {resp.text[:200]}, expected {want}")
        elif want == 404 and fields and not fields & set(resp.json().get("errors", {})):
            bad.append(f"{what}: the 404 names {resp.json().get('errors')}, not {fields}")
        if resp.status_code == 201:
            _trash(site, resource, resp.json()["id"])
    assert not bad, "\n".join(bad)


def test_a_speaker_stays_in_its_sessions_event(site):
    """The event_id organizers' rules read is the server's: a client neither sets it on
    a create nor moves a speaker to another session (of an event they organize)."""
    world, base = site.world, site.base
    owner, submitter = site.apis["owner"], site.apis["submitter"]
    draft = next(e for e in world.rows("event") if e["state"] == "draft")
    published = next(e for e in world.rows("event") if e["state"] == "published")
    mine = next(s for s in world.rows("session") if s["event_id"] == published["id"])
    other = next(s for s in world.rows("session") if s["event_id"] == draft["id"])
    resp = submitter.post(base + "/speaker", json={"session_id": mine["id"], "name": "x",
                                                   "event_id": draft["id"]})
    assert resp.status_code == 400 and "event_id" in resp.json()["errors"], resp.text
    speaker = next(s for s in world.rows("speaker") if s["session_id"] == mine["id"])
    resp = owner.patch(f"{base}/speaker/{speaker['id']}", json={"session_id": other["id"]})
    assert resp.status_code == 403 and "session_id" in resp.json()["errors"], resp.text
    resp = owner.patch(f"{base}/speaker/{speaker['id']}", json={"event_id": draft["id"]})
    assert resp.status_code == 400, resp.text
    assert site.admin.get(f"{base}/speaker/{speaker['id']}").json()["event_id"] == \
        published["id"]


def test_the_settings_are_one_record(site):
    resp = site.admin.post(site.base + "/eventsettings", json={"app_name": "second"})
    assert resp.status_code == 409, resp.text
    assert site.admin.get(site.base + "/eventsettings").json()["count"] == 1
