"""Checks of problem answers (RFC 9457) and records the tests make over HTTP."""

from __future__ import annotations

PROBLEM = "application/problem+json"


def assert_problem(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    assert body["message"] == body["detail"]
    if field is not None:
        assert field in body["errors"], body
    return body


def new_list(api, **fields) -> dict:
    resp = api.post("/list", json={"name": fields.pop("name", "groceries"), **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()
