"""Test-side token issuers: a JWKS served over HTTP on loopback, and tokens signed
with test keys (joserfc). The service under test only ever sees them over HTTP."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from joserfc.util import urlsafe_b64encode
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"})


def public_jwk(key) -> dict[str, Any]:
    return key.as_dict(private=False)


class JwksServer:
    """Serves ``/jwks/<name>``: the public keys in ``sets[name]``; counts the fetches."""

    def __init__(self) -> None:
        self.sets: dict[str, list] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.httpd = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"

    def url(self, name: str) -> str:
        return f"{self.base}/jwks/{name}"

    def _app(self, environ, start_response):
        req = Request(environ)
        name = req.path.rpartition("/")[2]
        with self.lock:
            keys = self.sets.get(name)
            self.hits[name] = self.hits.get(name, 0) + 1
        if keys is None:
            return Response("no such set", 404)(environ, start_response)
        body = json.dumps({"keys": [public_jwk(k) for k in keys]})
        return Response(body, 200, content_type="application/json")(environ, start_response)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sign(key, claims: dict[str, Any], alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, algorithms=[alg])


def unsigned(claims: dict[str, Any], **header: Any) -> str:
    """An ``alg: none`` token (no library signs these on purpose)."""
    head = urlsafe_b64encode(json.dumps({"alg": "none", **header}).encode()).decode()
    body = urlsafe_b64encode(json.dumps(claims).encode()).decode()
    return f"{head}.{body}."


def claims(iss: str, aud: str, sub: str, lifetime: int = 300, **more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + lifetime, **more}
