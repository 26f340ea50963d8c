"""A small OpenID provider for the tests, on Authlib's server side, served on loopback.

It has its own RSA signing keys (published at ``/jwks``), a discovery document, an
authorization endpoint that signs in ``provider.user`` at once (the tests set who
that is), or, when ``provider.accounts`` names people (username -> (password, claims)),
first asks for a username and password on a login page of its own (the browser tests
sign in there as a person would), and a token
endpoint that checks the client secret, the redirect URI and the PKCE verifier, and
spends each code once. ``provider.misbehave`` lets a test make the provider issue a
faulty ID token (another nonce, audience, lifetime, key or algorithm).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, redirect, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

# the provider runs on plain http on loopback; Authlib refuses that without this
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str = field(repr=False)  # Authlib logs clients at DEBUG
    redirect_uris: list[str] = field(default_factory=list)

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        allowed = {"openid", "email", "profile"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class Provider:
    """The provider; ``url`` is its issuer."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "op-1", "use": "sig"})
        self.extra_keys: list = []  # published too (rotation)
        self.client = Client(client_id, client_secret, [])
        self.codes: dict[str, Code] = {}
        self.user: dict[str, Any] = {}
        self.misbehave: dict[str, Any] = {}
        self.accounts: dict[str, tuple[str, dict[str, Any]]] = {}
        self._signed_in: dict[str, dict[str, Any]] = {}  # provider session cookie -> claims
        self.token_requests = 0
        self.lock = threading.Lock()
        self.app = self._build()
        self.httpd = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- Authlib wiring -----------------------------------------------------------------
    def _build(self) -> Flask:
        op = self
        app = Flask("test-oidc-provider")

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic",
                                                               "client_secret_post"]

            def save_authorization_code(self, code, req):
                with op.lock:
                    op.codes[code] = Code(
                        code, req.client.client_id, req.payload.redirect_uri, req.scope,
                        dict(req.user), req.payload.data.get("nonce"),
                        req.payload.data.get("code_challenge"),
                        req.payload.data.get("code_challenge_method"))

            def query_authorization_code(self, code, client):
                with op.lock:
                    item = op.codes.get(code)
                return item if item and item.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                with op.lock:
                    op.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return False

            def get_jwt_config(self, grant, client=None):  # pragma: no cover - legacy
                return op._jwt_config()

            def resolve_client_private_key(self, client):
                key = op.misbehave.get("key", op.key)
                return KeySet([key])

            def get_client_algorithm(self, client):
                return op.misbehave.get("alg", "RS256")

            def get_encode_header(self, client):
                header = {"alg": self.get_client_algorithm(client)}
                key = op.misbehave.get("key", op.key)
                header["kid"] = op.misbehave.get("kid", key.kid)
                return header

            def get_client_claims(self, client):
                now = int(time.time())
                claims = {"iss": op.misbehave.get("iss", op.url),
                          "aud": op.misbehave.get("aud", [client.get_client_id()]),
                          "exp": now + op.misbehave.get("lifetime", 300)}
                return claims

            def get_authorization_code_claims(self, authorization_code):
                claims = super().get_authorization_code_claims(authorization_code)
                if "nonce" in op.misbehave:
                    claims["nonce"] = op.misbehave["nonce"]
                return claims

            def generate_user_info(self, user, scope):
                return UserInfo(**user)

        def query_client(client_id):
            return op.client if client_id == op.client.client_id else None

        server = AuthorizationServer(app, query_client=query_client,
                                     save_token=lambda token, req: None)
        server.register_grant(CodeGrant, [IdToken(require_nonce=True),
                                          CodeChallenge(required=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": op.misbehave.get("discovery_issuer", op.url),
                "authorization_endpoint": op.url + "/authorize",
                "token_endpoint": op.url + "/token",
                "jwks_uri": op.url + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            })

        @app.get("/jwks")
        def jwks():
            keys = [op.key, *op.extra_keys]
            return jsonify({"keys": [k.as_dict(private=False) for k in keys]})

        @app.get("/authorize")
        def authorize():
            if op.accounts:  # a login page first, then back here with the cookie
                user = op._signed_in.get(request.cookies.get("op_session", ""))
                if user is None:
                    return op._login_page(request.query_string.decode("ascii"), "")
            else:  # signed in already as op.user
                user = dict(op.user)
            # consent is given at once
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(grant=grant, grant_user=user)

        @app.post("/login")
        def login():
            name, password = request.form.get("username", ""), request.form.get("password", "")
            then = request.form.get("next", "")
            known = op.accounts.get(name)
            if known is None or not secrets.compare_digest(known[0], password):
                return op._login_page(then, "wrong username or password"), 401
            session = secrets.token_urlsafe(16)
            op._signed_in[session] = dict(known[1])
            resp = redirect("/authorize?" + then, 302)
            resp.set_cookie("op_session", session, httponly=True, samesite="Lax")
            return resp

        @app.post("/token")
        def token():
            with op.lock:
                op.token_requests += 1
            return server.create_token_response()

        return app

    @staticmethod
    def _login_page(then: str, error: str):
        from html import escape

        return (f"<!doctype html><title>Test provider</title><h1>Test provider sign-in</h1>"
                f"<p role=alert>{escape(error)}</p>"
                f"<form method=post action=/login><input type=hidden name=next"
                f" value=\"{escape(then)}\"><label>Username <input name=username></label>"
                f"<label>Password <input type=password name=password></label>"
                f"<button type=submit>Log in at the provider</button></form>")

    def _jwt_config(self) -> dict:  # pragma: no cover - only for Authlib's legacy path
        return {"key": self.key, "alg": "RS256", "iss": self.url, "exp": 300}
