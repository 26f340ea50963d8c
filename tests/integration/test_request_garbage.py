"""A finished request leaves no reference cycle of apicrud's objects behind.

Objects caught in a cycle outlive their request until the cyclic collector finds them:
each such request grows the young generation, so collections run more often, and every
full collection has more to walk. Reference counting alone must free what a request made
(its call, context, principal, reply): with the collector saving what it finds instead of
freeing it, nothing of apicrud's may be among it after gets, finds, writes, problems and
an anonymous refusal, served over HTTP.
"""

from __future__ import annotations

import gc

import pytest


def _apicrud_garbage(run) -> list[str]:
    """Names of the types of apicrud's objects that only the cyclic collector frees,
    among what ``run()`` leaves behind."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        found = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                        if type(o).__module__.startswith("apicrud")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return found


@pytest.fixture
def list_and_message(user):
    lst = user.api.post("/list", json={"name": "garbage check", "privacy": "member"})
    assert lst.status_code == 201, lst.text
    msg = user.api.post("/message", json={"list_id": lst.json()["id"], "subject": "one",
                                          "content": "text", "privacy": "member"})
    assert msg.status_code == 201, msg.text
    return lst.json(), msg.json()


def test_reads_leave_no_cycles(server, user, list_and_message):
    _lst, msg = list_and_message

    def run():
        for _ in range(3):
            assert user.api.get("/message", params={"limit": 5}).status_code == 200
            assert user.api.get("/message", params={"count": "none"}).status_code == 200
            assert user.api.get(f"/message/{msg['id']}").status_code == 200
    assert _apicrud_garbage(run) == []


def test_writes_and_problems_leave_no_cycles(server, user, list_and_message):
    lst, msg = list_and_message

    def run():
        for i in range(3):
            resp = user.api.post("/message", json={"list_id": lst["id"], "subject": f"n{i}",
                                                   "content": "x", "privacy": "member"})
            assert resp.status_code == 201, resp.text
            etag = user.api.get(f"/message/{msg['id']}").headers["ETag"]
            resp = user.api.put(f"/message/{msg['id']}", json={"subject": f"e{i}"},
                                headers={"If-Match": etag})
            assert resp.status_code == 200, resp.text
            assert user.api.post("/message", json={"subject": 5}).status_code == 400
            assert user.api.get("/message/x-nosuchmessage000").status_code == 404
            assert server.anonymous().get("/message").status_code == 401
    assert _apicrud_garbage(run) == []
