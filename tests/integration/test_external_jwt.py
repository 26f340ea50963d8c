"""Bearer JWTs from trusted issuers, from the attacker's side first.

The issuers' keys are served by a real JWKS endpoint on loopback; the service is a real
instance over HTTP. Expectations come from RFC 7519/7515/6750 and the issue, not from
the code: a token is accepted only when signed by a published key of a trusted issuer
with an accepted algorithm, meant for this audience and not expired.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests
from sqlalchemy import update

from apicrud.errors import StartupError
from instances import new_account, start_instance
from oidc_helpers import JwksServer, claims, ec_key, public_jwk, rsa_key, sign, unsigned

ISS_A = "https://idp-a.test/realms/main"  # JWKS URL, rotation refetches at once
ISS_B = "https://idp-b.test"  # JWKS URL, unknown-kid refetch at most once an hour
ISS_C = "https://gateway.test"  # static EC key, subject is the uid, leeway 30 s
ISS_D = "https://down.test"  # JWKS URL nobody answers at
AUD = "apicrud-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(server):
    jwks = JwksServer()
    keys = {"a1": rsa_key("a1"), "b1": rsa_key("b1"), "c1": ec_key("c1")}
    jwks.sets["a"] = [keys["a1"]]
    jwks.sets["b"] = [keys["b1"]]
    issuers = {
        ISS_A: {"jwks_url": jwks.url("a"), "audience": AUD,
                "username_claim": "preferred_username", "jwks_refetch_interval": 0,
                "admin_claim": "roles", "admin_value": "apicrud-admin"},
        ISS_B: {"jwks_url": jwks.url("b"), "audience": [AUD, "other"],
                "username_claim": "preferred_username", "jwks_refetch_interval": 3600},
        ISS_C: {"keys": [public_jwk(keys["c1"])], "audience": AUD, "uid_claim": "sub",
                "algorithms": ["ES256"], "leeway": 30},
        ISS_D: {"jwks_url": f"http://127.0.0.1:{_free_port()}/jwks", "audience": AUD,
                "username_claim": "preferred_username", "timeout": 2},
    }
    inst = start_instance(server.settings, jwt_issuers=issuers)
    name, _, uid = new_account(inst.services)
    try:
        yield {"inst": inst, "jwks": jwks, "keys": keys, "name": name, "uid": uid}
    finally:
        inst.stop()
        jwks.close()


def call(env, token: str, method: str = "GET", path: str = "/auth", **kw):
    return requests.request(method, env["inst"].url + path, timeout=30,
                            headers={"Authorization": f"Bearer {token}"}, **kw)


def refused(resp, words: str) -> None:
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert words in body["detail"], body
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def a_token(env, **more) -> str:
    return sign(env["keys"]["a1"], claims(ISS_A, AUD, "ext-1",
                                          preferred_username=env["name"], **more))


# -- accepted tokens -----------------------------------------------------------------

def test_token_of_a_trusted_issuer_signs_in_without_a_session(env):
    resp = call(env, a_token(env))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["uid"] == env["uid"] and body["username"] == env["name"]
    assert body["method"] == "jwt" and body["roles"] == ["user"]
    assert resp.headers["Cache-Control"] == "no-store"


def test_static_key_issuer_by_uid_with_leeway(env):
    key = env["keys"]["c1"]
    late = claims(ISS_C, AUD, env["uid"], lifetime=-10)  # expired 10 s ago, leeway 30
    resp = call(env, sign(key, late, alg="ES256"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["uid"] == env["uid"]
    too_late = claims(ISS_C, AUD, env["uid"], lifetime=-60)
    refused(call(env, sign(key, too_late, alg="ES256")), "expired")


def test_any_listed_audience_is_accepted(env):
    token = sign(env["keys"]["b1"], claims(ISS_B, ["other", "x"], "s",
                                           preferred_username=env["name"]))
    assert call(env, token).status_code == 200


def test_admin_role_comes_from_the_token(env):
    resp = call(env, a_token(env, roles=["apicrud-admin", "x"]))
    assert resp.status_code == 200 and "admin" in resp.json()["roles"]
    assert call(env, a_token(env, roles=["admin"])).json()["roles"] == ["user"]


def test_scopes_narrow_the_token_as_api_key_scopes_do(env):
    token = a_token(env, scope="list:read openid")
    assert call(env, token, path="/list").status_code == 200
    resp = call(env, token, "POST", "/list", json={"name": "by-jwt"})
    assert resp.status_code == 403 and "list:write" in resp.json()["detail"]
    assert call(env, token, path="/category").status_code == 403
    writer = a_token(env, scope=["list:write", "list:read"])  # a list claim (scp style)
    assert call(env, writer, "POST", "/list", json={"name": "by-jwt"}).status_code == 201
    # an empty scope claim allows nothing
    assert call(env, a_token(env, scope=""), path="/list").status_code == 403


# -- refusals ------------------------------------------------------------------------

def test_unknown_issuer(env):
    token = sign(env["keys"]["a1"], claims("https://evil.test", AUD, "s",
                                           preferred_username=env["name"]))
    refused(call(env, token), "issuer is not trusted")


def test_expired(env):
    refused(call(env, a_token(env, exp=int(time.time()) - 5)), "expired")


def test_not_yet_valid_and_missing_exp(env):
    refused(call(env, a_token(env, nbf=int(time.time()) + 600)), "nbf")
    c = claims(ISS_A, AUD, "s", preferred_username=env["name"])
    del c["exp"]
    refused(call(env, sign(env["keys"]["a1"], c)), "exp")


def test_wrong_audience(env):
    token = sign(env["keys"]["a1"], claims(ISS_A, "someone-else", "s",
                                           preferred_username=env["name"]))
    refused(call(env, token), "aud")


def test_missigned_with_a_key_claiming_a_published_kid(env):
    forger = rsa_key("a1")  # same kid, different key
    token = sign(forger, claims(ISS_A, AUD, "s", preferred_username=env["name"]))
    refused(call(env, token), "signature")


def test_tampered_payload(env):
    head, _, sig = a_token(env).split(".")
    other = sign(env["keys"]["a1"], claims(ISS_A, AUD, "s", preferred_username="admin",
                                           roles=["apicrud-admin"])).split(".")[1]
    refused(call(env, f"{head}.{other}.{sig}"), "signature")


def test_alg_none(env):
    body = claims(ISS_A, AUD, "s", preferred_username=env["name"])
    refused(call(env, unsigned(body, kid="a1")), "alg none")
    refused(call(env, unsigned(body)), "alg none")  # no kid: still no way in


def test_symmetric_algorithm_with_the_public_key_as_secret(env):
    """The classic confusion: HS256 keyed with the issuer's public key."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    pem = env["keys"]["a1"].as_pem(private=False)
    head = b64(json.dumps({"alg": "HS256", "kid": "a1"}).encode())
    body = b64(json.dumps(claims(ISS_A, AUD, "s", preferred_username=env["name"])).encode())
    sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    refused(call(env, f"{head}.{body}.{sig}"), "HS256 is not accepted")


