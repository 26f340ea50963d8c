"""Login sessions: storage, expiry (fixed and sliding), per-user limit, log out
everywhere, and the login lockout shared by two app instances through Redis."""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from apicrud.auth.sessions import SessionManager
from apicrud.crypto import token_hash
from conftest import Api, make_user, serve_app
from test_crud import assert_problem


@contextlib.contextmanager
def second_instance(server, **changes):
    """Another create_app on its own port, sharing the server's database and Redis."""
    # the embedded Redis is reached by its socket URL, as another host would
    settings = server.settings.replace(redis_url=server.services.redis.url, **changes)
    with serve_app(settings) as srv:
        yield srv.url, srv.services


def login(url: str, username: str, password: str) -> requests.Response:
    return requests.post(url + "/auth", json={"username": username, "password": password},
                         timeout=30)


def test_login_lockout_holds_across_instances(server):
    victim = make_user(server)
    with second_instance(server) as (other_url, _):
        assert login(other_url, victim.username, victim.password).status_code == 201
        half = server.settings.login_attempts_max // 2
        for i in range(server.settings.login_attempts_max):
            url = server.url if i < half else other_url  # failures split over both
            assert login(url, victim.username, "wrong").status_code == 401
        for url in (server.url, other_url):
            resp = login(url, victim.username, victim.password)
            assert_problem(resp, 429)
            assert int(resp.headers["Retry-After"]) >= 1
        # sessions made before the lockout keep working on both
        assert victim.api.get("/auth").status_code == 200
        assert Api(other_url, victim.token).get("/auth").status_code == 200


def test_session_is_stored_encrypted_under_a_hash_of_the_token(server, user):
    token = user.token
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 bits, URL-safe
    redis = server.services.redis.client
    key = f"apicrud:session:{token_hash(token)}"
    raw = redis.get(key)
    assert raw is not None
    for plain in (token, user.uid, user.username, user.account_id):
        assert plain.encode() not in raw
    assert not list(redis.scan_iter(match=f"*{token}*", count=1000))
    assert 0 < redis.ttl(key) <= server.settings.session_ttl


def test_several_sessions_and_logout_of_one(server, user):
    second = login(server.url, user.username, user.password).json()["token"]
    assert second != user.token
    assert Api(server.url, second).delete("/auth").status_code == 204
    assert_problem(Api(server.url, second).get("/auth"), 401)
    assert user.api.get("/auth").status_code == 200


def test_log_out_everywhere(server, other_user):
    user = make_user(server)
    tokens = [user.token] + [login(server.url, user.username, user.password).json()["token"]
                             for _ in range(2)]
    resp = Api(server.url, tokens[1]).delete("/auth", params={"all": "true"})
    assert resp.status_code == 204
    assert "Max-Age=0" in resp.headers["Set-Cookie"]
    for token in tokens:
        assert_problem(Api(server.url, token).get("/auth"), 401)
    assert other_user.api.get("/auth").status_code == 200  # others are untouched
    assert login(server.url, user.username, user.password).status_code == 201


def test_logout_everywhere_by_cookie_needs_csrf(server, user):
    session = requests.Session()
    body = session.post(server.url + "/auth", json={"username": user.username,
                                                    "password": user.password},
                        timeout=30).json()
    refused = session.delete(server.url + "/auth", params={"all": "true"}, timeout=30)
    assert_problem(refused, 403)
    assert user.api.get("/auth").status_code == 200
    done = session.delete(server.url + "/auth", params={"all": "true"},
                          headers={"X-CSRF-Token": body["csrf_token"]}, timeout=30)
    assert done.status_code == 204
    assert_problem(user.api.get("/auth"), 401)


def test_session_limit_per_user_ends_the_oldest(server):
    user = make_user(server)
    with second_instance(server, session_limit_per_user=2) as (url, _):
        tokens = [login(url, user.username, user.password).json()["token"]
                  for _ in range(2)]
        # the conftest's login plus two: the oldest (conftest's) is gone already
        assert_problem(user.api.get("/auth"), 401)
        newest = login(url, user.username, user.password).json()["token"]
        assert_problem(Api(url, tokens[0]).get("/auth"), 401)
        for token in (tokens[1], newest):
            assert Api(url, token).get("/auth").status_code == 200
        redis = server.services.redis.client
        assert redis.scard(f"apicrud:sessions:{user.uid}") == 2


def test_concurrent_logins_of_one_account_all_succeed(server):
    user = make_user(server)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: login(server.url, user.username, user.password),
                                range(3)))
    assert [r.status_code for r in results] == [201] * 3, [r.text for r in results]
    admin_view = server.services.models.Account
    with server.services.db.session() as db:
        assert db.get(admin_view, user.account_id).last_login is not None


def _manager(server, **kw) -> SessionManager:
    return SessionManager(server.services.redis.client, server.settings.secret_key,
                          prefix="apicrud-test-sliding", **kw)


def test_fixed_expiry_does_not_move(server):
    mgr = _manager(server, ttl=4)
    token, expires = mgr.create("u-fixed", "a-fixed")
    time.sleep(2.3)
    assert mgr.get(token)["expires"] == expires
    assert mgr.redis.ttl(f"apicrud-test-sliding:session:{token_hash(token)}") <= 2


def test_sliding_expiry_moves_once_half_the_ttl_has_passed(server):
    mgr = _manager(server, ttl=4, expiry="sliding")
    token, expires = mgr.create("u-slide", "a-slide")
    key = f"apicrud-test-sliding:session:{token_hash(token)}"
    assert mgr.get(token)["expires"] == expires  # early: nothing rewritten
    time.sleep(2.3)
    session = mgr.get(token)
    assert session["expires"] > expires
    assert mgr.redis.ttl(key) >= 3
    time.sleep(2.3)  # past the first end: alive because it was used
    assert mgr.get(token) is not None
    mgr.delete_all("u-slide")


def test_sliding_session_ends_at_its_maximum_lifetime(server):
    mgr = _manager(server, ttl=4, expiry="sliding", max_lifetime=6)
    token, _ = mgr.create("u-max", "a-max")
    time.sleep(2.3)
    assert mgr.get(token) is not None  # slides, but only up to created + 6
    time.sleep(2.3)
    assert mgr.get(token) is not None  # at its bound: not moved again
    time.sleep(2.5)  # unbounded, it would live to about 8.6 s now
    assert mgr.get(token) is None


def test_sliding_setting_reaches_the_session_manager(server):
    with second_instance(server, session_expiry="sliding", session_ttl=600,
                         session_limit_per_user=3) as (_, services):
        assert services.sessions.expiry == "sliding"
        assert services.sessions.ttl == 600 and services.sessions.limit == 3
        assert services.sessions.max_lifetime == server.settings.session_max_lifetime


def test_limit_counts_only_live_sessions(server):
    mgr = _manager(server, ttl=3600, limit=2)

    def create() -> str:
        time.sleep(0.01)  # "oldest" is by expiry time in ms: keep creations apart
        return mgr.create("u-live", "a")[0]

    first = create()
    mgr.delete(first)
    second, third = create(), create()
    assert mgr.get(second) is not None and mgr.get(third) is not None
    fourth = create()
    assert mgr.get(second) is None and mgr.get(fourth) is not None
    assert mgr.delete_all("u-live") == 2
