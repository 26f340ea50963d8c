"""/auth over HTTP: login, identity, logout, the four ways to present credentials."""

from __future__ import annotations

import base64

import requests

from helpers import Api, assert_problem, make_user


def test_login_returns_token_roles_and_cookie(server, user):
    resp = requests.post(server.url + "/auth", json={"username": user.username,
                                                     "password": user.password}, timeout=30)
    assert resp.status_code == 201
    body = resp.json()
    assert {"uid", "account_id", "token", "expires", "roles"} <= body.keys()
    assert body["uid"] == user.uid and body["roles"] == ["user"]
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and body["token"] in cookie
    assert "Secure" not in cookie  # plain http on loopback


def test_login_admin_has_admin_role(admin):
    assert "admin" in admin.api.get("/auth").json()["roles"]


def test_login_unknown_user_and_wrong_password_get_same_401(server, user):
    anon = server.anonymous()
    wrong = anon.post("/auth", json={"username": user.username, "password": "nope"})
    unknown = anon.post("/auth", json={"username": "nobody-here", "password": "nope"})
    assert_problem(wrong, 401)
    assert_problem(unknown, 401)
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_login_missing_field_is_400(server):
    assert_problem(server.anonymous().post("/auth", json={"username": "x"}), 400, "password")


def test_login_lockout_after_max_failures_even_with_right_password(server):
    victim = make_user(server)
    anon = server.anonymous()
    for _ in range(server.settings.login_attempts_max):
        assert anon.post("/auth", json={"username": victim.username,
                                        "password": "wrong"}).status_code == 401
    locked = anon.post("/auth", json={"username": victim.username,
                                      "password": victim.password})
    assert_problem(locked, 429)
    assert int(locked.headers["Retry-After"]) >= 1
    # existing sessions keep working
    assert victim.api.get("/auth").status_code == 200


def test_auth_get_identifies_caller_and_anonymous_gets_401(server, user):
    me = user.api.get("/auth").json()
    assert me["uid"] == user.uid and me["account_id"] == user.account_id
    assert_problem(server.anonymous().get("/auth"), 401)


def test_logout_ends_session_at_once(server):
    u = make_user(server)
    assert u.api.get("/list").status_code == 200
    resp = u.api.delete("/auth")
    assert resp.status_code == 204 and resp.content == b""
    assert_problem(u.api.get("/list"), 401)
    assert_problem(u.api.delete("/auth"), 401)


def test_basic_credentials_uid_and_token(server, user):
    api = Api(server.url)
    good = base64.b64encode(f"{user.uid}:{user.token}".encode()).decode()
    api.http.headers["Authorization"] = f"Basic {good}"
    assert api.get("/auth").json()["uid"] == user.uid
    for bad in (f"someone-else:{user.token}", f"{user.uid}:wrong", "no-colon"):
        api.http.headers["Authorization"] = "Basic " + base64.b64encode(bad.encode()).decode()
        assert_problem(api.get("/auth"), 401)
    api.http.headers["Authorization"] = "Basic %%%not-base64"
    assert_problem(api.get("/auth"), 401)


def test_unsupported_scheme_is_401(server):
    api = Api(server.url)
    api.http.headers["Authorization"] = "Digest abc"
    assert_problem(api.get("/list"), 401)


def test_cookie_session_reads_but_needs_csrf_header_to_write(server, user):
    session = requests.Session()
    login = session.post(server.url + "/auth", json={"username": user.username,
                                                     "password": user.password}, timeout=30)
    csrf = login.json()["csrf_token"]
    assert session.get(server.url + "/list", timeout=30).status_code == 200
    refused = session.post(server.url + "/list", json={"name": "via-cookie"}, timeout=30)
    assert_problem(refused, 403)
    refused = session.post(server.url + "/list", json={"name": "via-cookie"},
                           headers={"X-CSRF-Token": "forged"}, timeout=30)
    assert_problem(refused, 403)
    ok = session.post(server.url + "/list", json={"name": "via-cookie"},
                      headers={"X-CSRF-Token": csrf}, timeout=30)
    assert ok.status_code == 201, ok.text


def test_health_is_public(server):
    resp = server.anonymous().get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_login_upgrades_a_hash_made_with_older_parameters(server, user):
    """A password hashed with weaker Argon2 parameters is rehashed with the current ones at
    the next successful login (the user's password still works, and only then)."""
    from argon2 import PasswordHasher
    from sqlalchemy import select, update

    from apicrud.auth.passwords import needs_rehash

    account_model = server.services.models.Account
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(user.password)
    with server.services.db.session() as session, session.begin():
        session.execute(update(account_model).where(account_model.id == user.account_id)
                        .values(password=old))

    def stored():
        with server.services.db.session() as session:
            return session.execute(select(account_model.password).where(
                account_model.id == user.account_id)).scalar_one()

    anon = server.anonymous()
    assert anon.post("/auth", json={"username": user.username, "password": "wrong"}
                     ).status_code == 401
    assert stored() == old  # a failed login changes nothing
    resp = anon.post("/auth", json={"username": user.username, "password": user.password})
    assert resp.status_code == 201, resp.text
    upgraded = stored()
    assert upgraded != old and not needs_rehash(upgraded)
    assert anon.post("/auth", json={"username": user.username, "password": user.password}
                     ).status_code == 201
