"""Rate limits: fixed windows in the real Redis, across two app instances, over HTTP.

Most tests give both instances one fake clock (``services.ratelimit.limiter.clock``), set
inside a window far from the present, so they can stand on a boundary exactly and never
share a counter with the rest of the suite; one test runs on the real clock and waits
for the next window.
"""

from __future__ import annotations

import logging
import random
import secrets
import time

import pytest
import redis
import requests

from apicrud.ratelimit.limiter import WindowLimiter
from apicrud.ratelimit.middleware import client_address, parse_networks
from helpers import assert_problem
from instances import login, new_account, start_instance

INTERVAL = 60


class Clock:
    """A settable clock, shared by the limiters of several instances."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def window_start(interval: int = INTERVAL) -> float:
    """The start of a random window in 2001-2020: no other test counts there."""
    return float(random.randrange(10**9 // interval, 16 * 10**8 // interval) * interval)


def limits(settings, per_user: int, **changes):
    """Settings changes giving every user ``per_user`` requests per interval.

    With the Grants service installed the user's grant ``ratelimit`` decides, so the
    default grant is changed too.
    """
    changes.update(ratelimit_default=per_user, ratelimit_interval=INTERVAL)
    if "default_grants" in settings:
        changes["default_grants"] = {**settings.default_grants, "ratelimit": per_user}
    return changes


@pytest.fixture
def pair(server):
    """Two instances sharing the session's Redis and database, and one fake clock."""
    changes = limits(server.settings, 5, redis_url=server.services.redis.url,
                     ratelimit_anonymous=3)
    first = start_instance(server.settings, **changes)
    second = start_instance(server.settings, **changes)
    clock = Clock(window_start())
    for inst in (first, second):
        inst.services.ratelimit.limiter.clock = clock
    try:
        yield first, second, clock
    finally:
        first.stop()
        second.stop()


def _rl(resp: requests.Response) -> tuple[int, int, int]:
    h = resp.headers
    return int(h["RateLimit-Limit"]), int(h["RateLimit-Remaining"]), int(h["RateLimit-Reset"])


# -- the counter ----------------------------------------------------------------------

def test_limiter_refuses_the_hit_after_the_limit(server):
    clock = Clock(window_start() + 10.25)
    limiter = WindowLimiter(server.services.redis.client, INTERVAL, clock=clock)
    subject = "test:" + secrets.token_hex(6)
    seen = [limiter.hit(subject, 3) for _ in range(4)]
    assert [d.allowed for d in seen] == [True, True, True, False]
    assert [d.remaining for d in seen] == [2, 1, 0, 0]
    assert {d.reset for d in seen} == {50}  # ceil(60 - 10.25)
    assert seen[-1].headers()["Retry-After"] == "50"
    assert "Retry-After" not in seen[0].headers()


def test_limiter_resets_exactly_at_the_window_boundary(server):
    start = window_start()
    clock = Clock(start + INTERVAL - 0.001)
    limiter = WindowLimiter(server.services.redis.client, INTERVAL, clock=clock)
    subject = "test:" + secrets.token_hex(6)
    assert limiter.hit(subject, 1).allowed
    last = limiter.hit(subject, 1)
    assert not last.allowed and last.reset == 1
    clock.now = start + INTERVAL  # first instant of the next window
    fresh = limiter.hit(subject, 1)
    assert fresh.allowed and fresh.remaining == 0 and fresh.reset == INTERVAL


def test_limiter_keys_expire_with_their_window(server):
    client = server.services.redis.client
    clock = Clock(window_start() + 45)
    limiter = WindowLimiter(client, INTERVAL, clock=clock)
    subject = "test:" + secrets.token_hex(6)
    limiter.hit(subject, 10)
    assert 0 < client.ttl(limiter.key(subject)) <= 16  # 15 s left in the window, +1
    assert limiter.peek(subject) == 1
    limiter.reset(subject)
    assert limiter.peek(subject) == 0


# -- client address ---------------------------------------------------------------------

