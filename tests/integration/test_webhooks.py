"""Webhooks end to end: an instance of the app whose settings allow loopback targets, a
real Celery worker, and HTTP receivers on loopback started here that verify each
signature with the README's recipe (written again here, not imported)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apicrud.webhooks import ssrf
from apicrud.webhooks.deliver import WebhookDeliverer
from helpers import make_user, serve_app
from mailhelp import run_worker, wait_for


def verified(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """The README's verification recipe."""
    stamp = headers["X-Apicrud-Timestamp"]
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    given = headers["X-Apicrud-Signature"].removeprefix("v1=")
    return hmac.compare_digest(expected, given) and abs(time.time() - int(stamp)) <= tolerance


class Receiver:
    """An HTTP endpoint on loopback: fails the first ``failures`` posts with 500, then
    accepts (200) those whose signature verifies under ``secret`` (401 otherwise)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.secret: str | None = None
        self.attempts: list[dict] = []
        self.accepted: list[dict] = []
        self.forged = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts.append(json.loads(body))
                if len(outer.attempts) <= outer.failures:
                    code = 500
                elif outer.secret and verified(outer.secret, self.headers, body):
                    outer.accepted.append(json.loads(body))
                    code = 200
                else:
                    outer.forged += 1
                    code = 401
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hooked(settings, server):
    """An instance allowing loopback targets, with fast retries, and its worker."""
    local = settings.replace(webhook_allowed_hosts=["127.0.0.1"], webhook_retry_delay=0.05,
                             webhook_max_attempts=7,
                             worker_queue=f"test-webhooks-{secrets.token_hex(4)}")
    with serve_app(local) as srv, run_worker(local, srv.services.redis.url):
        yield srv


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.close()


def subscribe(user, rcv: Receiver, events, **extra) -> dict:
    resp = user.api.post("/webhook", json={"url": rcv.url, "events": events, **extra})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    rcv.secret = body["secret"]
    return body


def deliveries(user, hook_id: str) -> list[dict]:
    resp = user.api.get(f"/webhook/{hook_id}/deliveries")
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def test_signed_event_reaches_the_receiver(hooked, receiver):
    user = make_user(hooked)
    rcv = receiver()
    hook = subscribe(user, rcv, ["list.created", "list.updated"])
    assert "secret" not in user.api.get(f"/webhook/{hook['id']}").json()  # shown once
    lst = user.api.post("/list", json={"name": "hooked"}).json()
    wait_for(lambda: rcv.accepted, timeout=30, what="the webhook delivered")
    (event,) = rcv.accepted
    assert event["event"] == "list.created" and event["record"]["id"] == lst["id"]
    assert event["record"]["name"] == "hooked" and event["record"]["uid"] == user.uid
    assert event["id"] == deliveries(user, hook["id"])[0]["id"]
    assert rcv.forged == 0
    # the event id is the change's audit entry
    (entry,) = user.api.get(f"/list/{lst['id']}/history").json()["items"]
    assert event["event_id"] == entry["id"]
    assert user.api.patch(f"/list/{lst['id']}", json={"name": "renamed"}).status_code == 200
    wait_for(lambda: len(rcv.accepted) == 2, timeout=30, what="the update delivered")
    assert rcv.accepted[1]["event"] == "list.updated"
    assert rcv.accepted[1]["record"]["name"] == "renamed"
    # not subscribed to deletes
    assert user.api.delete(f"/list/{lst['id']}").status_code == 200
    assert [d["status"] for d in deliveries(user, hook["id"])] == ["delivered"] * 2


def test_a_receiver_failing_five_times_gets_the_event_once(hooked, receiver):
    user = make_user(hooked)
    rcv = receiver(failures=5)
    hook = subscribe(user, rcv, ["category.created"])
    assert user.api.post("/category", json={"name": "flaky"}).status_code == 201
    wait_for(lambda: rcv.accepted, timeout=60, what="the delivery after five failures")
    time.sleep(0.5)  # (no further retry may follow a success; give one the time to show)
    assert len(rcv.accepted) == 1 and len(rcv.attempts) == 6
    assert len({a["id"] for a in rcv.attempts}) == 1  # the same delivery each time
    (log,) = deliveries(user, hook["id"])
    assert log["status"] == "delivered" and log["attempts"] == 6
    assert log["response_status"] == 200


def test_a_receiver_that_always_fails_ends_in_the_dead_letters(hooked, receiver):
    user = make_user(hooked)
    rcv = receiver(failures=1000)
    hook = subscribe(user, rcv, ["category.created"])
    assert user.api.post("/category", json={"name": "doomed"}).status_code == 201
    wait_for(lambda: [d for d in deliveries(user, hook["id"]) if d["status"] == "dead"],
             timeout=60, what="the delivery given up")
    assert len(rcv.attempts) == 7  # webhook_max_attempts
    dead = user.api.get(f"/webhook/{hook['id']}/deliveries", params={"status": "dead"})
    (entry,) = dead.json()["items"]
    assert entry["error"] == "HTTP 500" and entry["attempts"] == 7


def test_events_about_records_the_owner_cannot_read_are_not_sent(hooked, receiver):
    owner, member = make_user(hooked), make_user(hooked)
    lst = owner.api.post("/list", json={"name": "club", "privacy": "member"}).json()
    joined = owner.api.post("/listmember", json={"list_id": lst["id"], "uid": member.uid,
                                                 "authorization": "member"})
    assert joined.status_code == 201
    rcv = receiver()
    hook = subscribe(member, rcv, ["message.created"])
    secret = owner.api.post("/message", json={"list_id": lst["id"], "subject": "secret",
                                              "privacy": "secret"}).json()
    shared = owner.api.post("/message", json={"list_id": lst["id"], "subject": "shared",
                                              "privacy": "member"}).json()
    wait_for(lambda: {d["status"] for d in deliveries(member, hook["id"])} <=
             {"delivered", "skipped"} and len(deliveries(member, hook["id"])) == 2,
             timeout=30, what="both deliveries decided")
    assert [e["record"]["id"] for e in rcv.accepted] == [shared["id"]]
    assert secret["id"] not in json.dumps(rcv.attempts)
    # removed from the list: what is posted there later is not theirs to hear about
    assert owner.api.delete(f"/listmember/{joined.json()['id']}").status_code == 200
    later = owner.api.post("/message", json={"list_id": lst["id"], "subject": "later",
                                             "privacy": "member"}).json()
    wait_for(lambda: len(deliveries(member, hook["id"])) == 3 and
             deliveries(member, hook["id"])[0]["status"] != "pending",
             timeout=30, what="the third delivery decided")
    assert deliveries(member, hook["id"])[0]["status"] == "skipped"
    assert later["id"] not in json.dumps(rcv.attempts)


def test_a_filter_narrows_the_events(hooked, receiver):
    user = make_user(hooked)
    rcv = receiver()
    hook = subscribe(user, rcv, ["list.created"], filter={"privacy": "public"})
    user.api.post("/list", json={"name": "quiet", "privacy": "secret"})
    user.api.post("/list", json={"name": "loud", "privacy": "public"})
    wait_for(lambda: rcv.accepted, timeout=30, what="the public one delivered")
    wait_for(lambda: all(d["status"] != "pending" for d in deliveries(user, hook["id"])),
             timeout=30, what="both decided")
    assert [e["record"]["name"] for e in rcv.accepted] == ["loud"]


def test_other_users_webhooks_and_logs_are_invisible(hooked, receiver):
    alice, mallory = make_user(hooked), make_user(hooked)
    hook = subscribe(alice, receiver(), ["list.created"])
    assert mallory.api.get(f"/webhook/{hook['id']}").status_code == 404
    assert mallory.api.get(f"/webhook/{hook['id']}/deliveries").status_code == 404
    assert mallory.api.patch(f"/webhook/{hook['id']}", json={"url": "http://x"}) \
        .status_code == 404
    assert hook["id"] not in json.dumps(mallory.api.get("/webhook").json())


@pytest.mark.parametrize("url", [
    "http://10.1.2.3/hook", "http://192.168.0.10/hook", "http://172.16.5.4:8080/x",
    "http://169.254.169.254/latest/meta-data", "http://127.0.0.1:9/x",
    "http://localhost/x", "http://[::1]/x", "http://[::ffff:127.0.0.1]/x",
    "http://0.0.0.0/x", "ftp://example.com/x", "http://user:pw@example.com/x",
    "not a url"])
def test_private_and_odd_targets_are_refused_at_create(server, user, url):
    resp = user.api.post("/webhook", json={"url": url, "events": ["list.created"]})
    assert resp.status_code == 400, resp.text
    assert "url" in resp.json().get("errors", {})


def test_bad_events_are_refused(server, user):
    for events in ([], ["nosuch.created"], ["list.exploded"], ["list"]):
        resp = user.api.post("/webhook", json={"url": "http://93.184.216.34/x",
                                               "events": events})
        assert resp.status_code == 400, (events, resp.text)


def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery(server, receiver,
                                                                 monkeypatch):
    """The name resolves to a public address when the webhook is made and to loopback
    when the worker sends: the delivery is refused, nothing reaches loopback. (DNS is
    the outside world here: its answers are the test's.)"""
    user = make_user(server)
    rcv = receiver()
    port = int(rcv.url.split(":")[2].split("/")[0])
    answers = {"now": "93.184.216.34"}
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers["now"], port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", fake)
    resp = user.api.post("/webhook", json={"url": f"http://rebind.example:{port}/hook",
                                           "events": ["category.created"]})
    assert resp.status_code == 201, resp.text
    hook = resp.json()
    assert user.api.post("/category", json={"name": "rebound"}).status_code == 201
    (pending,) = deliveries(user, hook["id"])
    answers["now"] = "127.0.0.1"
    # this instance has no worker on its queue: run the worker's attempt here
    assert WebhookDeliverer(server.settings, services=server.services) \
        .attempt(pending["id"]) is None
    (done,) = deliveries(user, hook["id"])
    assert done["status"] == "dead" and done["error"].startswith("refused")
    assert rcv.attempts == []
