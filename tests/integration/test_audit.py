"""The audit trail over HTTP: every write kind leaves exactly one entry, written in the
write's own transaction (a refused or failed write leaves none), with who, when, from
where, the changed fields (secrets only marked changed) and the rule that allowed it.

The entries are read straight from the table here: what is stored is what is tested
(reading them over HTTP, with its permissions, is test_audit_read.py).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest
import requests
from celery.beat import Scheduler
from sqlalchemy import select

from apicrud.audit.retention import AuditPurger
from apicrud.db.base import utcnow
from apicrud.trashcan import purge_expired
from helpers import Api, make_user
from mailhelp import run_worker, wait_for
from test_totp import Authenticator


def entries(server, **where) -> list[dict]:
    """Audit rows matching ``where`` (column=value), oldest first, changes decoded."""
    model = server.services.models.Audit
    with server.services.db.session() as db:
        stmt = select(model.__table__).where(
            *(getattr(model, k) == v for k, v in where.items())).order_by(model.created)
        rows = [dict(r) for r in db.execute(stmt).mappings()]
    for row in rows:
        row["changes"] = json.loads(row["changes"]) if row["changes"] else {}
    return rows


def only(server, **where) -> dict:
    found = entries(server, **where)
    assert len(found) == 1, found
    return found[0]


def new_list(api, **fields) -> dict:
    resp = api.post("/list", json={"name": "audited", **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_create_update_delete_restore_purge_each_leave_one_entry(server, user):
    def server_entries(**where):
        return entries(server, **where)

    resp = user.api.post("/list", json={"name": "one", "privacy": "member"})
    assert resp.status_code == 201
    lid = resp.json()["id"]
    (created,) = server_entries(record_id=lid)
    assert created["action"] == "create" and created["resource"] == "list"
    assert created["uid"] == user.uid and created["auth_method"] == "bearer"
    assert created["request_id"] == resp.headers["X-Request-ID"]
    assert created["client_addr"] == "127.0.0.1"
    assert created["changes"]["name"] == {"old": None, "new": "one"}
    assert created["changes"]["privacy"] == {"old": None, "new": "member"}
    assert created["rule"].startswith("rbac.yaml: policies.list")
    assert created["operation"] == "list.create"

    resp = user.api.patch(f"/list/{lid}", json={"name": "two", "privacy": "member"})
    assert resp.status_code == 200
    changed = server_entries(record_id=lid, action="update")
    assert len(changed) == 1
    # only what changed, with its old value (privacy was sent unchanged)
    assert changed[0]["changes"] == {"name": {"old": "one", "new": "two"}}
    assert changed[0]["request_id"] == resp.headers["X-Request-ID"]

    assert user.api.put(f"/list/{lid}", json={"name": "three"}).status_code == 200
    assert server_entries(record_id=lid, action="update")[-1]["changes"] == \
        {"name": {"old": "two", "new": "three"}}

    assert user.api.delete(f"/list/{lid}").status_code == 200
    deleted = only(server, record_id=lid, action="delete")
    assert deleted["changes"]["status"]["old"] == "active"

    resp = user.api.put(f"/trashcan/list-{lid}", json={"status": "active"})
    assert resp.status_code == 200, resp.text
    restored = only(server, record_id=lid, action="restore")
    assert restored["changes"]["status"]["new"] == "active"
    assert restored["rule"].startswith("rbac.yaml")

    assert user.api.delete(f"/list/{lid}").status_code == 200
    assert user.api.delete(f"/trashcan/list-{lid}").status_code == 200
    purged = only(server, record_id=lid, action="purge")
    assert purged["uid"] == user.uid and purged["rule"].startswith("rbac.yaml")
    assert [e["action"] for e in server_entries(record_id=lid)] == \
        ["create", "update", "update", "delete", "restore", "delete", "purge"]


def test_refused_and_failed_writes_leave_nothing(server, user, other_user):
    mine = new_list(user.api, name="taken")
    before = len(entries(server))
    # a conflict at flush (unique name), a validation error, a stale If-Match, a refusal
    assert user.api.post("/list", json={"name": "taken"}).status_code == 409
    assert user.api.post("/list", json={"name": 5}).status_code == 400
    assert user.api.patch(f"/list/{mine['id']}", json={"name": "x"},
                          headers={"If-Match": '"stale"'}).status_code == 412
    assert other_user.api.patch(f"/list/{mine['id']}", json={"name": "x"}).status_code == 404
    # a batch with one bad record: nothing of it is written, nor audited
    assert user.api.post("/list", json=[{"name": "b1"}, {"name": "taken"}]).status_code \
        == 409
    assert len(entries(server)) == before


def test_bulk_writes_leave_one_entry_per_record(server, user):
    resp = user.api.post("/list", json=[{"name": "bulk-a"}, {"name": "bulk-b"}])
    assert resp.status_code == 201, resp.text
    ids = [item["id"] for item in resp.json()["items"]]
    rid = resp.headers["X-Request-ID"]
    assert sorted(e["record_id"] for e in entries(server, request_id=rid)) == sorted(ids)

    resp = user.api.patch(f"/list/{','.join(ids)}", json={"description": "both"})
    assert resp.status_code == 200, resp.text
    got = entries(server, request_id=resp.headers["X-Request-ID"])
    assert sorted(e["record_id"] for e in got) == sorted(ids)
    assert all(e["changes"] == {"description": {"old": None, "new": "both"}} for e in got)

    flt = json.dumps({"description": "both"})
    resp = user.api.patch("/list", params={"filter": flt}, json={"description": "many"})
    assert resp.status_code == 200, resp.text
    got = entries(server, request_id=resp.headers["X-Request-ID"])
    assert sorted(e["record_id"] for e in got) == sorted(ids)
    assert {e["action"] for e in got} == {"update"}

    resp = user.api.delete("/list", params={"filter": json.dumps({"description": "many"})})
    assert resp.status_code == 200, resp.text
    got = entries(server, request_id=resp.headers["X-Request-ID"])
    assert sorted(e["record_id"] for e in got) == sorted(ids)
    assert {e["action"] for e in got} == {"delete"}


def test_membership_changes_are_audited(server, user, other_user):
    lst = new_list(user.api, name="club")
    resp = user.api.post("/listmember", json={"list_id": lst["id"], "uid": other_user.uid,
                                              "authorization": "invitee"})
    assert resp.status_code == 201, resp.text
    mid = resp.json()["id"]
    added = only(server, record_id=mid)
    assert added["resource"] == "listmember" and added["action"] == "create"
    assert added["changes"]["uid"]["new"] == other_user.uid
    # the invitee accepts: an update by them, allowed by the membership rule "join"
    resp = other_user.api.patch(f"/listmember/{mid}", json={"authorization": "member"})
    assert resp.status_code == 200, resp.text
    accepted = only(server, record_id=mid, action="update")
    assert accepted["uid"] == other_user.uid
    assert accepted["changes"] == {"authorization": {"old": "invitee", "new": "member"}}
    assert "membership rules" in accepted["rule"]
    assert user.api.delete(f"/listmember/{mid}").status_code == 200
    assert only(server, record_id=mid, action="delete")["uid"] == user.uid


def test_logins_failed_logins_and_logouts(server):
    user = make_user(server)
    (login,) = [e for e in entries(server, uid=user.uid) if e["action"] == "login"]
    assert login["record_id"] == user.account_id and login["auth_method"] == "password"
    wrong = requests.post(server.url + "/auth", json={"username": user.username,
                                                     "password": "Wrong-" + user.password},
                          timeout=30)
    assert wrong.status_code == 401
    failed = only(server, request_id=wrong.headers["X-Request-ID"])
    assert failed["action"] == "login_failed" and failed["record_id"] == user.account_id
    unknown = requests.post(server.url + "/auth", json={"username": "nobody-here-x1",
                                                       "password": "whatever-123"},
                            timeout=30)
    assert unknown.status_code == 401
    nobody = only(server, request_id=unknown.headers["X-Request-ID"])
    assert nobody["action"] == "login_failed" and nobody["record_id"] is None
    assert "nobody-here-x1" not in json.dumps(nobody, default=str)  # names typed: not kept

    resp = user.api.delete("/auth")
    assert resp.status_code == 204
    out = only(server, request_id=resp.headers["X-Request-ID"])
    assert out["action"] == "logout" and out["uid"] == user.uid


def test_api_keys_created_used_and_revoked_without_their_secret(server, user):
    resp = user.api.post("/apikey", json={"name": "robot"})
    assert resp.status_code == 201, resp.text
    key, kid = resp.json()["apikey"], resp.json()["id"]
    created = only(server, record_id=kid, action="create")
    assert created["changes"]["hash"] == {"changed": True}
    assert created["changes"]["prefix"]["new"] == resp.json()["prefix"]

    robot = Api(server.url)
    robot.http.headers["X-API-KEY"] = key
    resp = robot.post("/list", json={"name": "by-robot"})
    assert resp.status_code == 201, resp.text
    used = only(server, record_id=kid, action="use")
    assert used["apikey_id"] == kid and used["uid"] == user.uid
    made = only(server, record_id=resp.json()["id"])
    assert made["auth_method"] == "apikey" and made["apikey_id"] == kid

    assert user.api.delete(f"/apikey/{kid}").status_code == 200
    revoked = only(server, record_id=kid, action="delete")
    assert revoked["changes"]["expires"]["old"] is None
    assert revoked["changes"]["expires"]["new"]
    everything = json.dumps(entries(server, uid=user.uid), default=str)
    assert key.split(".", 1)[1] not in everything


def test_admin_actions_on_accounts_and_grants(server, admin, user):
    resp = admin.api.post("/grant", json={"uid": user.uid, "name": "lists", "value": "7"})
    assert resp.status_code == 201, resp.text
    gid = resp.json()["id"]
    granted = only(server, record_id=gid)
    assert granted["uid"] == admin.uid and granted["changes"]["value"]["new"] == "7"
    assert granted["rule"].startswith("rbac.yaml")
    assert admin.api.patch(f"/grant/{gid}", json={"value": "8"}).status_code == 200
    assert only(server, record_id=gid, action="update")["changes"] == \
        {"value": {"old": "7", "new": "8"}}
    resp = admin.api.patch(f"/account/{user.account_id}", json={"status": "suspended"})
    assert resp.status_code == 200, resp.text
    suspended = only(server, record_id=user.account_id, action="update")
    assert suspended["uid"] == admin.uid
    assert suspended["changes"]["status"] == {"old": "active", "new": "suspended"}


def test_second_factor_secrets_are_only_marked_changed(server):
    user = make_user(server)
    enrolled = user.api.post("/auth/totp")
    assert enrolled.status_code in (200, 201), enrolled.text
    secret = enrolled.json()["secret"]
    phone = Authenticator(secret)
    confirmed = user.api.put("/auth/totp", json={"code": phone.code()})
    assert confirmed.status_code == 200, confirmed.text
    mine = [e for e in entries(server, record_id=user.account_id) if e["action"] == "update"]
    assert len(mine) == 2
    assert mine[0]["changes"]["totp_secret"] == {"changed": True}
    assert mine[1]["changes"]["totp_enabled"] == {"changed": True} or \
        mine[1]["changes"]["totp_enabled"] == {"old": False, "new": True}
    assert mine[1]["changes"]["backup_codes"] == {"changed": True}
    text = json.dumps(entries(server, record_id=user.account_id), default=str)
    assert secret not in text
    for code in confirmed.json()["backup_codes"]:
        assert code not in text


def test_entries_are_append_only(server, user):
    new_list(user.api, name="append-only")
    model = server.services.models.Audit
    with server.services.db.session() as db:
        entry = db.execute(select(model).where(model.uid == user.uid)).scalars().first()
        entry.action = "forged"
        with pytest.raises(PermissionError):
            db.flush()
        db.rollback()
        entry = db.execute(select(model).where(model.uid == user.uid)).scalars().first()
        db.delete(entry)
        with pytest.raises(PermissionError):
            db.flush()
        db.rollback()
    # the HTTP API has no operation that writes it but its own trail
    assert server.anonymous().get("/audit").status_code in (401, 404)
    assert user.api.delete("/audit").status_code in (404, 405)


def _age(server, entry_id: str, days: float) -> None:
    """Make an entry look ``days`` old (the test's own UPDATE: the app has none)."""
    table = server.services.models.Audit.__table__
    with server.services.db.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == entry_id)
                     .values(created=utcnow() - timedelta(days=days)))