@pytest.mark.parametrize("peer, xff, trusted, expected", [
    ("198.51.100.9", None, [], "198.51.100.9"),
    ("198.51.100.9", "203.0.113.7", [], "198.51.100.9"),  # untrusted peer: header ignored
    ("10.0.0.2", "203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),
    ("10.0.0.2", "6.6.6.6, 203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),  # forged left part
    ("10.0.0.2", "203.0.113.7, 10.0.0.5", ["10.0.0.0/8"], "203.0.113.7"),  # two proxies
    ("10.0.0.2", "10.0.0.9, 10.0.0.5", ["10.0.0.0/8"], "10.0.0.9"),  # all trusted
    ("10.0.0.2", "garbage", ["10.0.0.0/8"], "10.0.0.2"),
    ("::1", "2001:db8::1", ["::1"], "2001:db8::1"),
])
def test_client_address_believes_only_trusted_proxies(peer, xff, trusted, expected):
    assert client_address(peer, xff, parse_networks(trusted)) == expected


def test_trusted_proxies_must_be_addresses(server):
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_networks(["10.0.0.1", "not-an-ip"])


# -- over HTTP, two instances -------------------------------------------------------------

def test_ratelimit_counts_across_two_instances_and_resets_next_window(pair, user):
    first, second, clock = pair
    apis = [first, second] * 3
    answers = [user.api.http.get(inst.url + "/list", timeout=10) for inst in apis[:5]]
    assert [r.status_code for r in answers] == [200] * 5
    assert [_rl(r)[:2] for r in answers] == [(5, 4), (5, 3), (5, 2), (5, 1), (5, 0)]
    refused = user.api.http.get(apis[5].url + "/list", timeout=10)  # on the second one
    assert_problem(refused, 429)
    assert refused.json()["limit"] == "ratelimit"
    assert refused.headers["Retry-After"] == str(INTERVAL)
    assert _rl(refused) == (5, 0, INTERVAL)
    assert user.api.http.get(first.url + "/list", timeout=10).status_code == 429

    clock.now += INTERVAL  # the next window: a full allowance on both instances
    again = user.api.http.get(first.url + "/list", timeout=10)
    assert again.status_code == 200 and _rl(again)[:2] == (5, 4)
    assert user.api.http.get(second.url + "/list", timeout=10).status_code == 200


def test_ratelimit_is_per_user(pair, user, other_user):
    first, _, _ = pair
    for _ in range(5):
        assert user.api.http.get(first.url + "/list", timeout=10).status_code == 200
    assert user.api.http.get(first.url + "/list", timeout=10).status_code == 429
    resp = other_user.api.http.get(first.url + "/list", timeout=10)
    assert resp.status_code == 200 and _rl(resp)[1] == 4


def test_ratelimit_headers_on_errors_too(pair, user):
    first, _, _ = pair
    resp = user.api.http.get(first.url + "/list/x-nosuchrecord00", timeout=10)
    assert_problem(resp, 404)
    assert _rl(resp)[:2] == (5, 4)


def _anonymous_login(url: str, **headers) -> requests.Response:
    # a fresh unknown name each time: 401, and no login lockout builds up
    return requests.post(url + "/auth", json={"username": "nobody" + secrets.token_hex(4),
                                              "password": "wrong"},
                         headers=headers, timeout=10)


def test_anonymous_requests_are_limited_per_address(pair):
    first, second, _ = pair
    answers = [_anonymous_login(inst.url) for inst in (first, second, first)]
    assert [r.status_code for r in answers] == [401, 401, 401]
    assert [_rl(r)[:2] for r in answers] == [(3, 2), (3, 1), (3, 0)]
    refused = _anonymous_login(second.url)
    assert_problem(refused, 429)
    assert "Retry-After" in refused.headers
    # the peer is no trusted proxy: a forged X-Forwarded-For changes nothing
    assert _anonymous_login(first.url, **{"X-Forwarded-For": "203.0.113.50"}).status_code == 429


def test_forwarded_for_counts_per_client_behind_a_trusted_proxy(server):
    changes = limits(server.settings, 5, redis_url=server.services.redis.url,
                     ratelimit_anonymous=2, trusted_proxies=["127.0.0.1"])
    inst = start_instance(server.settings, **changes)
    inst.services.ratelimit.limiter.clock = Clock(window_start())
    try:
        a = {"X-Forwarded-For": "203.0.113.10"}
        b = {"X-Forwarded-For": "203.0.113.11"}
        assert [_anonymous_login(inst.url, **a).status_code for _ in range(3)] == \
            [401, 401, 429]
        assert _anonymous_login(inst.url, **b).status_code == 401
        # a client cannot escape by prepending a made-up hop: the proxy's entry counts
        forged = {"X-Forwarded-For": "198.51.100.1, 203.0.113.10"}
        assert _anonymous_login(inst.url, **forged).status_code == 429
    finally:
        inst.stop()


def test_health_is_not_rate_limited(pair):
    first, _, _ = pair
    for _ in range(5):
        resp = requests.get(first.url + "/health", timeout=10)
        assert resp.status_code == 200
        assert "RateLimit-Limit" not in resp.headers


def test_ratelimit_resets_on_the_real_clock(server, user):
    changes = limits(server.settings, 3, redis_url=server.services.redis.url)
    changes["ratelimit_interval"] = 2
    inst = start_instance(server.settings, **changes)
    try:
        if time.time() % 2 > 1.0:  # start early in a window: four requests fit in it
            time.sleep(2 - time.time() % 2 + 0.02)
        codes = [user.api.http.get(inst.url + "/list", timeout=10).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = user.api.http.get(inst.url + "/list", timeout=10)
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 2
        time.sleep(2 - time.time() % 2 + 0.02)  # the next window has begun
        assert user.api.http.get(inst.url + "/list", timeout=10).status_code == 200
    finally:
        inst.stop()


# -- Redis unreachable ---------------------------------------------------------------------

def _closed_port_client() -> redis.Redis:
    # a port nothing listens on: every command fails at once with ConnectionError
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1,
                       socket_timeout=1)


@pytest.mark.parametrize("mode, status", [("open", 401), ("closed", 503)])
def test_unreachable_redis_fails_as_configured_and_is_logged(server, caplog, mode, status):
    changes = limits(server.settings, 5, redis_url=server.services.redis.url,
                     ratelimit_fail=mode)
    inst = start_instance(server.settings, **changes)
    inst.services.ratelimit.limiter.client = _closed_port_client()
    try:
        with caplog.at_level(logging.ERROR, logger="apicrud.ratelimit"):
            resp = _anonymous_login(inst.url)
        assert_problem(resp, status)
        assert "RateLimit-Limit" not in resp.headers
        if mode == "closed":
            assert "Retry-After" in resp.headers
            assert "rate limiting" in resp.json()["detail"]
        messages = [r.getMessage() for r in caplog.records if r.name == "apicrud.ratelimit"]
        assert any("cannot reach redis" in m and
                   ("allowed" if mode == "open" else "refused") in m for m in messages)
    finally:
        inst.stop()


def test_new_account_is_limited_from_its_first_request(pair):
    first, _, _ = pair
    username, password, _ = new_account(first.services)
    http = login(first.url, username, password)
    resp = http.get(first.url + "/auth", timeout=10)
    assert resp.status_code == 200 and _rl(resp)[:2] == (5, 4)
