"""OpenID Connect login against a real provider (Authlib's server side) on loopback.

Attacks first: every refusal a relying party owes (OpenID Connect Core 3.1.3.7, RFC
9700): a forged, replayed or foreign ``state``, a replayed code, a wrong ``nonce``,
an expired ID token, another audience, a key the provider does not publish, ``alg:
none``, an unverified email under ``account_policy: closed``. Then the sign-ins that
must work under each policy, linking, and the redirect back to the UI.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests
from joserfc.jwk import RSAKey
from joserfc.util import urlsafe_b64decode
from sqlalchemy import select
from werkzeug.serving import make_server

import logscan
from apicrud.errors import StartupError
from instances import login, new_account
from oidc_helpers import unsigned
from oidc_provider import Provider

CLIENT_ID = "apicrud-test-client"
CLIENT_SECRET = "oidc-client-secret-" + secrets.token_hex(8)
logscan.SECRETS.add(CLIENT_SECRET, "oidc_client_secrets")


class _Late:
    """A WSGI app set after the server is listening (the app needs its own URL)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


class Site:
    def __init__(self, settings, provider: Provider, policy: str, **changes) -> None:
        from apicrud.app import create_app

        late = _Late()
        self.httpd = make_server("127.0.0.1", 0, late, threaded=True)
        root = f"http://127.0.0.1:{self.httpd.server_port}"
        provider.client.redirect_uris.append(
            f"{root}{settings.base_url}/auth/oidc/test/callback")
        changes.setdefault("oidc_providers", {"test": {
            "issuer": provider.url, "client_id": CLIENT_ID, "label": "Test provider",
            "jwks_refetch_interval": 0}})
        changes.setdefault("oidc_client_secrets", {"test": CLIENT_SECRET})
        self.app = create_app(settings=settings.replace(
            public_url=root, account_policy=policy,
            instance_id=f"test-{secrets.token_hex(4)}", **changes), migrate=False)
        late.app = self.app
        self.url = root + settings.base_url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def services(self):
        return self.app.extensions["apicrud"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.services.close()


@pytest.fixture(scope="module")
def op():
    provider = Provider(CLIENT_ID, CLIENT_SECRET)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def sites(server, op):
    made = {p: Site(server.settings, op, p) for p in ("open", "onrequest", "closed")}
    yield made
    for site in made.values():
        site.close()


@pytest.fixture(autouse=True)
def _reset(op):
    op.misbehave.clear()
    op.extra_keys.clear()
    yield
    op.misbehave.clear()


def person(op, **claims) -> dict:
    sub = "sub-" + secrets.token_hex(6)
    user = {"sub": sub, "preferred_username": "oidc" + secrets.token_hex(3),
            "email": f"{sub}@idp.example", "email_verified": True, "name": "Idp Person"}
    user.update(claims)
    op.user = user
    return user


def begin(site: Site, browser: requests.Session | None = None, **params):
    """Start a sign-in and let the provider answer: (browser, callback URL)."""
    browser = browser or requests.Session()
    start = browser.get(site.url + "/auth/oidc/test", params=params, allow_redirects=False,
                        timeout=30)
    assert start.status_code == 302, start.text
    at_op = browser.get(start.headers["Location"], allow_redirects=False, timeout=30)
    assert at_op.status_code == 302, at_op.text
    return browser, at_op.headers["Location"]


def sign_in(site: Site, browser=None, **params):
    browser, callback = begin(site, browser, **params)
    return browser, browser.get(callback, allow_redirects=False, timeout=30)


def refused(resp, status: int, words: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert words in resp.json()["detail"], resp.json()


def with_query(url: str, **changes) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunparse(parts._replace(query=urlencode(query)))


# -- the flow's own checks -------------------------------------------------------------

def test_start_sends_pkce_state_and_nonce(sites, op):
    resp = requests.get(sites["open"].url + "/auth/oidc/test", allow_redirects=False,
                        timeout=30)
    assert resp.status_code == 302
    q = parse_qs(urlparse(resp.headers["Location"]).query)
    assert q["response_type"] == ["code"] and q["client_id"] == [CLIENT_ID]
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert len(q["state"][0]) >= 32 and len(q["nonce"][0]) >= 32
    assert "openid" in q["scope"][0].split()
    assert q["redirect_uri"] == [sites["open"].url + "/auth/oidc/test/callback"]
    again = requests.get(sites["open"].url + "/auth/oidc/test", allow_redirects=False,
                         timeout=30)
    q2 = parse_qs(urlparse(again.headers["Location"]).query)
    assert q2["state"] != q["state"] and q2["nonce"] != q["nonce"]


def test_wrong_state(sites, op):
    person(op)
    browser, callback = begin(sites["open"])
    refused(browser.get(with_query(callback, state="forged" + secrets.token_urlsafe(20)),
                        timeout=30), 401, "state")
    refused(browser.get(with_query(callback, state=""), timeout=30), 401, "state")


def test_state_of_another_browser(sites, op):
    """Login CSRF: an attacker's code and state pushed into a victim's browser."""
    person(op)
    _, callback = begin(sites["open"])
    refused(requests.get(callback, timeout=30), 401, "not started by this browser")


def test_replayed_callback_and_replayed_code(sites, op):
    person(op)
    browser, callback = begin(sites["open"])
    assert browser.get(callback, timeout=30).status_code == 201
    refused(browser.get(callback, timeout=30), 401, "already used")
    # the same code under a fresh state of this browser: the provider spends codes once
    code = parse_qs(urlparse(callback).query)["code"][0]
    _, fresh = begin(sites["open"], browser)
    refused(browser.get(with_query(fresh, code=code), timeout=30), 401,
            "did not accept the authorization code")


def test_bad_nonce(sites, op):
    person(op)
    op.misbehave["nonce"] = "not-the-nonce-" + secrets.token_hex(8)
    refused(sign_in(sites["open"])[1], 401, "nonce")


def test_expired_id_token(sites, op):
    person(op)
    op.misbehave["lifetime"] = -120
    refused(sign_in(sites["open"])[1], 401, "expired")


def test_wrong_audience(sites, op):
    person(op)
    op.misbehave["aud"] = ["someone-else"]
    refused(sign_in(sites["open"])[1], 401, "aud")
    op.misbehave["aud"] = [CLIENT_ID, "someone-else"]  # several, and no azp naming us
    refused(sign_in(sites["open"])[1], 401, "azp")


def test_wrong_issuer_in_the_token(sites, op):
    person(op)
    op.misbehave["iss"] = "https://evil.example"
    refused(sign_in(sites["open"])[1], 401, "iss")


def test_unknown_kid(sites, op):
    person(op)
    op.misbehave["key"] = RSAKey.generate_key(2048, parameters={"kid": "rogue"})
    refused(sign_in(sites["open"])[1], 401, "unknown kid")


def test_key_not_in_the_jwks_under_a_published_kid(sites, op):
    person(op)
    op.misbehave["key"] = RSAKey.generate_key(2048, parameters={"kid": op.key.kid})
    refused(sign_in(sites["open"])[1], 401, "signature")


def test_alg_none(sites, op):
    """Every claim right (nonce included), but unsigned."""
    person(op)
    browser, callback = begin(sites["open"])
    original = op.app.view_functions["token"]

    def strip_signature():
        resp = original()
        body = resp.get_json()
        payload = json.loads(urlsafe_b64decode(body["id_token"].split(".")[1].encode()))
        body["id_token"] = unsigned(payload, kid=op.key.kid)
        resp.set_data(json.dumps(body))
        return resp

    op.app.view_functions["token"] = strip_signature
    try:
        refused(browser.get(callback, timeout=30), 401, "alg none")
    finally:
        op.app.view_functions["token"] = original


def test_rotated_provider_key_is_picked_up(sites, op):
    person(op)
    new = RSAKey.generate_key(2048, parameters={"kid": "op-2"})
    op.extra_keys.append(new)  # published now; the cached JWKS does not have it yet
    op.misbehave["key"] = new
    _browser, resp = sign_in(sites["open"])
    assert resp.status_code == 201, resp.text


def test_provider_error_and_missing_code(sites, op):
    person(op)
    browser, callback = begin(sites["open"])
    q = parse_qs(urlparse(callback).query)
    denied = f"{sites['open'].url}/auth/oidc/test/callback?" + urlencode(
        {"state": q["state"][0], "error": "access_denied"})
    refused(browser.get(denied, timeout=30), 401, "access_denied")


def test_unknown_provider_and_bad_return_to(sites):
    refused(requests.get(sites["open"].url + "/auth/oidc/nope", timeout=30), 404,
            "no such OpenID provider")
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil.example",
                "http:evil.example", "evil.example/admin/", "javascript:alert(1)",
                "/\t/evil.example", "/ /evil.example"):
        resp = requests.get(sites["open"].url + "/auth/oidc/test", timeout=30,
                            params={"return_to": bad}, allow_redirects=False)
        refused(resp, 400, "return_to")


def test_wrong_client_secret_is_refused_by_the_provider(server, op):
    site = Site(server.settings, op, "open", oidc_client_secrets={"test": "wrong-secret-x"})
    try:
        person(op)
        refused(sign_in(site)[1], 401, "did not accept the authorization code")
    finally:
        site.close()


def test_unreachable_provider_is_503(server, op):
    site = Site(server.settings, op, "open", oidc_providers={"test": {
        "issuer": "http://127.0.0.1:9/", "client_id": CLIENT_ID, "timeout": 2}})
    try:
        started = time.monotonic()
        refused(requests.get(site.url + "/auth/oidc/test", timeout=30,
                             allow_redirects=False), 503, "cannot be reached")
        assert time.monotonic() - started < 5
    finally:
        site.close()


# -- accounts by policy ----------------------------------------------------------------

def test_open_creates_an_account_then_finds_it_by_link(sites, op):
    user = person(op)
    browser, resp = sign_in(sites["open"])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["username"] == user["preferred_username"] and body["roles"] == ["user"]
    me = requests.get(sites["open"].url + "/auth", timeout=30,
                      headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["uid"] == body["uid"]
    assert browser.cookies.get(sites["open"].services.settings.cookie_name) == body["token"]
    # the next sign-in, with another name and address at the provider: same account
    user.update(preferred_username="renamed" + secrets.token_hex(3),
                email="moved@idp.example")
    again = sign_in(sites["open"])[1]
    assert again.status_code == 201 and again.json()["uid"] == body["uid"]


def test_onrequest_makes_a_pending_account(sites, op):
    person(op)
    resp = sign_in(sites["onrequest"])[1]
    assert resp.status_code == 201, resp.text
    assert resp.json()["roles"] == ["pending"]
    services = sites["onrequest"].services
    with services.db.session() as db:
        status = db.execute(select(services.models.Account.status).where(
            services.models.Account.id == resp.json()["account_id"])).scalar_one()
    assert status == "pending"


def _email_of(services, uid):
    with services.db.session() as db:
        return db.get(services.models.Person, uid).identity


def test_closed_needs_an_existing_account_with_a_verified_email(sites, op):
    site = sites["closed"]
    name, _password, uid = new_account(site.services)
    email = _email_of(site.services, uid)
    person(op, email=email, email_verified=False)
    refused(sign_in(site)[1], 403, "no account")
    person(op, email=email, email_verified="false")
    refused(sign_in(site)[1], 403, "no account")
    person(op, email="nobody-" + secrets.token_hex(4) + "@idp.example")
    refused(sign_in(site)[1], 403, "no account")
    person(op, email=email.upper(), email_verified=True)
    resp = sign_in(site)[1]
    assert resp.status_code == 201, resp.text
    assert resp.json()["uid"] == uid and resp.json()["username"] == name


def test_unverified_email_is_not_kept_on_a_new_person(sites, op):
    person(op, email_verified=False)
    resp = sign_in(sites["open"])[1]
    assert resp.status_code == 201
    assert _email_of(sites["open"].services, resp.json()["uid"]) is None


def test_taken_username_gets_a_suffix(sites, op):
    name, _, _ = new_account(sites["open"].services)
    person(op, preferred_username=name)
    resp = sign_in(sites["open"])[1]
    assert resp.status_code == 201
    assert resp.json()["username"].startswith(name + "-")


def test_return_to_redirects_with_the_session_cookie(sites, op):
    person(op)
    browser, resp = sign_in(sites["open"], return_to="/admin/#/")
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/#/"
    cookie = sites["open"].services.settings.cookie_name
    assert browser.cookies.get(cookie)
    me = browser.get(sites["open"].url + "/auth", timeout=30)
    assert me.status_code == 200 and me.json()["method"] == "cookie"
    # the page it lands on writes with the cookie and the CSRF token GET /auth tells it
    csrf = me.json()["csrf_token"]
    assert me.headers["Cache-Control"] == "no-store"
    made = browser.post(sites["open"].url + "/list", json={"name": "by cookie"}, timeout=30)
    assert made.status_code == 403, made.text
    made = browser.post(sites["open"].url + "/list", json={"name": "by cookie"}, timeout=30,
                        headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # a Bearer caller has no use for it: not told
    token = browser.cookies.get(cookie)
    bearer = requests.get(sites["open"].url + "/auth", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200 and "csrf_token" not in bearer.json()


def test_link_a_second_provider_identity_to_a_signed_in_account(sites, op):
    site = sites["open"]
    name, password, uid = new_account(site.services)
    http = login(site.url, name, password)
    assert requests.post(site.url + "/auth/oidc/test/link", timeout=30).status_code == 401
    url = http.post(site.url + "/auth/oidc/test/link", timeout=30)
    assert url.status_code == 200, url.text
    person(op, email="other-" + secrets.token_hex(3) + "@idp.example")
    at_op = http.get(url.json()["authorization_url"], allow_redirects=False, timeout=30)
    linked = http.get(at_op.headers["Location"], timeout=30)
    assert linked.status_code == 201, linked.text
    assert linked.json()["uid"] == uid
    fresh = sign_in(site)[1]  # later, from any browser: the provider identity is the account
    assert fresh.status_code == 201 and fresh.json()["uid"] == uid


def test_methods_list_the_provider(sites):
    body = requests.get(sites["open"].url + "/auth/methods", timeout=30).json()
    assert "oidc" in body["methods"] and "password" in body["methods"]
    assert body["providers"] == [{"name": "test", "label": "Test provider",
                                  "login_url": "/api/v1/auth/oidc/test"}]


@pytest.mark.parametrize("providers, secrets_, words", [
    ({"test": {"issuer": "http://x/", "client_id": "c"}}, {}, "no client secret"),
    ({"test": {"client_id": "c"}}, {"test": "s"}, "issuer must be"),
    ({"test": {"issuer": "http://x/"}}, {"test": "s"}, "client_id is required"),
    ({"test": {"issuer": "http://x/", "client_id": "c", "scopes": ["email"]}},
     {"test": "s"}, "including openid"),
    ({"Bad Name": {"issuer": "http://x/", "client_id": "c"}}, {"Bad Name": "s"}, "name must"),
])
def test_bad_provider_settings_stop_the_start(server, providers, secrets_, words):
    from instances import start_instance

    with pytest.raises(StartupError) as exc:
        start_instance(server.settings, oidc_providers=providers,
                       oidc_client_secrets=secrets_)
    assert words in str(exc.value)