def test_retention_purge_runs_in_the_worker(server, user):
    old = only(server, record_id=new_list(user.api, name="old-entry")["id"])
    recent = only(server, record_id=new_list(user.api, name="recent-entry")["id"])
    _age(server, old["id"], 31)
    _age(server, recent["id"], 29)
    off = AuditPurger(server.settings.replace(audit_retention_days=0))
    assert off.run() == 0 and entries(server, id=old["id"])  # 0: kept forever
    settings = server.settings.replace(audit_retention_days=30,
                                       worker_queue=f"test-audit-{secrets.token_hex(4)}")
    with run_worker(settings, server.services.redis.url) as app:
        beat = Scheduler(app, lazy=True)
        beat.setup_schedule()
        beat.apply_async(beat.schedule["purge-audit"], producer=None, advance=False)
        wait_for(lambda: not entries(server, id=old["id"]), timeout=30,
                 what="the old audit entry purged")
    assert entries(server, id=recent["id"])


def test_the_trash_retention_purge_is_audited(server, user):
    lid = new_list(user.api, name="left in the trash")["id"]
    assert user.api.delete(f"/list/{lid}").status_code == 200
    with server.services.db.session() as s, s.begin():
        s.get(server.services.models.List, lid).modified = utcnow() - timedelta(days=40)
    assert purge_expired(server.services, retention_days=30) >= 1
    purged = only(server, record_id=lid, action="purge")
    assert purged["auth_method"] == "worker" and purged["uid"] is None
    assert purged["rule"] == "setting trash_retention_days: 30"
