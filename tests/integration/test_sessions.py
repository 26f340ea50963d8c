"""Login sessions: storage, expiry (fixed and sliding), per-user limit, log out
everywhere, and two app instances sharing Redis: a session made on either works on
both, a logout (one session, or everywhere) on either ends it on both, and the login
lockout holds across them."""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from apicrud.auth.sessions import SessionManager
from apicrud.crypto import token_hash
from helpers import Api, assert_problem, make_user, serve_app


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


# -- sessions across instances (scale-out) --------------------------------------------
# Sessions live only in the shared Redis: whichever instance issued a token, every
# instance accepts it, and an end of it on one instance is seen by all at once.

ENDED = "invalid or expired credentials"  # the 401 of a credential sent but refused


def both_ways(server, other_url):
    """(issued on, used or ended on) for A -> B and B -> A."""
    return ((server.url, other_url), (other_url, server.url))


def with_cookie(method: str, url: str, cookie_name: str, cookie: str,
                **kw) -> requests.Response:
    """A request carrying only the session cookie, sent explicitly: no cookie jar that a
    logout's ``Max-Age=0`` could empty (the request would then be anonymous instead)."""
    return requests.request(method, url, cookies={cookie_name: cookie}, timeout=30, **kw)


def assert_refused(resp: requests.Response) -> None:
    """401 because the credential sent is no longer valid (not for sending none)."""
    assert ENDED in assert_problem(resp, 401)["detail"]


def test_session_made_on_either_instance_works_on_the_other(server):
    user = make_user(server)
    with second_instance(server) as (other_url, _):
        for made_on, used_on in both_ways(server, other_url):
            token = login(made_on, user.username, user.password).json()["token"]
            there = Api(used_on, token)
            me = there.get("/auth")
            assert me.status_code == 200, me.text
            assert me.json()["uid"] == user.uid and me.json()["method"] == "bearer"
            assert there.get("/list").status_code == 200
            created = there.post("/list", json={"name": f"made via {used_on}"})
            assert created.status_code == 201, created.text
            # and the record is there for the same session on the issuing instance
            here = Api(made_on, token).get(f"/list/{created.json()['id']}")
            assert here.status_code == 200 and here.json()["uid"] == user.uid


def test_bearer_logout_on_one_instance_ends_the_session_on_the_other(server):
    user = make_user(server)
    with second_instance(server) as (other_url, _):
        for made_on, ended_on in both_ways(server, other_url):
            token = login(made_on, user.username, user.password).json()["token"]
            kept = login(made_on, user.username, user.password).json()["token"]
            for url in (made_on, ended_on):  # in use on both before it ends
                assert Api(url, token).get("/list").status_code == 200
            assert Api(ended_on, token).delete("/auth").status_code == 204
            for url in (made_on, ended_on):
                assert_refused(Api(url, token).get("/auth"))
                assert_refused(Api(url, token).get("/list"))
                assert_refused(Api(url, token).post("/list", json={"name": "late"}))
                # only that session ended: the user's other one works on both
                assert Api(url, kept).get("/auth").status_code == 200


def test_cookie_logout_on_one_instance_ends_the_session_on_the_other(server):
    user = make_user(server)
    name = server.settings.cookie_name
    with second_instance(server) as (other_url, _):
        for made_on, ended_on in both_ways(server, other_url):
            resp = login(made_on, user.username, user.password)
            cookie, csrf = resp.cookies[name], resp.json()["csrf_token"]
            for url in (made_on, ended_on):
                me = with_cookie("GET", url + "/auth", name, cookie)
                assert me.status_code == 200 and me.json()["method"] == "cookie"
            # the CSRF token issued with the session on one instance is valid on the other
            assert_problem(with_cookie("POST", ended_on + "/list", name, cookie,
                                       json={"name": "no csrf"}), 403)
            created = with_cookie("POST", ended_on + "/list", name, cookie,
                                  json={"name": f"cookie via {ended_on}"},
                                  headers={"X-CSRF-Token": csrf})
            assert created.status_code == 201, created.text
            out = with_cookie("DELETE", ended_on + "/auth", name, cookie,
                              headers={"X-CSRF-Token": csrf})
            assert out.status_code == 204 and "Max-Age=0" in out.headers["Set-Cookie"]
            for url in (made_on, ended_on):
                assert_refused(with_cookie("GET", url + "/auth", name, cookie))
                assert_refused(with_cookie("GET", url + "/list", name, cookie))
                assert_refused(with_cookie("POST", url + "/list", name, cookie,
                                           json={"name": "late"},
                                           headers={"X-CSRF-Token": csrf}))
            assert user.api.get("/auth").status_code == 200  # the fixture's session lives


def test_log_out_everywhere_on_one_instance_ends_sessions_made_on_the_other(server,
                                                                            other_user):
    user = make_user(server)  # its conftest session was made on the first instance
    name = server.settings.cookie_name
    with second_instance(server) as (other_url, _):
        on_a = [user.token] + [login(server.url, user.username, user.password).json()["token"]
                               for _ in range(2)]
        cookie = login(server.url, user.username, user.password).cookies[name]
        on_b = login(other_url, user.username, user.password).json()["token"]
        for token in on_a:
            assert Api(other_url, token).get("/auth").status_code == 200
        assert with_cookie("GET", other_url + "/auth", name, cookie).status_code == 200
        resp = Api(other_url, on_b).delete("/auth", params={"all": "true"})
        assert resp.status_code == 204
        for url in (server.url, other_url):
            for token in on_a + [on_b]:
                assert_refused(Api(url, token).get("/auth"))
                assert_refused(Api(url, token).get("/list"))
            assert_refused(with_cookie("GET", url + "/auth", name, cookie))
            # other users are untouched, on both instances
            assert Api(url, other_user.token).get("/auth").status_code == 200
        assert not server.services.redis.client.exists(f"apicrud:sessions:{user.uid}")
        # the account itself is fine: a new login on the first instance works on the second
        again = login(server.url, user.username, user.password)
        assert again.status_code == 201
        assert Api(other_url, again.json()["token"]).get("/auth").status_code == 200


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
