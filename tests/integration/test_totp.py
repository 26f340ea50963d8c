"""TOTP second factor over HTTP: enrol, confirm, log in with otp, backup codes, disable."""

from __future__ import annotations

import base64
import json
import time

import requests
from sqlalchemy import select

from apicrud.auth.totp import totp
from apicrud.crypto import AESEncryptBin
from helpers import Api, assert_problem, make_user


class Authenticator:
    """The user's phone: codes of one secret, each time step used at most once."""

    def __init__(self, secret_b32: str) -> None:
        self.key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
        self.used: set[int] = set()

    def code(self) -> str:
        while True:
            now = time.time()
            step, phase = int(now // 30), now % 30
            # the current step, then the next (valid for a minute), then the previous
            # (only while it has seconds left): the server takes one step either side
            for counter in (step, step + 1) + ((step - 1,) if phase < 25 else ()):
                if counter not in self.used:
                    self.used.add(counter)
                    return totp(self.key, at=counter * 30)
            time.sleep(30 - phase + 0.1)


def login(server, user, **extra) -> requests.Response:
    return requests.post(server.url + "/auth", json={"username": user.username,
                                                     "password": user.password, **extra},
                         timeout=30)


def enrol(user) -> tuple[dict, Authenticator]:
    resp = user.api.post("/auth/totp")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    return body, Authenticator(body["secret"])


def enable(user) -> tuple[Authenticator, list[str]]:
    _, phone = enrol(user)
    resp = user.api.put("/auth/totp", json={"code": phone.code()})
    assert resp.status_code == 200, resp.text
    return phone, resp.json()["backup_codes"]


def account_row(server, account_id):
    model = server.services.models.Account
    with server.services.db.session() as db:
        return db.execute(select(model).where(model.id == account_id)).scalar_one()


def test_enrol_returns_secret_once_with_otpauth_uri(server, user):
    body, _phone = enrol(user)
    assert len(body["secret"]) == 32 and body["digits"] == 6 and body["period"] == 30
    assert body["uri"].startswith(f"otpauth://totp/apicrud:{user.username}?")
    assert f"secret={body['secret']}" in body["uri"] and "issuer=apicrud" in body["uri"]
    assert user.api.get("/auth/totp").json() == {"enabled": False, "pending": True,
                                                 "backup_codes_left": 0}
    # not required until confirmed
    assert login(server, user).status_code == 201
    # enrolling again replaces the pending secret
    again, _ = enrol(user)
    assert again["secret"] != body["secret"]


def test_secret_and_backup_codes_are_not_stored_in_the_clear(server, user):
    body, _ = enrol(user)
    raw = base64.b32decode(body["secret"])
    row = account_row(server, user.account_id)
    assert row.totp_secret and raw not in row.totp_secret
    assert body["secret"].encode() not in row.totp_secret
    assert AESEncryptBin(server.settings.secret_key, context="totp") \
        .decrypt(row.totp_secret) == raw
    phone = Authenticator(body["secret"])
    codes = user.api.put("/auth/totp", json={"code": phone.code()}).json()["backup_codes"]
    stored = account_row(server, user.account_id).backup_codes
    assert len(json.loads(stored)) == 10
    assert not any(c in stored or c.replace("-", "") in stored for c in codes)


def test_confirm_then_login_needs_a_valid_code(server, user):
    _, phone = enrol(user)
    assert_problem(user.api.put("/auth/totp", json={"code": "000000"}), 400, "code")
    confirmed = user.api.put("/auth/totp", json={"code": phone.code()})
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["enabled"] is True and len(body["backup_codes"]) == 10
    assert len(set(body["backup_codes"])) == 10

    missing = assert_problem(login(server, user), 401)
    assert missing["type"].endswith("mfa-required")
    wrong = assert_problem(login(server, user, otp="123456"), 401)
    assert wrong["type"].endswith("mfa-required")
    # a wrong password with or without otp is the ordinary answer: nothing is revealed
    bad_pw = requests.post(server.url + "/auth", json={
        "username": user.username, "password": "not-the-password", "otp": "123456"},
        timeout=30)
    assert not assert_problem(bad_pw, 401)["type"].endswith("mfa-required")

    code = phone.code()
    ok = login(server, user, otp=code)
    assert ok.status_code == 201, ok.text
    assert Api(server.url, ok.json()["token"]).get("/auth").status_code == 200
    # the same code cannot be replayed
    assert login(server, user, otp=code).json()["type"].endswith("mfa-required")


def test_backup_code_works_once(server, user):
    _, codes = enable(user)
    ok = login(server, user, otp=codes[0])
    assert ok.status_code == 201, ok.text
    assert login(server, user, otp=codes[0].replace("-", "").upper()).status_code == 401
    assert login(server, user, otp=codes[1]).status_code == 201
    assert user.api.get("/auth/totp").json()["backup_codes_left"] == 8


def test_disable_needs_a_current_or_backup_code(server, user):
    phone, codes = enable(user)
    assert_problem(user.api.put("/auth/totp", json={"code": phone.code()}), 409)
    assert_problem(user.api.post("/auth/totp"), 409)  # enabled: disable first
    assert_problem(user.api.delete("/auth/totp", json={"code": "000000"}), 400, "code")
    assert_problem(user.api.delete("/auth/totp"), 400, "body")
    off = user.api.delete("/auth/totp", json={"code": phone.code()})
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert login(server, user).status_code == 201
    row = account_row(server, user.account_id)
    assert row.totp_secret is None and row.backup_codes is None
    assert_problem(user.api.delete("/auth/totp", json={"code": "000000"}), 409)

    _, codes = enable(user)
    off = user.api.delete("/auth/totp", json={"code": codes[3]})
    assert off.status_code == 200, off.text


def test_wrong_codes_at_the_endpoint_are_limited(server):
    user = make_user(server)
    phone, _ = enable(user)
    for _ in range(server.settings.login_attempts_max):
        assert_problem(user.api.delete("/auth/totp", json={"code": "000000"}), 400)
    locked = assert_problem(user.api.delete("/auth/totp", json={"code": phone.code()}), 429)
    assert locked["status"] == 429


def test_wrong_otps_count_toward_the_login_lockout(server):
    user = make_user(server)
    phone, _ = enable(user)
    for _ in range(server.settings.login_attempts_max):
        assert login(server, user, otp="000000").status_code == 401
    resp = login(server, user, otp=phone.code())
    assert_problem(resp, 429)
    assert int(resp.headers["Retry-After"]) >= 1


def test_api_keys_cannot_manage_the_second_factor(server, user):
    key = user.api.post("/apikey", json={"name": "script"}).json()["apikey"]
    api = Api(server.url)
    api.http.headers["X-API-KEY"] = key
    assert_problem(api.post("/auth/totp"), 403)
    assert_problem(api.get("/auth/totp"), 403)


def test_anonymous_gets_401(server):
    assert_problem(server.anonymous().post("/auth/totp"), 401)
