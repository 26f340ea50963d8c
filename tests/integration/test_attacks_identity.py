"""Attacks on identity, tried over HTTP as an outsider would (issue 11, holes 3, 4, 5, 8,
9 and the session part of 12). Each test failed on the code before its fix.

- 3: a scoped API key acts as its owner on a public operation only when its scopes
  accept that operation; otherwise the request runs as anonymous.
- 4: an expired or revoked key stays dead: no PATCH of ``expires``, no restore.
- 5: a trashed person or a suspended account is cut off at once (sessions, keys,
  login), and admins suspend and re-enable accounts over HTTP and on the command line.
- 8: the login lockout is atomic and counted per (account, client address), with a
  per-account ceiling of ten times ``login_attempts_max``.
- 9: registration and changes of a person's address answer the same whether the name
  or address is taken; the owner of an existing address gets a message instead.
- 12: turning on TOTP ends the account's other sessions.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from helpers import Api, assert_problem, make_user, serve_app
from mailhelp import token_of
from test_apikeys import ensure_scope, key_api, new_key
from test_registration import mail_server, smtp  # noqa: F401 (fixtures)
from test_totp import Authenticator

ROOT = Path(__file__).resolve().parents[2]


def login(srv, username: str, password: str, **headers) -> requests.Response:
    return requests.post(srv.url + "/auth", json={"username": username,
                                                  "password": password},
                         headers=headers, timeout=30)


def account_status(server, account_id: str) -> str:
    model = server.services.models.Account
    with server.services.db.session() as db:
        return db.execute(select(model.status).where(model.id == account_id)).scalar_one()


# -- 3: scoped keys on public operations ----------------------------------------------

def test_scoped_admin_key_cannot_create_admins_through_public_register(server, admin):
    ensure_scope(admin, "list:read")
    key = new_key(admin, scopes=["list:read"])
    api = key_api(server, key["apikey"])
    assert api.get("/list").status_code == 200  # the key works where its scope says
    name = f"evil{secrets.token_hex(4)}"
    resp = api.post("/account", json={"username": name, "email": f"{name}@example.com",
                                      "is_admin": True})
    # the key's scopes do not accept POST /account: it runs as anonymous, and anonymous
    # callers may not create accounts under the default policy (closed)
    assert_problem(resp, 401)
    found = admin.api.get("/account", params={"filter": f'{{"name": "{name}"}}'}).json()
    assert found["count"] == 0
    # a public read still answers, as it would for anyone
    assert api.get("/health").status_code == 200


def test_scoped_key_acts_as_owner_on_public_operation_its_scope_accepts(server, admin):
    ensure_scope(admin, "account:write")
    key = new_key(admin, scopes=["account:write"])
    name = f"prov{secrets.token_hex(4)}"
    resp = key_api(server, key["apikey"]).post(
        "/account", json={"username": name, "email": f"{name}@example.com"})
    assert resp.status_code == 201, resp.text


# -- 4: revocation is final ------------------------------------------------------------

def test_revoked_key_cannot_be_revived_by_patching_expires(server, user):
    key = new_key(user)
    api = key_api(server, key["apikey"])
    assert api.get("/auth").status_code == 200
    assert user.api.delete(f"/apikey/{key['id']}").status_code == 200
    assert_problem(api.get("/auth"), 401)
    # the trashed key is not readable by id any more; its restore is refused too
    resp = user.api.put(f"/trashcan/apikey-{key['id']}", json={"status": "active"})
    assert assert_problem(resp, 403)["type"].endswith("/apikey-ended")
    assert_problem(api.get("/auth"), 401)
    revived = user.api.patch(f"/apikey/{key['id']}", json={"expires": None})
    assert revived.status_code in (403, 404), revived.text
    assert_problem(api.get("/auth"), 401)


def test_expired_key_cannot_be_revived(server, user):
    key = new_key(user)
    api = key_api(server, key["apikey"])
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    # ending a key early is allowed (it is a revocation) ...
    resp = user.api.patch(f"/apikey/{key['id']}", json={"expires": past})
    assert resp.status_code == 200, resp.text
    assert_problem(api.get("/auth"), 401)
    # ... bringing it back is not
    assert_problem(user.api.patch(f"/apikey/{key['id']}", json={"expires": None}),
                   403, "expires")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert_problem(user.api.patch(f"/apikey/{key['id']}", json={"expires": later}),
                   403, "expires")
    assert_problem(api.get("/auth"), 401)


def test_live_key_expiry_can_still_be_moved(server, user):
    key = new_key(user)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    resp = user.api.patch(f"/apikey/{key['id']}", json={"expires": later})
    assert resp.status_code == 200, resp.text
    assert key_api(server, key["apikey"]).get("/auth").status_code == 200


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
def test_out_of_range_expiry_is_400_not_500(user, value):
    assert_problem(user.api.post("/apikey", json={"name": "x" + secrets.token_hex(3),
                                                  "expires": value}), 400, "expires")
    key = new_key(user)
    assert_problem(user.api.patch(f"/apikey/{key['id']}", json={"expires": value}),
                   400, "expires")


# -- 5: trashed people and suspended accounts are cut off ------------------------------

def test_trashed_person_loses_sessions_keys_and_login(server, admin):
    victim = make_user(server)
    second = login(server, victim.username, victim.password).json()["token"]
    key = new_key(victim)
    keyed = key_api(server, key["apikey"])
    assert keyed.get("/auth").status_code == 200

    assert admin.api.delete(f"/person/{victim.uid}").status_code == 200
    assert_problem(victim.api.get("/auth"), 401)
    assert_problem(Api(server.url, second).get("/auth"), 401)
    assert_problem(keyed.get("/auth"), 401)
    assert_problem(login(server, victim.username, victim.password), 401)

    # restored, the person may log in again; what was ended stays ended
    restored = admin.api.put(f"/trashcan/person-{victim.uid}", json={"status": "active"})
    assert restored.status_code == 200, restored.text
    assert login(server, victim.username, victim.password).status_code == 201
    assert_problem(victim.api.get("/auth"), 401)
    assert_problem(keyed.get("/auth"), 401)


def test_admin_suspends_and_reenables_an_account(server, admin):
    victim = make_user(server)
    key = new_key(victim)
    keyed = key_api(server, key["apikey"])
    resp = admin.api.patch(f"/account/{victim.account_id}", json={"status": "suspended"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "suspended"
    assert_problem(victim.api.get("/auth"), 401)
    assert_problem(keyed.get("/auth"), 401)
    assert_problem(login(server, victim.username, victim.password), 401)
    # the admin still sees it (to re-enable it); its name stays taken
    assert admin.api.get(f"/account/{victim.account_id}").json()["status"] == "suspended"

    resp = admin.api.patch(f"/account/{victim.account_id}", json={"status": "active"})
    assert resp.status_code == 200, resp.text
    fresh = login(server, victim.username, victim.password)
    assert fresh.status_code == 201, fresh.text
    assert_problem(keyed.get("/auth"), 401)  # keys ended with the suspension


def test_account_status_changes_are_checked(server, admin, user):
    assert_problem(user.api.patch(f"/account/{user.account_id}",
                                  json={"status": "suspended"}), 403)
    assert user.api.get("/auth").status_code == 200
    assert_problem(admin.api.patch(f"/account/{admin.account_id}",
                                   json={"status": "suspended"}), 403, "status")
    assert_problem(admin.api.patch(f"/account/{user.account_id}",
                                   json={"status": "disabled"}), 400, "status")
    assert_problem(admin.api.patch(f"/account/{user.account_id}",
                                   json={"is_admin": True}), 400, "is_admin")
    assert user.api.get("/auth").status_code == 200


def test_login_racing_a_suspension_does_not_keep_a_session(server, admin):
    victim = make_user(server)
    with ThreadPoolExecutor(4) as pool:
        logins = [pool.submit(login, server, victim.username, victim.password)
                  for _ in range(3)]
        time.sleep(0.01)
        resp = admin.api.patch(f"/account/{victim.account_id}",
                               json={"status": "suspended"})
        assert resp.status_code == 200, resp.text
        results = [f.result() for f in logins]
    for r in results:
        if r.status_code == 201:
            assert_problem(Api(server.url, r.json()["token"]).get("/auth"), 401)


# -- 5: the command line ---------------------------------------------------------------

def cli(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")}
    env.update(APICRUD_DATABASE_URL=server.settings.sqlalchemy_url,
               APICRUD_REDIS_URL=server.services.redis.url,
               APICRUD_DATA_DIR=str(server.settings.path("data_dir")),
               APICRUD_SECRET_KEY=server.settings.secret_key, APICRUD_ENV="test")
    return subprocess.run([sys.executable, "-m", "apicrud.cli", "account", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          input=stdin)


def test_cli_disable_enable_password_and_list(server):
    victim = make_user(server)
    key = new_key(victim)
    off = cli(server, "disable", victim.username)
    assert off.returncode == 0, off.stdout + off.stderr
    assert_problem(victim.api.get("/auth"), 401)
    assert_problem(key_api(server, key["apikey"]).get("/auth"), 401)
    assert_problem(login(server, victim.username, victim.password), 401)
    listing = cli(server, "list")
    assert listing.returncode == 0, listing.stderr
    line = next(x for x in listing.stdout.splitlines() if x.split()[:1] == [victim.username])
    assert "suspended" in line

    on = cli(server, "enable", victim.username)
    assert on.returncode == 0, on.stdout + on.stderr
    assert login(server, victim.username, victim.password).status_code == 201

    session = make_user(server)
    new_password = f"pw-{secrets.token_hex(8)}-x"
    reset = cli(server, "password", session.username, "--password", new_password)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert new_password not in reset.stdout + reset.stderr
    assert_problem(session.api.get("/auth"), 401)  # a reset ends every session
    assert_problem(login(server, session.username, session.password), 401)
    assert login(server, session.username, new_password).status_code == 201

    prompted = f"pw-{secrets.token_hex(8)}-y"
    reset = cli(server, "password", session.username, stdin=f"{prompted}\n{prompted}\n")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert login(server, session.username, prompted).status_code == 201

    weak = cli(server, "password", session.username, "--password", "short")
    assert weak.returncode != 0 and "Traceback" not in weak.stderr
    missing = cli(server, "disable", "no-such-" + secrets.token_hex(3))
    assert missing.returncode != 0 and "no account" in missing.stderr


# -- 8: lockout ------------------------------------------------------------------------

def test_parallel_wrong_logins_do_not_get_past_the_limit(server):
    victim = make_user(server)
    limit = server.settings.login_attempts_max
    with ThreadPoolExecutor(limit + 3) as pool:
        codes = list(pool.map(lambda _: login(server, victim.username, "wrong").status_code,
                              range(limit + 3)))
    assert codes.count(401) <= limit, codes
    assert set(codes) <= {401, 429}, codes


@pytest.fixture(scope="module")
def proxied(server):
    settings = server.settings.replace(trusted_proxies=["127.0.0.1"], login_attempts_max=3)
    with serve_app(settings) as srv:
        yield srv


def test_lockout_of_one_address_does_not_lock_the_owner_out(proxied):
    victim = make_user(proxied)
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(3):
        assert login(proxied, victim.username, "wrong", **attacker).status_code == 401
    assert_problem(login(proxied, victim.username, victim.password, **attacker), 429)
    # the owner, from elsewhere, still gets in
    ok = login(proxied, victim.username, victim.password, **{"X-Forwarded-For": "198.51.100.2"})
    assert ok.status_code == 201, ok.text


def test_many_addresses_hit_the_per_account_ceiling(proxied):
    victim = make_user(proxied)
    ceiling = 10 * 3
    for n in range(ceiling):
        resp = login(proxied, victim.username, "wrong",
                     **{"X-Forwarded-For": f"203.0.{n // 2}.{n % 2 + 1}"})
        assert resp.status_code == 401, (n, resp.text)
    assert_problem(login(proxied, victim.username, victim.password,
                         **{"X-Forwarded-For": "198.51.100.99"}), 429)


# -- 12: a second factor ends the other sessions ---------------------------------------

def test_enabling_totp_ends_other_sessions(server):
    me = make_user(server)
    other = Api(server.url, login(server, me.username, me.password).json()["token"])
    body = me.api.post("/auth/totp").json()
    phone = Authenticator(body["secret"])
    assert me.api.put("/auth/totp", json={"code": phone.code()}).status_code == 200
    assert me.api.get("/auth").status_code == 200
    assert_problem(other.get("/auth"), 401)


# -- 9: no enumeration through registration or address changes -------------------------

def _shape(resp) -> tuple:
    body = resp.json()
    return (resp.status_code, sorted(body), body.get("status"), body.get("is_admin"),
            body.get("rbac"), sorted(k for k in resp.headers if k.lower() in
                                     ("location", "etag", "content-type")))


def fresh() -> tuple[str, str]:
    name = f"e{secrets.token_hex(5)}"
    return name, f"{name}@example.test"


def test_registration_does_not_tell_taken_names_or_addresses(mail_server, smtp):
    anon = mail_server.anonymous()
    name, address = fresh()
    first = anon.post("/account", json={"username": name, "email": address})
    assert first.status_code == 201, first.text
    smtp.wait_mail(address)

    other, other_address = fresh()
    taken_name = anon.post("/account", json={"username": name.upper(),
                                             "email": other_address})
    taken_address = anon.post("/account", json={"username": other, "email": address})
    new_name, new_address = fresh()
    free = anon.post("/account", json={"username": new_name, "email": new_address})
    assert _shape(taken_name) == _shape(free) == _shape(taken_address), \
        (taken_name.text, taken_address.text, free.text)
    # the owner of the address hears of it (still pending under open: a new
    # confirmation token), and the one who picked a taken name too
    notice = smtp.wait_mail(address, count=2)
    assert "Confirm" in notice["Subject"] and "Token:" in notice.get_content()
    taken = smtp.wait_mail(other_address)
    assert "taken" in taken.get_content() and "Token:" not in taken.get_content()
    # nothing was created for the refused attempts
    model = mail_server.services.models.Account
    with mail_server.services.db.session() as db:
        names = list(db.execute(select(model.name).where(
            func.lower(model.name).in_([name, other]))).scalars())
    assert names == [name]


def test_registering_an_active_owners_address_mails_the_owner(mail_server, smtp):
    owner = make_user(mail_server)
    address = f"{owner.username}@example.com"
    name, _ = fresh()
    resp = mail_server.anonymous().post("/account", json={"username": name, "email": address})
    assert resp.status_code == 201, resp.text
    notice = smtp.wait_mail(address)
    text = notice.get_content()
    assert "already registered" in text and owner.username in text and "Token:" not in text


def test_registration_under_onrequest_is_the_same_either_way(mail_server, smtp):
    controller = mail_server.services.controllers["account"]
    saved = controller.settings
    controller.settings = saved.replace(account_policy="onrequest")
    try:
        anon = mail_server.anonymous()
        name, address = fresh()
        first = anon.post("/account", json={"username": name, "email": address})
        other, _other_address = fresh()
        again = anon.post("/account", json={"username": other, "email": address})
        assert _shape(first) == _shape(again), again.text
        assert again.status_code == 201
    finally:
        controller.settings = saved


def test_changing_address_to_a_taken_one_answers_as_for_a_free_one(mail_server, smtp):
    owner = make_user(mail_server)
    taken = f"{owner.username}@example.com"
    me = make_user(mail_server)
    mine = f"{me.username}@example.com"
    to_taken = me.api.patch(f"/person/{me.uid}", json={"identity": taken})
    free = f"new-{secrets.token_hex(4)}@example.test"
    to_free = me.api.patch(f"/person/{me.uid}", json={"identity": free})
    assert to_taken.status_code == to_free.status_code == 200, (to_taken.text, to_free.text)
    assert to_taken.json()["identity"] == to_free.json()["identity"] == mine
    # the owner of the taken address is told; the free address gets a confirmation
    warned = smtp.wait_mail(taken)
    assert "Token:" not in warned.get_content()
    token = token_of(smtp.wait_mail(free))
    done = mail_server.anonymous().post("/auth/identity", json={"token": token})
    assert done.status_code == 200, done.text
    assert me.api.get(f"/person/{me.uid}").json()["identity"] == free
    assert_problem(mail_server.anonymous().post("/auth/identity", json={"token": token}),
                   400, "token")


def test_new_password_ends_the_other_sessions_but_the_current_one(mail_server, smtp):
    me = make_user(mail_server)
    other = Api(mail_server.url, login(mail_server, me.username, me.password).json()["token"])
    assert mail_server.anonymous().post("/auth/reset", json={"username": me.username}) \
        .status_code == 202
    token = token_of(smtp.wait_mail(f"{me.username}@example.com"))
    password = f"new-{secrets.token_hex(6)}-pass"
    done = me.api.post("/auth/password", json={"token": token, "password": password})
    assert done.status_code == 200, done.text
    assert me.api.get("/auth").status_code == 200
    assert_problem(other.get("/auth"), 401)
    assert login(mail_server, me.username, password).status_code == 201
