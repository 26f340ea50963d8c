"""One structured log line per request, with the request id the client sees."""

from __future__ import annotations

import json
import logging
import re

import pytest
import requests

from apicrud.logs import REQUEST_LOGGER, JsonFormatter
from test_cli import Served


@pytest.fixture
def request_log(caplog):
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)

    def records(request_id: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records
                if r.name == REQUEST_LOGGER and getattr(r, "request_id", None) == request_id]
    return records


def test_request_log_has_one_structured_record_per_request(server, user, request_log):
    resp = user.api.get("/list", headers={"X-Request-ID": "trace-list-0001"})
    assert resp.status_code == 200
    assert resp.headers["X-Request-ID"] == "trace-list-0001"
    (rec,) = request_log("trace-list-0001")
    assert rec.levelno == logging.INFO
    assert (rec.method, rec.path, rec.operation, rec.resource, rec.action) == \
        ("GET", "/api/v1/list", "list.find", "list", "find")
    assert (rec.uid, rec.auth, rec.status) == (user.uid, "bearer", 200)
    assert rec.remote_addr == "127.0.0.1"
    assert 0 < rec.duration_ms < 30000
    assert rec.getMessage().startswith("GET /api/v1/list 200 ")


def test_request_log_never_holds_the_token(server, user, request_log):
    user.api.get("/auth", headers={"X-Request-ID": "trace-token-01"})
    (rec,) = request_log("trace-token-01")
    line = JsonFormatter().format(rec)
    assert user.token not in line
    assert user.password not in line


def test_request_log_records_errors_and_anonymous_callers(server, request_log):
    resp = server.anonymous().get("/list", headers={"X-Request-ID": "trace-anon-01"})
    assert resp.status_code == 401
    (rec,) = request_log("trace-anon-01")
    assert (rec.status, rec.uid, rec.auth, rec.operation) == (401, None, None, "list.find")


def test_request_id_is_generated_when_missing_or_unfit(server, request_log):
    for sent in (None, "bad id with spaces", "x" * 65):
        headers = {"X-Request-ID": sent} if sent else {}
        resp = server.anonymous().get("/health", headers=headers)
        rid = resp.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
        assert len(request_log(rid)) == 1


def test_json_formatter_writes_one_parseable_line(server, user, request_log):
    user.api.get("/list", params={"filter": '{"name": "x\\ny"}'},
                 headers={"X-Request-ID": "trace-json-01"})
    (rec,) = request_log("trace-json-01")
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "info" and doc["logger"] == REQUEST_LOGGER
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"])
    assert doc["request_id"] == "trace-json-01" and doc["uid"] == user.uid
    assert doc["path"] == "/api/v1/list"  # no query string: filters may hold personal data
    assert doc["status"] == 200 and isinstance(doc["duration_ms"], float)


def test_json_formatter_keeps_exceptions_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("apicrud", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   exc_info=__import__("sys").exc_info())
    record.uid = "x-abc"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "failed x" and doc["uid"] == "x-abc"
    assert "ValueError: boom" in doc["exception"]


def test_serve_writes_json_request_lines(tmp_path):
    served = Served(tmp_path, APICRUD_LOG_FORMAT="json")
    try:
        served.wait_healthy()
        resp = requests.get(served.url + "/health", headers={"X-Request-ID": "serve-json-01"},
                            timeout=10)
        assert resp.status_code == 200
        assert served.stop() == 0
        docs = []
        for line in served.output.splitlines():
            try:
                docs.append(json.loads(line))
            except ValueError:
                continue
        mine = [d for d in docs if d.get("request_id") == "serve-json-01"]
        assert len(mine) == 1, served.output
        assert mine[0]["operation"] == "health.get" and mine[0]["status"] == 200
        assert mine[0]["logger"] == REQUEST_LOGGER and mine[0]["uid"] is None
    finally:
        served.kill()
