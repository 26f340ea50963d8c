"""No password, token, API key, TOTP secret or code, session token or secret_key in any
log line of the whole run, nor in any audit entry, nor in the settings shown by
``as_dict()`` and ``/config``.

``tests/conftest.py`` installs the recorders of :mod:`logscan` when pytest starts: every
log record at DEBUG and up, and every secret any test sends or receives over HTTP. The
last test of the run (pytest is told to order it last) checks them against each other;
the tests before it exercise every path that handles a secret, so the check means
something even when this file runs alone.
"""

from __future__ import annotations

import base64
import json
import logging

import requests
from sqlalchemy.engine import make_url

import logscan
from helpers import Api, assert_problem, make_user
from test_totp import Authenticator

SETTINGS_SECRETS = ("secret_key", "admin_password", "smtp_password")


def _login(server, username, password, **extra):
    return requests.post(server.url + "/auth", json={"username": username,
                                                     "password": password, **extra},
                         timeout=30)


def test_paths_that_handle_secrets(server, admin):
    """Logins good and bad, keys, a second factor, logouts: all logged, nothing secret."""
    user = make_user(server)
    assert _login(server, user.username, user.password + "-wrong").status_code == 401
    assert _login(server, "nobody-" + user.password, user.password).status_code == 401
    basic = base64.b64encode(f"{user.uid}:{user.token}".encode()).decode()
    assert requests.get(server.url + "/auth", headers={"Authorization": f"Basic {basic}"},
                        timeout=30).status_code == 200

    key = user.api.post("/apikey", json={"name": "logged"}).json()["apikey"]
    keyed = Api(server.url)
    keyed.http.headers["X-API-KEY"] = key
    assert keyed.get("/list").status_code == 200
    keyed.http.headers["X-API-KEY"] = key[:-4] + "AAAA"
    assert keyed.get("/list").status_code == 401

    enrolled = user.api.post("/auth/totp").json()
    phone = Authenticator(enrolled["secret"])
    codes = user.api.put("/auth/totp", json={"code": phone.code()}).json()["backup_codes"]
    assert _login(server, user.username, user.password).status_code == 401
    assert _login(server, user.username, user.password, otp="000000").status_code == 401
    session = _login(server, user.username, user.password, otp=phone.code())
    assert session.status_code == 201
    assert _login(server, user.username, user.password, otp=codes[0]).status_code == 201
    token = session.json()["token"]
    assert Api(server.url, token).delete("/auth").status_code == 204
    assert Api(server.url, token).get("/auth").status_code == 401
    assert user.api.delete("/auth", params={"all": "true"}).status_code == 204

    # what was logged names the events, and only that
    events = [dict(fields).get("event") for name, _, fields in logscan.CAPTURE.records
              if name == "apicrud.auth"]
    for event in ("login", "login_failed", "logout", "logout_all", "apikey_created",
                  "totp_enabled"):
        assert event in events, event
    assert logscan.leaks(logscan.CAPTURE.records, logscan.SECRETS.items()) == []


def test_settings_never_show_secrets(server, admin):
    secret_db_pw = "Db-pass-" + base64.b32encode(b"0123456789").decode()
    settings = server.settings.replace(
        database_url=f"postgresql+psycopg://app:{secret_db_pw}@db.example/apicrud",
        smtp_password="smtp-" + secret_db_pw, admin_password="admin-" + secret_db_pw)
    shown = json.dumps(settings.as_dict()) + repr(settings) + str(settings)
    for value in (settings.secret_key, secret_db_pw, settings.smtp_password,
                  settings.admin_password):
        assert value not in shown
    assert settings.as_dict()["database_url"] == "********"

    config = admin.api.get("/config")
    assert config.status_code == 200, config.text
    assert server.settings.secret_key not in config.text
    assert config.json()["settings"]["secret_key"] == "********"


def test_the_scanner_finds_what_it_should():
    record = logging.LogRecord("apicrud.x", logging.INFO, __file__, 1,
                               "user said %s", ("hunter2-is-my-password",), None)
    record.request_id = "a123456b"
    record.detail = "code 654321 sent"
    fields = logscan.record_text(record)
    found = logscan.leaks([("apicrud.x", logging.INFO, fields)],
                          [("hunter2-is-my-password", "test"), ("654321", "test"),
                           ("123456", "test"), ("not-there-at-all", "test")])
    assert len(found) == 2, found
    assert all("hunter2" not in line and "654321" not in line for line in found)
    assert any("field message" in line for line in found)
    assert any("field detail" in line for line in found)


def _settings_secrets(settings) -> list[tuple[str, str]]:
    out = []
    for name in SETTINGS_SECRETS:
        if settings[name]:
            out.append((settings[name], f"setting {name}"))
    for name in ("database_url", "redis_url", "broker_url"):
        value = settings.get(name, "")
        if value and "://" in value:
            try:
                password = make_url(value).password
            except Exception:  # noqa: BLE001  not a SQLAlchemy-style URL, whatever fails
                continue
            if password:
                out.append((str(password), f"password in setting {name}"))
    return out


def _audit_entries(server) -> list[tuple[str, int, list[tuple[str, str]]]]:
    """Every audit entry of the run, as records the scan reads (one field per column)."""
    table = server.services.models.Audit.__table__
    with server.services.db.session() as db:
        rows = db.execute(table.select()).mappings().all()
    return [("audit table", logging.INFO,
             [(name, str(value)) for name, value in row.items() if value is not None])
            for row in rows]


def test_zz_no_secret_in_any_log_line(server):
    """Runs last (tests/conftest.py): every record of the run, and every audit entry,
    against every secret."""
    for secret, where in _settings_secrets(server.settings):
        logscan.SECRETS.found.setdefault(secret, where)
    entries = _audit_entries(server)
    # the paths that handle secrets wrote entries (logins, keys, a second factor)
    assert len(entries) > 10
    records = list(logscan.CAPTURE.records) + entries
    secrets = logscan.SECRETS.items()
    assert len(records) > 20 and len(secrets) > 5  # the recorders did record
    assert any(name == "werkzeug" for name, _, _ in records)  # the access log too
    found = logscan.leaks(records, secrets)
    assert found == [], "\n".join(found[:20])


def test_logins_are_logged_without_the_password(server):
    user = make_user(server)
    assert_problem(_login(server, user.username, "Wrong-" + user.password), 401)
    lines = [dict(fields).get("message", "") for _, _, fields in logscan.CAPTURE.records]
    assert any("login failed" in line for line in lines)
    assert not any(user.password in line for line in lines)
