"""Grants over HTTP: record counts (403), per-period grants (429), overrides, notices."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from apicrud.messaging.render import MessageRenderer
from apicrud.metrics import default_notifier
from apicrud.metrics.usage import NOTIFIED, period_end
from helpers import Api, assert_problem, make_user, new_list

PROBLEM_TYPE = "grant-exceeded"


def grant(admin, uid: str, name: str, value, **extra) -> dict:
    resp = admin.api.post("/grant", json={"uid": uid, "name": name, "value": value, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


def post_message(api, list_id: str, n: int = 0):
    return api.post("/message", json={"list_id": list_id, "subject": f"m{n}"})


@pytest.fixture
def recorder(server):
    """Replace the usage notifier with one that records its calls."""
    calls = []
    services = server.services
    saved = services.notify
    services.notify = lambda **kw: calls.append(kw)
    yield calls
    services.notify = saved


def test_record_count_grant_stops_creation_at_its_limit(server, admin, user):
    grant(admin, user.uid, "lists", 2)
    first = new_list(user.api, name="a")
    new_list(user.api, name="b")
    body = assert_problem(user.api.post("/list", json={"name": "c"}), 403)
    assert body["type"].endswith(PROBLEM_TYPE)
    assert body["grant"] == "lists" and body["limit"] == 2
    assert "lists" in body["detail"] and "2" in body["detail"]
    # trashed records do not count
    assert user.api.delete(f"/list/{first['id']}").status_code == 200
    new_list(user.api, name="c")
    # other resources and other users are not limited by it
    assert user.api.post("/category", json={"name": "x"}).status_code == 201
    new_list(make_user(server).api, name="a")


def test_override_changes_take_effect_on_the_next_request(server, admin, user):
    g = grant(admin, user.uid, "lists", 1)
    new_list(user.api, name="a")
    assert_problem(user.api.post("/list", json={"name": "b"}), 403)
    resp = admin.api.patch(f"/grant/{g['id']}", json={"value": "2"})
    assert resp.status_code == 200 and resp.json()["value"] == "2"
    new_list(user.api, name="b")
    assert_problem(user.api.post("/list", json={"name": "c"}), 403)
    # deleting the override restores the default
    assert admin.api.delete(f"/grant/{g['id']}").status_code == 200
    new_list(user.api, name="c")
    assert server.services.grants.get(user.uid, "lists") == \
        server.settings.default_grants["lists"]


def test_expired_overrides_no_longer_apply(server, admin, user):
    grants = server.services.grants
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    soon = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    grant(admin, user.uid, "ratelimit", 5, expires=past)
    grant(admin, user.uid, "apikeys", 1, expires=soon)
    assert grants.get(user.uid, "ratelimit") == server.settings.ratelimit_default
    assert grants.get(user.uid, "apikeys") == 1
    # the cached overrides live no longer than the earliest of them
    assert server.services.redis.client.ttl(f"apicrud:grants:{user.uid}") <= 3
    time.sleep(3.1)
    assert grants.get(user.uid, "apikeys") == server.settings.default_grants["apikeys"]
    assert grants.get(None, "ratelimit") == server.settings.ratelimit_default
    assert grants.get(user.uid, "no-such-grant") is None


def test_grants_are_written_by_admins_and_read_by_their_user(server, admin, user,
                                                             other_user):
    g = grant(admin, user.uid, "contacts", 7)
    assert g["value"] == "7" and g["uid"] == user.uid
    mine = user.api.get("/grant").json()
    assert [i["id"] for i in mine["items"]] == [g["id"]]
    assert user.api.get(f"/grant/{g['id']}").status_code == 200
    assert_problem(other_user.api.get(f"/grant/{g['id']}"), 404)
    assert other_user.api.get("/grant").json()["count"] == 0
    assert_problem(user.api.post("/grant", json={"uid": user.uid, "name": "lists",
                                                 "value": 500}), 403)
    assert_problem(user.api.patch(f"/grant/{g['id']}", json={"value": 99}), 403)
    assert_problem(admin.api.post("/grant", json={"uid": user.uid, "name": "colours",
                                                  "value": 1}), 400, "name")
    assert_problem(admin.api.post("/grant", json={"uid": user.uid, "name": "lists",
                                                  "value": "-1"}), 400, "value")
    assert_problem(admin.api.post("/grant", json={"uid": user.uid, "name": "contacts",
                                                  "value": 1}), 409)


def test_concurrent_creates_cannot_pass_the_limit(server, admin, user):
    """20 creators released at once by a barrier race for the last places of a grant of
    5: exactly 5 get in, whatever the interleaving."""
    creators, limit = 20, 5
    grant(admin, user.uid, "lists", limit)
    # one HTTP session per thread (requests.Session is not thread-safe), each connected
    # before the barrier so the 20 requests really leave together
    apis = [Api(server.url, user.token) for _ in range(creators)]
    for api in apis:
        assert api.get("/auth").status_code == 200
    barrier = threading.Barrier(creators)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def create(n):
        try:
            barrier.wait(timeout=30)
            statuses.append(apis[n].post("/list", json={"name": f"r{n}"}).status_code)
        except BaseException as exc:  # noqa: BLE001  reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(creators)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(statuses) == [201] * limit + [403] * (creators - limit), statuses
    # the user's own lists (other tests leave public lists anyone may read)
    mine = user.api.get("/list", params={"filter": json.dumps({"uid": user.uid})})
    assert mine.json()["count"] == limit


# -- per-period grants ------------------------------------------------------------------

def test_period_grant_refuses_until_its_period_key_expires(server, admin, user):
    grant(admin, user.uid, "messages_daily", 3)
    lst = new_list(user.api)
    for n in range(3):
        assert post_message(user.api, lst["id"], n).status_code == 201
    resp = post_message(user.api, lst["id"], 3)
    body = assert_problem(resp, 429)
    assert body["type"].endswith(PROBLEM_TYPE) and body["grant"] == "messages_daily"
    retry = int(resp.headers["Retry-After"])
    assert 0 < retry <= period_end("day") - time.time() + 1
    key = server.services.metrics.key("messages_daily", {"uid": user.uid})
    redis = server.services.redis.client
    assert 0 < redis.ttl(key) <= retry + 1  # the key ends with the day
    # the period ends: Redis drops the key, and the whole grant is there again
    redis.pexpire(key, 1)
    time.sleep(0.05)
    assert post_message(user.api, lst["id"], 4).status_code == 201
    usage = {i["name"]: i for i in user.api.get("/metric").json()["items"]}
    assert usage["messages_daily"]["value"] == 1
    assert usage["messages_daily"]["remaining"] == 2


def test_failed_requests_give_their_units_back(server, user):
    """A batch whose first message used a unit of messages_daily and whose second fails
    writes nothing: the unit is given back with the rollback, and only then."""
    def used() -> float:
        usage = {i["name"]: i for i in user.api.get("/metric").json()["items"]}
        return usage["messages_daily"]["value"]

    lst = new_list(user.api)
    before = used()
    resp = user.api.post("/message", json=[{"list_id": lst["id"], "subject": "counted"},
                                           {"list_id": "x-not-a-list", "subject": "fails"}])
    assert resp.status_code == 404, resp.text
    assert user.api.get("/message", params={"filter": json.dumps({"list_id": lst["id"]})}
                        ).json()["count"] == 0  # nothing written ...
    assert used() == before  # ... and nothing used
    assert post_message(user.api, lst["id"]).status_code == 201
    assert used() == before + 1  # a committed write keeps its unit


def test_notice_is_sent_once_per_period(server, admin, user, recorder):
    grant(admin, user.uid, "messages_daily", 5)  # notify at 80%: the 4th message
    lst = new_list(user.api)
    for n in range(3):
        assert post_message(user.api, lst["id"], n).status_code == 201
    assert recorder == []
    for n in range(3, 5):
        assert post_message(user.api, lst["id"], n).status_code == 201
    assert len(recorder) == 1
    notice = recorder[0]
    assert notice["uid"] == user.uid and notice["template"] == "usage_notify"
    assert notice["grant"] == "messages_daily" and notice["percent"] == 80
    assert notice["used"] == 4 and notice["limit"] == 5 and notice["period"] == "day"
    assert_problem(post_message(user.api, lst["id"], 9), 429)
    assert len(recorder) == 1
    # a new period: usage and the notice marker expire with it
    redis = server.services.redis.client
    redis.delete(server.services.metrics.key("messages_daily", {"uid": user.uid}),
                 f"{NOTIFIED}messages_daily:uid={user.uid}")
    for n in range(4):
        assert post_message(user.api, lst["id"], 10 + n).status_code == 201
    assert len(recorder) == 2


def test_default_notice_goes_to_the_outbox(server, user):
    services = server.services
    sent = []

    class Outbox:
        renderer = MessageRenderer()

        def send(self, to, template, **values):
            sent.append((to, self.renderer.render(template, **values)))

    saved = getattr(services, "outbox", None)
    services.outbox = Outbox()
    try:
        default_notifier(services)(uid=user.uid, template="usage_notify",
                                   grant="messages_daily", percent=80, period="day",
                                   used=400, limit=500)
    finally:
        services.outbox = saved
    (to, message), = sent
    assert to == f"{user.username}@example.com"
    assert "80%" in message.subject and "messages_daily" in message.subject
    assert "400 of the 500" in " ".join(message.body.split())
