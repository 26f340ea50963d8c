"""``GET /metrics`` (Prometheus) and ``GET /metric`` (usage) over HTTP, real Redis."""

from __future__ import annotations

import json
import uuid

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from apicrud.metrics.usage import PREFIX, SERIES
from helpers import Api, assert_problem, make_user


def scrape(api, **headers) -> dict:
    resp = api.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def samples(family, **labels) -> list:
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_requests_logins_and_latency_appear_and_parse(server, admin, user):
    user.api.get("/list")
    user.api.get("/list/x-nosuchrecord")
    server.anonymous().post("/auth", json={"username": user.username, "password": "wrong"})
    families = scrape(admin.api)
    calls = families["apicrud_http_requests"]
    assert calls.type == "counter"
    assert samples(calls, resource="list", method="GET", status="200")[0].value >= 1
    assert all(s.name == "apicrud_http_requests_total" for s in calls.samples)
    errors = families["apicrud_http_request_errors"]
    assert samples(errors, resource="list", method="GET", status="404")[0].value >= 1
    assert not samples(errors, status="200")
    logins = families["apicrud_logins"]
    assert samples(logins, result="failure")[0].value >= 1
    assert samples(logins, result="success")[0].value >= 2  # the fixtures logged in
    latency = families["apicrud_http_request_duration_seconds"]
    assert latency.type == "histogram"
    names = {s.name for s in samples(latency, resource="list", method="GET", status="200")}
    assert names == {"apicrud_http_request_duration_seconds_bucket",
                     "apicrud_http_request_duration_seconds_count",
                     "apicrud_http_request_duration_seconds_sum"}
    assert families["apicrud_api_calls"].samples[0].value >= 2
    for gauge in ("process_resident_memory_bytes", "process_open_fds"):
        assert families[gauge].type == "gauge"
    for family in families.values():  # prometheus naming: counters end in _total
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


def test_counts_grow_with_each_request(server, admin, user):
    def count():
        found = samples(scrape(admin.api)["apicrud_http_requests"], resource="person",
                        method="GET", status="200")
        return found[0].value if found else 0

    before = count()
    for _ in range(3):
        assert user.api.get(f"/person/{user.uid}").status_code == 200
    assert count() == before + 3


def test_redis_held_gauges_and_counters_are_exported(server, admin):
    metrics = server.services.metrics
    name = "t" + uuid.uuid4().hex[:8]
    metrics.declare(f"{name}_queue_depth", scope="sitewide", style="gauge",
                    description="items waiting")
    metrics.declare(f"{name}_jobs", scope="sitewide", style="counter")
    try:
        metrics.set(f"{name}_queue_depth", 12, labels={"queue": "mail"})
        metrics.add(f"{name}_jobs", 5, labels={"kind": "import"})
        families = scrape(admin.api)
        gauge = families[f"apicrud_{name}_queue_depth"]
        assert gauge.type == "gauge" and gauge.documentation == "items waiting"
        assert [(s.labels, s.value) for s in gauge.samples] == [({"queue": "mail"}, 12)]
        jobs = families[f"apicrud_{name}_jobs"]
        assert [(s.name, s.labels, s.value) for s in jobs.samples] == \
            [(f"apicrud_{name}_jobs_total", {"kind": "import"}, 5)]
    finally:
        for n in (f"{name}_queue_depth", f"{name}_jobs"):
            metrics.definitions.pop(n)
            keys = list(metrics.redis.scan_iter(match=f"{PREFIX}{n}:*")) + [SERIES + n]
            metrics.redis.delete(*keys)


def test_openmetrics_on_request(server, admin):
    resp = admin.api.get("/metrics",
                         headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in parse_om(resp.text)}
    assert {"apicrud_http_requests", "apicrud_http_request_duration_seconds"} <= names


def test_metrics_are_for_admins(server, user):
    assert_problem(server.anonymous().get("/metrics"), 401)
    assert_problem(user.api.get("/metrics"), 403)


def api_key(server, owner, scopes) -> Api:
    resp = owner.api.post("/apikey", json={"name": f"k-{uuid.uuid4().hex[:6]}",
                                           "scopes": scopes})
    assert resp.status_code == 201, resp.text
    api = Api(server.url)
    api.http.headers["X-API-KEY"] = resp.json()["apikey"]
    return api


def test_api_keys_need_scope_metrics(server, admin, user):
    assert admin.api.post("/scope", json={"name": "metrics"}).status_code in (201, 409)
    assert admin.api.post("/scope", json={"name": "list:read"}).status_code in (201, 409)
    prometheus = api_key(server, admin, ["metrics"])
    assert "apicrud_http_requests" in scrape(prometheus)
    assert_problem(prometheus.get("/list"), 403)  # the key is good for nothing else
    assert_problem(api_key(server, admin, ["list:read"]).get("/metrics"), 403)
    # a key does not make its owner an administrator
    assert_problem(api_key(server, user, ["metrics"]).get("/metrics"), 403)
    op = next(o for o in server.services.decl.operations if o.operation_id == "metric.expose")
    assert op.extensions["x-scopes"] == ["metrics"]


# -- usage view --------------------------------------------------------------------------

def usage(api, **params) -> dict:
    if "filter" in params:
        params["filter"] = json.dumps(params["filter"])
    resp = api.get("/metric", params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Total-Count"] == str(resp.json()["count"])
    return resp.json()


def test_users_see_their_own_usage(server, user, other_user):
    for _ in range(3):
        user.api.get("/list")
    body = usage(user.api)
    by_name = {i["name"]: i for i in body["items"]}
    calls = by_name["api_calls"]
    assert calls["uid"] == user.uid and calls["value"] >= 3 and calls["period"] == "month"
    assert calls["expires"].endswith("Z")
    daily = by_name["messages_daily"]
    assert daily["style"] == "grant" and daily["value"] == 0
    assert daily["limit"] == daily["remaining"] == server.settings.default_grants[
        "messages_daily"]
    assert {i["uid"] for i in body["items"]} == {user.uid}
    # another user's usage is not there to be found
    assert usage(user.api, filter={"uid": other_user.uid})["count"] == 0


def test_usage_is_a_normal_find(server, admin, user):
    second = make_user(server)
    for u in (user, second):
        u.api.get("/list")
    both = [user.uid, second.uid]
    body = usage(admin.api, filter={"uid": both, "name": "api_%"}, sort="uid:desc")
    assert [i["uid"] for i in body["items"]] == sorted(both, reverse=True)
    page = usage(admin.api, filter={"uid": both}, sort="id", limit=3)
    assert page["count"] == 4 and len(page["items"]) == 3
    rest = usage(admin.api, cursor_next=page["cursor_next"])
    assert len(rest["items"]) == 1 and "cursor_next" not in rest
    ids = [i["id"] for i in page["items"] + rest["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert usage(admin.api, filter={"uid": both}, offset=3)["items"] == rest["items"]
    grants = usage(admin.api, filter={"uid": both, "style": "grant"})
    assert {i["name"] for i in grants["items"]} == {"messages_daily"}
    # admins see sitewide and instance values too
    everything = usage(admin.api, filter={"scope": ["instance", "sitewide"]}, limit=1000)
    assert any(i["name"] == "http_requests" for i in everything["items"])
    assert_problem(admin.api.get("/metric", params={"filter": '{"colour": 1}'}), 400,
                   "filter")
    assert_problem(admin.api.get("/metric", params={"sort": "colour"}), 400, "sort")
    assert_problem(admin.api.get("/metric", params={"limit": 0}), 400, "limit")
    assert_problem(server.anonymous().get("/metric"), 401)
