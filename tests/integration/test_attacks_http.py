"""Attacks over HTTP on the request path (issue 11, holes 6, 10, 11 and 12).

Each test is what an outside attacker (or an unlucky browser) sent to ``apicrud serve``;
each failed on the code before the fix:

- 6: stale or invalid credentials on a public operation are ignored (anonymous), so a
  revoked cookie or token does not stop anyone from logging in again;
- 10: oversized bodies, out-of-range date-times and huge grant values are 4xx problem
  documents naming the field, never a 500 or a silently stored value;
- 11: ``ratelimit_default`` decides a user's limit, and requests with bad credentials
  are counted per client address (429 with Retry-After past ``ratelimit_auth_failures``);
- 12: ``Cache-Control: no-store`` on authenticated answers and on the login token,
  ``X-Content-Type-Options: nosniff`` everywhere, ``HEAD`` like ``GET``, ``Vary: Origin``
  on every response when CORS is on, and one log line per interval for a Redis outage.
"""

from __future__ import annotations

import base64
import logging
import random
import secrets
import time

import pytest
import requests
from sqlalchemy import func, select

from apicrud.errors import StartupError
from helpers import assert_problem, make_user, new_list
from instances import login, new_account, start_instance


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def far_window(interval: int = 60) -> float:
    """The start of a random window long ago: no other test counts there."""
    return float(random.randrange(10**9 // interval, 16 * 10**8 // interval) * interval)


def logged_out_token(server) -> tuple[object, str]:
    """A user whose session token was revoked (DELETE /auth): (user, stale token)."""
    user = make_user(server)
    assert user.api.delete("/auth").status_code == 204
    assert_problem(user.api.get("/list"), 401)
    return user, user.token


# -- 6: stale credentials do not block public operations --------------------------------

def test_revoked_token_or_cookie_does_not_block_login(server):
    user, stale = logged_out_token(server)
    creds = {"username": user.username, "password": user.password}
    # Bearer
    resp = requests.post(server.url + "/auth", json=creds,
                         headers={"Authorization": f"Bearer {stale}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    # Basic with the revoked token
    basic = base64.b64encode(f"{user.uid}:{stale}".encode()).decode()
    resp = requests.post(server.url + "/auth", json=creds,
                         headers={"Authorization": f"Basic {basic}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    # the browser case: an old session cookie (no CSRF header, as on a login form)
    cookie = server.settings.cookie_name
    resp = requests.post(server.url + "/auth", json=creds, cookies={cookie: stale},
                         timeout=30)
    assert resp.status_code == 201, resp.text
    fresh = resp.json()["token"]
    assert requests.get(server.url + "/auth", headers={"Authorization": f"Bearer {fresh}"},
                        timeout=30).status_code == 200


def test_valid_cookie_without_csrf_does_not_block_login(server):
    user = make_user(server)
    cookie = server.settings.cookie_name
    resp = requests.post(server.url + "/auth",
                         json={"username": user.username, "password": user.password},
                         cookies={cookie: user.token}, timeout=30)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer not-a-session"},
    {"Authorization": "Basic !!!"},
    {"Authorization": "Digest whatever"},
    {"X-API-KEY": "nope.nothing"},
    {"X-API-KEY": "x" * 300},
])
def test_invalid_credentials_on_public_operations_run_anonymous(server, headers):
    assert requests.get(server.url + "/health", headers=headers, timeout=30) \
        .status_code == 200
    resp = requests.post(server.url + "/auth/reset", json={"username": "nobody-here"},
                         headers=headers, timeout=30)
    assert resp.status_code == 202, resp.text
    # the same credentials on a secured operation are still refused
    resp = requests.get(server.url + "/list", headers=headers, timeout=30)
    assert_problem(resp, 401)
    assert "WWW-Authenticate" in resp.headers


def test_stale_cookie_on_public_operations(server):
    _, stale = logged_out_token(server)
    cookies = {server.settings.cookie_name: stale}
    assert requests.get(server.url + "/health", cookies=cookies, timeout=30) \
        .status_code == 200
    resp = requests.post(server.url + "/auth/reset", json={"username": "nobody-here"},
                         cookies=cookies, timeout=30)
    assert resp.status_code == 202, resp.text


# -- 10: no 500s ---------------------------------------------------------------------

def test_oversized_body_is_413(server, user):
    from apicrud.app import MAX_BODY

    body = b'{"name": "' + b"x" * (MAX_BODY + 10) + b'"}'
    resp = user.api.post("/list", data=body, headers={"Content-Type": "application/json"})
    assert_problem(resp, 413)
    # and the service is fine afterwards
    assert user.api.get("/list").status_code == 200


def test_oversized_chunked_body_is_413(server, user):
    from apicrud.app import MAX_BODY

    def chunks():
        yield b'{"name": "'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    resp = user.api.post("/list", data=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(resp, 413)


OUT_OF_RANGE = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
                "0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "not a date"]


def _count(server, model, **where) -> int:
    with server.services.db.session() as db:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return db.execute(stmt).scalar_one()


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_apikey_expires_out_of_range_is_400(server, user, value):
    model = server.services.models.ApiKey
    before = _count(server, model, uid=user.uid)
    assert_problem(user.api.post("/apikey", json={"name": "k", "expires": value}), 400,
                   "expires")
    assert _count(server, model, uid=user.uid) == before
    resp = user.api.post("/apikey", json={"name": "k2"})
    assert resp.status_code == 201, resp.text
    key = resp.json()
    assert_problem(user.api.patch(f"/apikey/{key['id']}", json={"expires": value}), 400,
                   "expires")
    assert user.api.get(f"/apikey/{key['id']}").json()["expires"] is None


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_grant_expires_out_of_range_is_400(server, admin, user, value):
    model = server.services.models.Grant
    resp = admin.api.post("/grant", json={"uid": user.uid, "name": "lists", "value": 3,
                                          "expires": value})
    assert_problem(resp, 400, "expires")
    assert _count(server, model, uid=user.uid) == 0


def test_a_date_time_at_the_edge_of_the_range_is_accepted(server, admin, user):
    resp = admin.api.post("/grant", json={"uid": user.uid, "name": "lists", "value": 3,
                                          "expires": "9999-12-31T12:00:00+02:00"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["expires"].startswith("9999-12-31T10:00:00")


@pytest.mark.parametrize("value", [1e70, "1e70", 10**30, 1e400, "NaN", -1])
def test_grant_value_out_of_range_is_400_and_not_stored(server, admin, user, value):
    model = server.services.models.Grant
    if value == 1e400:  # JSON has no infinity: send the literal, which overflows a float
        resp = admin.api.post("/grant",
                              data=f'{{"uid": "{user.uid}", "name": "lists", "value": 1e400}}',
                              headers={"Content-Type": "application/json"})
    else:
        resp = admin.api.post("/grant", json={"uid": user.uid, "name": "lists",
                                              "value": value})
    assert_problem(resp, 400, "value")
    assert _count(server, model, uid=user.uid) == 0
    grant = admin.api.post("/grant", json={"uid": user.uid, "name": "lists", "value": 5})
    assert grant.status_code == 201, grant.text
    gid = grant.json()["id"]
    assert_problem(admin.api.patch(f"/grant/{gid}", json={"value": 1e70}), 400, "value")
    assert admin.api.get(f"/grant/{gid}").json()["value"] in ("5", 5)


# -- 11: rate limits -----------------------------------------------------------------

def _limited(server, **changes):
    changes.setdefault("ratelimit_interval", 60)
    inst = start_instance(server.settings, redis_url=server.services.redis.url, **changes)
    inst.services.ratelimit.limiter.clock = Clock(far_window())
    return inst


def test_ratelimit_default_decides_without_a_grant(server):
    inst = _limited(server, ratelimit_default=3)
    try:
        username, password, _ = new_account(inst.services)
        http = login(inst.url, username, password)
        codes = [http.get(inst.url + "/list", timeout=10).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
    finally:
        inst.stop()


def test_a_ratelimit_grant_overrides_ratelimit_default(server, admin):
    inst = _limited(server, ratelimit_default=2)
    try:
        username, password, uid = new_account(inst.services)
        resp = admin.api.post("/grant", json={"uid": uid, "name": "ratelimit", "value": 4})
        assert resp.status_code == 201, resp.text
        http = login(inst.url, username, password)
        codes = [http.get(inst.url + "/list", timeout=10).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]
    finally:
        inst.stop()


def test_conflicting_ratelimit_settings_refuse_to_start(server):
    from apicrud.app import create_app

    settings = server.settings.replace(
        ratelimit_default=10, default_grants={**server.settings.default_grants,
                                              "ratelimit": 20})
    with pytest.raises(StartupError) as info:
        create_app(settings=settings, migrate=False)
    assert "ratelimit" in str(info.value)


def test_bad_credentials_are_counted_per_client_address(server):
    inst = _limited(server, ratelimit_auth_failures=3, ratelimit_anonymous=0,
                    trusted_proxies=["127.0.0.1"])
    calls = []

    def counting(_request):  # notes every authentication the service attempts
        calls.append(1)

    inst.services.pipeline.authenticators.insert(0, counting)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    try:
        username, password, _ = new_account(inst.services)
        bad = [{"Authorization": f"Bearer {secrets.token_urlsafe(20)}"},
               {"X-API-KEY": f"{secrets.token_hex(4)}.{secrets.token_urlsafe(20)}"},
               {"Authorization": f"Bearer {secrets.token_urlsafe(20)}"}]
        for headers in bad:
            assert_problem(requests.get(inst.url + "/list", headers={**attacker, **headers},
                                        timeout=10), 401)
        tried = len(calls)
        refused = requests.get(inst.url + "/list", timeout=10, headers={
            **attacker, "X-API-KEY": f"{secrets.token_hex(4)}.{secrets.token_urlsafe(20)}"})
        body = assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert "credentials" in body["detail"]
        assert len(calls) == tried, "a refused API key still cost a database lookup"
        # a bad session token from that address is checked (in Redis) and gets 429
        assert_problem(requests.get(inst.url + "/list", timeout=10, headers={
            **attacker, "Authorization": f"Bearer {secrets.token_urlsafe(20)}"}), 429)
        # a valid session from that address still works: an attacker sharing the
        # address (a NAT, an office) does not lock its signed-in users out
        http = login(inst.url, username, password)
        assert http.get(inst.url + "/list", headers=attacker, timeout=10).status_code == 200
        # other addresses are not affected
        assert http.get(inst.url + "/list", headers={"X-Forwarded-For": "203.0.113.67"},
                        timeout=10).status_code == 200
        # a public operation still answers, as anonymous, without checking the credentials
        resp = requests.post(inst.url + "/auth", json={"username": username,
                                                       "password": password},
                             headers={**attacker, "Authorization": "Bearer stale"},
                             timeout=10)
        assert resp.status_code == 201, resp.text
        # requests without credentials from that address are not refused by this limit
        assert requests.get(inst.url + "/health", headers=attacker, timeout=10) \
            .status_code == 200
        assert_problem(requests.get(inst.url + "/list", headers=attacker, timeout=10), 401)
        # the next window starts afresh: API keys from that address are looked up again
        inst.services.ratelimit.limiter.clock.now += 60
        assert_problem(requests.get(inst.url + "/list", timeout=10, headers={
            **attacker, "X-API-KEY": f"{secrets.token_hex(4)}.{secrets.token_urlsafe(20)}"}),
            401)
    finally:
        inst.stop()


def test_bad_credentials_on_public_operations_are_counted_too(server):
    inst = _limited(server, ratelimit_auth_failures=2, ratelimit_anonymous=0,
                    trusted_proxies=["127.0.0.1"])
    attacker = {"X-Forwarded-For": "203.0.113.77"}
    try:
        for _ in range(2):
            resp = requests.post(inst.url + "/auth/reset", json={"username": "nobody"},
                                 headers={**attacker, "X-API-KEY": "ab.cd"}, timeout=10)
            assert resp.status_code == 202, resp.text
        resp = requests.get(inst.url + "/list", timeout=10,
                            headers={**attacker, "Authorization": "Bearer x"})
        assert_problem(resp, 429)
    finally:
        inst.stop()


# -- 12: HTTP hygiene ----------------------------------------------------------------

def test_authenticated_answers_and_the_login_token_are_not_stored(server, user):
    for resp in (user.api.get("/list"), user.api.get("/auth"),
                 user.api.post("/list", json={"name": "nostore"}),
                 user.api.get("/list/nope")):
        assert resp.headers.get("Cache-Control") == "no-store", (resp.url, resp.headers)
    resp = requests.post(server.url + "/auth", json={"username": user.username,
                                                     "password": user.password}, timeout=30)
    assert resp.status_code == 201
    assert resp.headers.get("Cache-Control") == "no-store"


def test_every_api_response_says_nosniff(server, user):
    answers = [user.api.get("/list"), requests.get(server.url + "/health", timeout=30),
               requests.get(server.url + "/list", timeout=30),  # 401
               requests.get(server.url + "/no-such-thing", timeout=30),  # 404
               requests.put(server.url + "/health", timeout=30),  # 405
               requests.get(server.url + "/openapi.json", timeout=30)]
    for resp in answers:
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", resp.url


def test_head_answers_like_get(server, user):
    new_list(user.api, name="head")
    got = user.api.get("/list")
    head = user.api.request("HEAD", "/list")
    assert head.status_code == 200, head.headers
    assert head.content == b""
    assert head.headers["X-Total-Count"] == got.headers["X-Total-Count"]
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    one = got.json()["items"][0]["id"]
    head = user.api.request("HEAD", f"/list/{one}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == user.api.get(f"/list/{one}").headers["ETag"]
    assert requests.head(server.url + "/health", timeout=30).status_code == 200
    assert requests.head(server.url + "/list", timeout=30).status_code == 401
    # where GET is not allowed, neither is HEAD
    resp = requests.head(server.url + "/auth/reset", timeout=30)
    assert resp.status_code == 405 and "POST" in resp.headers["Allow"]


def test_vary_origin_on_every_response_when_cors_is_on(server, user):
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          cors_origins=["https://app.example"])
    try:
        auth = {"Authorization": f"Bearer {user.token}"}
        answers = [
            requests.get(inst.url + "/list", headers=auth, timeout=10),
            requests.get(inst.url + "/list", timeout=10),
            requests.get(inst.url + "/list", headers={**auth, "Origin": "https://app.example"},
                         timeout=10),
            requests.get(inst.url + "/list", headers={**auth, "Origin": "https://evil.example"},
                         timeout=10),
            requests.get(inst.url + "/health", timeout=10),
            requests.get(inst.url + "/nothing-here", timeout=10),
            requests.options(inst.url + "/list", timeout=10,
                             headers={"Origin": "https://app.example",
                                      "Access-Control-Request-Method": "GET"}),
        ]
        for resp in answers:
            vary = [v.strip().lower() for v in resp.headers.get("Vary", "").split(",")]
            assert "origin" in vary, (resp.url, resp.status_code, resp.headers)
        assert answers[2].headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Access-Control-Allow-Origin" not in answers[3].headers
    finally:
        inst.stop()


def test_redis_outage_is_logged_once_per_interval_with_a_count(server, caplog):
    from test_health_faults import RedisServer, free_port

    own = RedisServer(free_port())
    own.start()
    inst = start_instance(server.settings, redis_url=own.url)
    try:
        username, password, _ = new_account(inst.services)
        http = login(inst.url, username, password)
        assert http.get(inst.url + "/list", timeout=10).status_code == 200
        own.stop()
        with caplog.at_level(logging.ERROR, logger="apicrud"):
            for _ in range(8):
                assert http.get(inst.url + "/list", timeout=10).status_code == 503
            first = [r.getMessage() for r in caplog.records
                     if r.name == "apicrud" and "redis" in r.getMessage().lower()]
            assert len(first) == 1, first
            # next interval: one line, counting the requests failed meanwhile
            inst.services.redis_outage.every = 0.2
            time.sleep(0.3)
            for _ in range(3):
                assert http.get(inst.url + "/list", timeout=10).status_code == 503
            time.sleep(0.3)
            assert http.get(inst.url + "/list", timeout=10).status_code == 503
        lines = [r.getMessage() for r in caplog.records
                 if r.name == "apicrud" and "redis" in r.getMessage().lower()]
        assert 2 <= len(lines) <= 3, lines
        assert any("3 request" in m or "4 request" in m for m in lines[1:]), lines
    finally:
        inst.stop()
        own.stop()