def test_key_from_the_token_header_is_not_followed(env):
    forger = rsa_key("x9")
    token = sign(forger, claims(ISS_A, AUD, "s", preferred_username=env["name"]),
                 jwk=public_jwk(forger))
    refused(call(env, token), "does not follow")


def test_unknown_kid_refetches_at_most_once_per_interval(env):
    jwks = env["jwks"]
    b1 = env["keys"]["b1"]
    ok = sign(b1, claims(ISS_B, AUD, "s", preferred_username=env["name"]))
    assert call(env, ok).status_code == 200
    before = jwks.hits.get("b", 0)
    for kid in ("nope1", "nope2", "nope3"):
        token = sign(rsa_key(kid), claims(ISS_B, AUD, "s", preferred_username=env["name"]))
        refused(call(env, token), "unknown kid")
    # the set was fetched at start or for the first token: within the hour, no refetch
    assert jwks.hits.get("b", 0) - before <= 1


def test_rotation_without_restart(env):
    jwks = env["jwks"]
    a2 = rsa_key("a2")
    token = sign(a2, claims(ISS_A, AUD, "s", preferred_username=env["name"]))
    refused(call(env, token), "unknown kid")
    jwks.sets["a"] = [env["keys"]["a1"], a2]  # the issuer publishes a new key
    assert call(env, token).status_code == 200
    jwks.sets["a"] = [a2]  # ... and retires the old one; cached set still has it
    hits = jwks.hits["a"]
    assert call(env, a_token(env)).status_code == 200
    assert jwks.hits["a"] == hits  # a known kid never refetches before the ttl
    jwks.sets["a"] = [env["keys"]["a1"], a2]


def test_issuer_keys_unreachable_is_503_quickly(env):
    key = rsa_key("d1")
    token = sign(key, claims(ISS_D, AUD, "s", preferred_username=env["name"]))
    started = time.monotonic()
    resp = call(env, token)
    assert resp.status_code == 503, resp.text
    assert "keys cannot be fetched" in resp.json()["detail"]
    assert time.monotonic() - started < 5


def test_no_account_and_suspended_account(env):
    token = sign(env["keys"]["a1"], claims(ISS_A, AUD, "s", preferred_username="nobody-x"))
    refused(call(env, token), "no active account")
    name, _, uid = new_account(env["inst"].services)
    token = sign(env["keys"]["a1"], claims(ISS_A, AUD, "s", preferred_username=name))
    assert call(env, token).status_code == 200
    services = env["inst"].services
    with services.db.session() as db, db.begin():
        db.execute(update(services.models.Account).where(
            services.models.Account.uid == uid).values(status="suspended"))
    refused(call(env, token), "no active account")


def test_garbage_bearer_values(env):
    for token in ("eyJ.eyJ.", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
                  "x" * 9000 + ".a.b"):
        resp = call(env, token)
        assert resp.status_code == 401, (token[:40], resp.text)
        assert resp.headers["Content-Type"].startswith("application/problem+json")


def test_public_operation_ignores_a_bad_token(env):
    resp = requests.get(env["inst"].url + "/health", timeout=10,
                        headers={"Authorization": "Bearer a.b.c"})
    assert resp.status_code == 200


# -- settings --------------------------------------------------------------------------

@pytest.mark.parametrize("entry, words", [
    ({"jwks_url": "http://x/", "username_claim": "u"}, "audience"),
    ({"jwks_url": "http://x/", "audience": "a"}, "exactly one of uid_claim"),
    ({"audience": "a", "username_claim": "u"}, "either jwks_url or keys"),
    ({"jwks_url": "http://x/", "audience": "a", "username_claim": "u",
      "algorithms": ["none"]}, "algorithms"),
    ({"jwks_url": "http://x/", "audience": "a", "username_claim": "u",
      "algorithms": ["HS256"]}, "algorithms"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}], "audience": "a", "username_claim": "u"},
     "only RSA, EC and OKP"),
    ({"keys": [rsa_key("p").as_dict(private=True)], "audience": "a",
      "username_claim": "u"}, "private key"),
    ({"jwks_url": "http://x/", "audience": "a", "username_claim": "u", "typo": 1},
     "unknown keys typo"),
])
def test_bad_issuer_settings_stop_the_start(server, entry, words):
    with pytest.raises(StartupError) as exc:
        start_instance(server.settings, jwt_issuers={"https://i.test": entry})
    assert words in str(exc.value)
