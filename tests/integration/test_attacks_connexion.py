"""Attacks on the connexion features (apicrud.connexion_conventions, apicrud.connexion_mount),
from the attacker's side, over HTTP.

A project made by ``apicrud init`` gets connexion-style paths and handlers authenticated by
``x-bearerInfoFunc`` / ``x-apikeyInfoFunc`` functions that misbehave the ways real ones do
(raise, return odd values, hand back whatever ``sub`` the caller chose), served by a real
``apicrud serve``; then apicrud mounted in a connexion app beside the user's own APIs,
reached with raw request targets (encoded and dotted paths that a client library would
normalise away).
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from helpers.project import free_port, run_cli, write_connexion_project

ADMIN_PW = "admin-pw-1234567"
SECRET = "s3cr3t-k3y-material-9f8e7d"  # what a raising info function puts in its message

PATHS = """
whoami:
  get:
    operationId: attack_handlers.attack.who_whoami
    security: [{subauth: []}]
    responses: {"200": {description: who}}
inject:
  get:
    operationId: attack_handlers.attack.everything
    security: [{subauth: []}]
    parameters:
      - {name: q, in: query, schema: {type: string}}
    responses: {"200": {description: kwargs}}
  post:
    operationId: attack_handlers.attack.everything_post
    security: [{subauth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            additionalProperties: false
            properties: {name: {type: string}}
    responses: {"200": {description: kwargs}}
boom:
  get:
    operationId: attack_handlers.attack.who_boom
    security: [{boomauth: []}]
    responses: {"200": {description: who}}
oauthproblem:
  get:
    operationId: attack_handlers.attack.who_oauthproblem
    security: [{problemauth: []}]
    responses: {"200": {description: who}}
odd:
  get:
    operationId: attack_handlers.attack.who_odd
    security: [{oddauth: []}]
    responses: {"200": {description: who}}
scoped:
  get:
    operationId: attack_handlers.attack.who_scoped
    security: [{scopeauth: [pets.admin]}]
    responses: {"200": {description: who}}
cookiepet:
  get:
    operationId: attack_handlers.attack.who_cookiepet
    security: [{petcookie: []}]
    responses: {"200": {description: who}}
strict:
  post:
    operationId: attack_handlers.attack.everything_strict
    security: [{subauth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            additionalProperties: false
            properties:
              kind: {const: pet}
              weight: {type: number, exclusiveMinimum: 0}
              tag: {type: [string, "null"]}
              labels:
                type: object
                patternProperties: {"^x-": {type: string}}
                additionalProperties: false
              extra:
                type: object
                properties: {a: {type: string}}
                unevaluatedProperties: false
              pair:
                type: array
                prefixItems: [{type: string}, {type: integer}]
              code: {type: string, contentEncoding: base64}
              choice:
                oneOf: [{type: string, maxLength: 3}, {type: "null"}]
    responses: {"200": {description: kwargs}}
keypet:
  get:
    operationId: attack_handlers.attack.who_keypet
    security: [{petkey: []}]
    responses: {"200": {description: who}}
"""

HANDLERS = {
    "attack_handlers/__init__.py": "",
    "attack_handlers/attack.py": '''
        """Handlers and info functions as careless connexion projects write them."""


        def whoami(user, token_info):
            return {"user": user, "token_info": token_info}


        def everything(**kwargs):
            return {k: (v if isinstance(v, (str, int, dict, type(None))) else repr(v))
                    for k, v in kwargs.items()}


        everything_post = everything_strict = everything
        who_whoami = who_boom = who_oauthproblem = who_odd = who_scoped = whoami
        who_cookiepet = who_keypet = whoami


        def sub_info(token):
            """Trusts whatever the token says: 'sub:<uid>' (an attacker's own choice)."""
            return {"sub": token[4:], "scope": "x"} if token.startswith("sub:") else None


        def boom_info(token):
            raise ValueError(f"cannot decode {token} with key SECRET_PLACEHOLDER")


        def problem_info(token):
            from connexion.exceptions import OAuthProblem

            if token != "good":
                raise OAuthProblem(detail="Invalid token")
            return {"sub": "good"}


        def odd_info(token):
            return {"true": True, "str": "yes", "list": ["sub", "admin"], "zero": 0,
                    "coro": _coroutine()}.get(token)


        async def _coroutine():
            return {"sub": "admin"}


        def scope_info(token, required_scopes):
            # a string where a list is expected, scopes in another claim: the function
            # decides, apicrud passes what the operation requires
            return {"sub": "sc", "required": required_scopes} if token == "any" else None


        def cookie_info(key):
            return {"sub": "cookie-user", "key": key} if key != "bad" else None


        def key_info(key):
            return {"sub": "key-user"} if key == "right-key" else None
        '''.replace("SECRET_PLACEHOLDER", SECRET),
}

SCHEMES = {
    "subauth": {"type": "http", "scheme": "bearer",
                "x-bearerInfoFunc": "attack_handlers.attack.sub_info"},
    "boomauth": {"type": "http", "scheme": "bearer",
                 "x-bearerInfoFunc": "attack_handlers.attack.boom_info"},
    "problemauth": {"type": "http", "scheme": "bearer",
                    "x-bearerInfoFunc": "attack_handlers.attack.problem_info"},
    "oddauth": {"type": "http", "scheme": "bearer",
                "x-bearerInfoFunc": "attack_handlers.attack.odd_info"},
    "scopeauth": {"type": "http", "scheme": "bearer",
                  "x-bearerInfoFunc": "attack_handlers.attack.scope_info"},
    "petcookie": {"type": "apiKey", "in": "cookie", "name": "pet_session",
                  "x-apikeyInfoFunc": "attack_handlers.attack.cookie_info"},
    "petkey": {"type": "apiKey", "in": "header", "name": "X-Pet-Key",
               "x-apikeyInfoFunc": "attack_handlers.attack.key_info"},
}


def _write_project(project) -> None:
    names = ("whoami", "inject", "boom", "oauthproblem", "odd", "scoped", "cookiepet",
             "keypet", "strict")
    write_connexion_project(project, HANDLERS, "attack.path.yaml", PATHS,
                            {"/" + name: name for name in names}, SCHEMES)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = tmp_path_factory.mktemp("cxattack") / "shop"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(APICRUD_WORKERS="1", APICRUD_HOST="127.0.0.1",
               APICRUD_ADMIN_PASSWORD=ADMIN_PW)
    made = run_cli("init", str(project), cwd=project.parent, env=env)
    assert made.returncode == 0, made.stderr
    _write_project(project)
    return project, env


class Served:
    def __init__(self, url: str, log) -> None:
        self.url, self.log = url, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _serve(folder, env, name: str, command: list[str] | None = None, **extra: str):
    port = free_port()
    env = {**env, "APICRUD_PORT": str(port),
           "APICRUD_DATA_DIR": str(folder.parent / f"data-{name}"), **extra}
    log_path = folder.parent / f"serve-{name}.log"
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen(command or [sys.executable, "-m", "apicrud.cli", "serve"],
                                  cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(300):
            assert server.poll() is None, log_path.read_text()
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.2)
        else:
            pytest.fail("apicrud serve did not answer /health")
        yield Served(url, log_path)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def served(project):
    folder, env = project
    yield from _serve(folder, env, "main", APICRUD_RATELIMIT_AUTH_FAILURES="1000000")


@pytest.fixture(scope="module")
def limited(project):
    """The same project with a small limit of failed credentials per address."""
    folder, env = project
    yield from _serve(folder, env, "limited", APICRUD_RATELIMIT_AUTH_FAILURES="4")


@pytest.fixture(scope="module")
def session(served):
    login = requests.post(served.url + "/auth", json={"username": "admin",
                                                      "password": ADMIN_PW}, timeout=30)
    assert login.status_code == 201, login.text
    body = login.json()
    me = requests.get(served.url + "/auth",
                      headers={"Authorization": f"Bearer {body['token']}"}, timeout=30)
    assert me.status_code == 200, me.text
    return {"token": body["token"], "csrf": body.get("csrf_token"), "cookie": login.cookies,
            "uid": me.json()["uid"]}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_401(resp) -> dict:
    assert resp.status_code == 401, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    return resp.json()


# -- an info function's caller on apicrud's own operations -------------------------------
def test_a_forged_sub_of_apicrud_s_admin_reaches_no_apicrud_operation(served, session):
    """sub_info trusts the caller's 'sub:<uid>': naming apicrud's admin gets nothing of
    apicrud's (its operations do not list subauth)."""
    forged = bearer(f"sub:{session['uid']}")
    who = requests.get(served.url + "/whoami", headers=forged, timeout=30)
    assert who.status_code == 200 and who.json()["user"] == session["uid"]
    for method, path, body in (("GET", "/note", None), ("POST", "/note", {"title": "x"}),
                               ("GET", "/auth", None), ("GET", "/account", None),
                               ("GET", "/auth/can-i?action=c&resource=note", None),
                               ("GET", "/trash", None)):
        resp = requests.request(method, served.url + path, json=body, headers=forged,
                                timeout=30)
        assert resp.status_code in (401, 404), (method, path, resp.status_code, resp.text)
    for sub in ("admin", "info:subauth", "*"):
        assert_401(requests.get(served.url + "/note", headers=bearer(f"sub:{sub}"),
                                timeout=30))


def test_apicrud_s_credentials_do_not_open_an_info_func_operation(served, session):
    # its session token as a bearer goes to the info function, which refuses it
    assert_401(requests.get(served.url + "/whoami", headers=bearer(session["token"]),
                            timeout=30))
    # its session cookie (no Authorization at all): apicrud's fallback, then the scheme
    # check refuses a cookie where only subauth is listed
    assert_401(requests.get(served.url + "/whoami", cookies=session["cookie"], timeout=30))
    # Basic <uid>:<token>
    basic = base64.b64encode(f"{session['uid']}:{session['token']}".encode()).decode()
    assert_401(requests.get(served.url + "/whoami", headers={"Authorization": "Basic " + basic},
                            timeout=30))
    # and a session with a fake X-Pet-Key is still refused on the key's operation
    assert_401(requests.get(served.url + "/keypet", headers={
        **bearer(session["token"]), "X-Pet-Key": "wrong"}, timeout=30))


# -- what the function returns, or raises -----------------------------------------------
@pytest.mark.parametrize("token", ["true", "str", "list", "zero", "coro", "none"])
def test_an_info_function_s_non_dict_answer_is_a_401(served, token):
    body = assert_401(requests.get(served.url + "/odd", headers=bearer(token), timeout=30))
    assert "admin" not in body["detail"]


def test_an_info_function_raising_connexion_s_oauth_problem_is_a_401(served):
    """connexion's documented way to refuse a token: raise OAuthProblem (a 401 there)."""
    assert requests.get(served.url + "/oauthproblem", headers=bearer("good"),
                        timeout=30).status_code == 200
    body = assert_401(requests.get(served.url + "/oauthproblem", headers=bearer("forged"),
                                   timeout=30))
    assert "Invalid token" in body["detail"]


def test_an_info_function_that_raises_is_a_401_and_leaks_nothing(served):
    token = "tok-" + SECRET[:6]
    resp = requests.get(served.url + "/boom", headers=bearer(token), timeout=30)
    body = assert_401(resp)
    assert SECRET not in resp.text and token not in resp.text
    assert "ValueError" not in resp.text and "cannot decode" not in body["detail"]
    time.sleep(0.5)  # the log is written by the server process
    log = served.log_text()
    assert SECRET not in log and token not in log, log[-3000:]


# -- injecting user / token_info / context_ -----------------------------------------------
def test_user_token_info_and_context_cannot_be_injected(served):
    forged = bearer("sub:mallory")
    for name in ("user", "token_info", "context_", "body"):
        resp = requests.get(served.url + "/inject", params={name: "admin"}, headers=forged,
                            timeout=30)
        assert resp.status_code == 400 and name in resp.json()["errors"], resp.text
    got = requests.get(served.url + "/inject", params={"q": "x"}, headers=forged, timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["user"] == "mallory" and got.json()["token_info"]["sub"] == "mallory"
    for body in ({"name": "a", "user": "admin"}, {"name": "a", "token_info": {"sub": "admin"}}):
        resp = requests.post(served.url + "/inject", json=body, headers=forged, timeout=30)
        assert resp.status_code == 400, resp.text
    posted = requests.post(served.url + "/inject", json={"name": "a"}, headers=forged,
                           timeout=30)
    assert posted.status_code == 200 and posted.json()["user"] == "mallory", posted.text
    assert posted.json()["body"] == {"name": "a"}


def test_required_scopes_are_the_operation_s_list(served):
    got = requests.get(served.url + "/scoped", headers=bearer("any"), timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["token_info"]["required"] == ["pets.admin"]
    # an empty bearer value, a bare "Bearer", another scheme word: no call, 401
    for value in ("Bearer ", "Bearer", "Token any", "bearer  "):
        assert_401(requests.get(served.url + "/scoped", headers={"Authorization": value},
                                timeout=30))


# -- cookie schemes ------------------------------------------------------------------------
def test_an_info_func_cookie_scheme_reads_its_own_cookie(served):
    got = requests.get(served.url + "/cookiepet", cookies={"pet_session": "pc-1"}, timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["token_info"]["key"] == "pc-1"


def test_apicrud_s_session_cookie_is_never_handed_to_an_info_function(served, session):
    resp = requests.get(served.url + "/cookiepet", cookies=session["cookie"], timeout=30)
    assert session["token"] not in resp.text
    assert_401(resp)


# -- failed credentials are limited --------------------------------------------------------
def codes_from(address: str, url: str, path: str, header: str, values: list[str]) -> list[int]:
    """Statuses of GETs sent from one loopback address (each test its own: the limit
    counts per client address)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    out = []
    for value in values:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30,
                                          source_address=(address, 0))
        try:
            conn.request("GET", parts.path + path, headers={header: value})
            resp = conn.getresponse()
            resp.read()
            out.append(resp.status)
        finally:
            conn.close()
    return out


def test_failed_bearer_info_credentials_hit_the_limit(limited):
    codes = codes_from("127.0.0.2", limited.url, "/whoami", "Authorization",
                       [f"Bearer nope-{i}" for i in range(7)])
    assert codes[:4] == [401] * 4 and 429 in codes[4:], codes


def test_failed_api_key_info_credentials_in_their_own_header_hit_the_limit(limited):
    """X-Pet-Key is neither Authorization nor X-API-KEY: its guesses must count too."""
    codes = codes_from("127.0.0.3", limited.url, "/keypet", "X-Pet-Key",
                       [f"guess-{i}" for i in range(7)])
    assert codes[:4] == [401] * 4 and 429 in codes[4:], codes


def test_tokens_an_info_function_raises_on_count_as_failures(limited):
    codes = codes_from("127.0.0.4", limited.url, "/boom", "Authorization",
                       [f"Bearer b-{i}" for i in range(7)])
    assert codes[:4] == [401] * 4 and 429 in codes[4:], codes
    codes = codes_from("127.0.0.5", limited.url, "/oauthproblem", "Authorization",
                       [f"Bearer p-{i}" for i in range(7)])
    assert codes[:4] == [401] * 4 and 429 in codes[4:], codes


def test_a_valid_key_still_passes_where_another_address_is_over_the_limit(limited):
    assert codes_from("127.0.0.6", limited.url, "/keypet", "X-Pet-Key", ["right-key"]) == [200]


# -- the connexion mount: the user's own APIs beside apicrud's ----------------------------
USER_API = '''
def allow(token):
    return {"sub": "cx-user"} if token == "cx-user-token" else None


def secret():
    return {"secret": "mine"}
'''


def _user_spec(op_id: str) -> dict:
    return {"openapi": "3.0.3", "info": {"title": "mine", "version": "1"},
            "components": {"securitySchemes": {"cx": {
                "type": "http", "scheme": "bearer", "x-bearerInfoFunc": "cx_user_api.allow"}}},
            "security": [{"cx": []}],
            "paths": {"/secret": {"get": {"operationId": op_id,
                                          "responses": {"200": {"description": "ok"}}}}}}


@pytest.fixture(scope="module")
def mounted(server, tmp_path_factory):
    """apicrud at /api/v1 in a connexion FlaskApp with the user's APIs at /other and at
    /api/v1/private (a base inside the mount), both behind connexion's own security."""
    import connexion

    from apicrud.connexion_mount import add_apicrud_api
    from connexion_engine import UvicornThread

    folder = tmp_path_factory.mktemp("cxuser")
    (folder / "cx_user_api.py").write_text(USER_API)
    sys.path.insert(0, str(folder))
    cx_app = connexion.FlaskApp(__name__)
    cx_app.add_api(_user_spec("cx_user_api.secret"), base_path="/other", name="other")
    cx_app.add_api(_user_spec("cx_user_api.secret"), base_path="/api/v1/private",
                   name="private")
    app = add_apicrud_api(cx_app, server.settings.replace(instance_id="cx-attack"),
                          migrate=False)
    runner = UvicornThread(cx_app).start()
    try:
        yield runner.port
    finally:
        runner.stop()
        app.extensions["apicrud"].close()
        sys.path.remove(str(folder))


def raw_get(port: int, target: str, headers: dict | None = None) -> tuple[int, str]:
    """GET with the request target sent as written (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_the_mount_sanity_both_sides_answer(mounted, user):
    assert raw_get(mounted, "/other/secret")[0] == 401
    for target in ("/other/secret", "/api/v1/private/secret"):
        status, text = raw_get(mounted, target, bearer("cx-user-token"))
        assert status == 200 and "mine" in text, (target, status, text)
    assert raw_get(mounted, "/api/v1/list")[0] == 401
    status, text = raw_get(mounted, "/api/v1/list", bearer(user.token))
    assert status == 200 and '"items"' in text, text  # what the anonymous tricks look for


@pytest.mark.parametrize("target", [
    "/api/v1/../other/secret", "/api/v1/%2e%2e/other/secret", "/api/v1/%2E%2E/other/secret",
    "/api/v1/..%2fother/secret", "/api/v1/..%2Fother/secret", "//other/secret",
    "/api/v1/private/secret", "/api/v1//private/secret", "/api/v1/./private/secret",
    "/api/v1/x/../private/secret", "/api/v1/%2e/private/secret", "/API/V1/private/secret",
    "/api/v1/private/secret/", "/api/v1/%70rivate/secret", "/api/v1/private%2fsecret",
    "/api/v1/private/./secret", "/api/v1/list/../private/secret",
])
def test_no_path_trick_reaches_the_user_s_handler_without_its_security(mounted, user, target):
    for headers in (None, bearer(user.token)):  # apicrud's session is not the user's token
        status, text = raw_get(mounted, target, headers)
        assert "mine" not in text and status != 200, (target, status, text)


@pytest.mark.parametrize("target", [
    "/api/v1/private/../list", "/other/../api/v1/list", "/api/v1//list", "/api/v1/%6cist",
    "/api/v1/./list", "/API/V1/list", "/api/v1/list/.", "/api/v1/list%2f",
    "/api/v1/private/%2e%2e/list", "/api/v1/ui/../list", "/api/v1/openapi.json/../list",
])
def test_no_path_trick_reaches_apicrud_s_resources_anonymously(mounted, target):
    status, text = raw_get(mounted, target)
    assert status != 200 or '"items"' not in text, (target, status, text)
    assert status < 500, (target, status, text)


# -- OpenAPI 3.1 constraints the 3.0 document cannot say: apicrud still checks them -------
STRICT_GOOD = {"kind": "pet", "weight": 0.5, "tag": None, "labels": {"x-a": "s"},
               "extra": {"a": "s"}, "pair": ["a", 1], "choice": None}
STRICT_BAD = [
    ({"kind": "cat"}, "kind"),                # const
    ({"weight": 0}, "weight"),                # exclusiveMinimum as a number
    ({"tag": 5}, "tag"),                      # type: [string, "null"]
    ({"labels": {"x-a": 1}}, "labels"),       # patternProperties
    ({"labels": {"y": "s"}}, "labels"),       # ... with additionalProperties: false
    ({"extra": {"b": 1}}, "extra"),           # unevaluatedProperties: false
    ({"pair": ["a", "b"]}, "pair"),           # prefixItems
    ({"choice": "toolong"}, "choice"),        # oneOf with a null branch
]


def _check_strict(url: str) -> None:
    forged = bearer("sub:strict")
    ok = requests.post(url + "/strict", json=STRICT_GOOD, headers=forged, timeout=30)
    assert ok.status_code == 200, ok.text
    for body, field in STRICT_BAD:
        resp = requests.post(url + "/strict", json=body, headers=forged, timeout=30)
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert any(field in key for key in resp.json()["errors"]), (body, resp.json())


def test_apicrud_serve_checks_the_31_constraints(served):
    _check_strict(served.url)


MOUNT_SCRIPT = """
import os, sys

import connexion
import uvicorn

sys.path.insert(0, os.getcwd())
from apicrud.connexion_mount import add_apicrud_api

cx_app = connexion.FlaskApp("mounted")
add_apicrud_api(cx_app, os.getcwd(), migrate=True)
uvicorn.run(cx_app, host="127.0.0.1", port=int(os.environ["APICRUD_PORT"]),
            log_level="warning")
"""


@pytest.fixture(scope="module")
def mounted_project(project):
    """The attack project (its info functions and handlers) mounted in a connexion app,
    served by uvicorn in a process of its own."""
    folder, env = project
    script = folder.parent / "mount_app.py"
    script.write_text(MOUNT_SCRIPT)
    yield from _serve(folder, env, "mounted", [sys.executable, str(script)],
                      APICRUD_RATELIMIT_AUTH_FAILURES="1000000")


def test_under_the_mount_connexion_s_30_document_lost_them_but_apicrud_checks_them(
        mounted_project):
    doc = requests.get(mounted_project.url + "/openapi.json", timeout=30).json()
    assert doc["openapi"].startswith("3.0")
    schema = doc["paths"]["/strict"]["post"]["requestBody"]["content"]["application/json"]
    props = schema["schema"]["properties"]
    assert "const" not in props["kind"] and "unevaluatedProperties" not in props["extra"]
    _check_strict(mounted_project.url)


def test_under_the_mount_the_info_functions_still_decide(mounted_project):
    assert_401(requests.get(mounted_project.url + "/whoami", timeout=30))
    assert_401(requests.get(mounted_project.url + "/boom", headers=bearer("x"), timeout=30))
    assert_401(requests.get(mounted_project.url + "/note", headers=bearer("sub:admin"),
                            timeout=30))
    who = requests.get(mounted_project.url + "/whoami", headers=bearer("sub:eve"), timeout=30)
    assert who.status_code == 200 and who.json()["user"] == "eve", who.text
