"""OpenID Connect login: the authorization code flow with PKCE, ``state`` and ``nonce``.

Providers are declared in the setting ``oidc_providers`` (name -> issuer, client_id,
scopes, username_claim, label...), their client secrets in the secret setting
``oidc_client_secrets`` (name -> secret). Each provider's endpoints come from its
discovery document, ``<issuer>/.well-known/openid-configuration`` (fetched on first
use, kept for ``discovery_ttl`` seconds); its ID-token keys from the ``jwks_uri`` it
names, cached and refetched on rotation (:mod:`.jwks`).

The flow, for a provider ``p``:

1. ``GET /auth/oidc/p`` (public) draws a ``state``, a ``nonce`` and a PKCE verifier,
   keeps them in Redis (encrypted, for ``oidc_state_ttl`` seconds, keyed by a hash of
   the state) together with a hash of a random value it also sets as a short-lived
   cookie on this browser, and redirects to the provider's authorization endpoint
   (``?format=json`` answers the URL in JSON instead). ``return_to``, a path on this
   site, is where the browser goes once signed in.
2. The provider sends the browser back to ``GET /auth/oidc/p/callback?code&state``.
   The state is taken out of Redis (once: a replayed callback finds nothing), must have
   been started for ``p`` and by this browser (the cookie: no one can push a code of
   their own into someone else's browser). The code is exchanged at the token
   endpoint with the client secret and the PKCE verifier; the ID token is verified:
   signature by a key of the provider's JWKS (never ``alg: none``, never a key the
   token brings), ``iss``, ``aud`` (the client id; ``azp`` when several), ``exp``,
   ``iat`` and the ``nonce`` of step 1.
3. The identity (issuer + ``sub``) gets its account as :mod:`.provision` says
   (account_policy), and an ordinary apicrud session starts: the body and cookie of
   ``POST /auth`` (201), or a 303 to ``return_to`` with the cookie.

A signed-in user links another provider to their account with
``POST /auth/oidc/p/link``: it answers the authorization URL; the callback then links
the identity to that account instead of finding one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apicrud import redis_keys
from apicrud.auth.external.bearer import (
    SIGNING_ALGORITHMS,
    check_claims,
    check_signature,
    read_unverified,
)
from apicrud.auth.external.jwks import KeySource, KeysUnavailable, fetch_json
from apicrud.auth.external.provision import (
    account_for_identity,
    require_link_model,
    session_reply,
)
from apicrud.context import Reply, RequestContext
from apicrud.crypto import AESEncrypt, DecryptError, constant_time_equals, token_hash
from apicrud.errors import BadRequest, NotFound, ServiceUnavailable, StartupError, Unauthorized
from apicrud.i18n import N_

if TYPE_CHECKING:
    from redis import Redis
    from werkzeug.datastructures import Headers

    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services

__all__ = ["Provider", "OidcController", "parse_providers", "init_app"]

log = logging.getLogger("apicrud.auth")

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PROVIDER_KEYS = {"issuer", "client_id", "scopes", "username_claim", "label", "leeway",
                  "timeout", "discovery_ttl", "jwks_refetch_interval", "algorithms"}
_STATE_PREFIX = redis_keys.prefix("oidc", "state")
_BROWSER_COOKIE_SUFFIX = "_oidc"


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Provider:
    """One OpenID provider of ``oidc_providers``; its discovery document is read lazily."""

    name: str
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    username_claim: str = "preferred_username"
    label: str = ""
    leeway: int = 0
    timeout: float = 5
    discovery_ttl: float = 3600
    jwks_refetch_interval: float = 30
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    _meta: dict[str, Any] | None = field(default=None, repr=False)
    _meta_at: float = field(default=float("-inf"), repr=False)
    _keys: KeySource | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def metadata(self) -> dict[str, Any]:
        """The discovery document (checked: same issuer, the endpoints the flow needs).

        :raises ServiceUnavailable: it cannot be fetched or is unusable
        """
        with self._lock:
            now = time.monotonic()
            if self._meta is not None and now - self._meta_at < self.discovery_ttl:
                return self._meta
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                doc = fetch_json(url, self.timeout)
            except KeysUnavailable as exc:
                if self._meta is not None:  # keep what worked
                    log.warning("oidc discovery of %s failed: %s", self.name, exc)
                    return self._meta
                raise ServiceUnavailable(N_("the OpenID provider %(provider)s cannot be reached",
                                            provider=self.name)) from None
            problem = self._check_metadata(doc)
            if problem:
                log.error("oidc provider %s: %s", self.name, problem)
                raise ServiceUnavailable(N_("the OpenID provider %(provider)s is misconfigured: "
                                            "%(problem)s", provider=self.name, problem=problem))
            if self._keys is None or self._keys.jwks_url != doc["jwks_uri"]:
                self._keys = KeySource(self.issuer, jwks_url=doc["jwks_uri"],
                                       refetch_interval=self.jwks_refetch_interval,
                                       timeout=self.timeout)
            self._meta, self._meta_at = doc, now
            return doc

    def _check_metadata(self, doc: Any) -> str | None:
        if not isinstance(doc, dict):
            return "discovery document is not an object"
        if doc.get("issuer") != self.issuer:
            return f"discovery names issuer {doc.get('issuer')!r}, not {self.issuer!r}"
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                return f"discovery lacks {key}"
        return None

    @property
    def keys(self) -> KeySource:
        self.metadata()  # sets _keys, or raises
        if self._keys is None:  # pragma: no cover - metadata() always sets it
            raise ServiceUnavailable(N_("the OpenID provider %(provider)s has no keys",
                                        provider=self.name))
        return self._keys

    def token_algorithms(self) -> tuple[str, ...]:
        """The ID-token algorithms accepted: the provider's (discovery) among ours."""
        offered = self.metadata().get("id_token_signing_alg_values_supported")
        if isinstance(offered, list):
            return tuple(a for a in self.algorithms if a in offered) or ("RS256",)
        return self.algorithms


def parse_providers(config: Mapping[str, Any], secrets_: Mapping[str, Any]) -> dict[str, Provider]:
    """The ``oidc_providers`` setting as :class:`Provider` entries.

    :raises StartupError: lists every bad entry
    """
    out: dict[str, Provider] = {}
    problems: list[str] = []
    for name, entry in (config or {}).items():
        where = f"oidc_providers[{name!r}]"
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            problems.append(f"{where}: name must match {NAME_RE.pattern}")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        unknown = sorted(set(entry) - _PROVIDER_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(unknown)}")
        issuer, client_id = entry.get("issuer"), entry.get("client_id")
        if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
            problems.append(f"{where}: issuer must be an http(s) URL")
        if not isinstance(client_id, str) or not client_id:
            problems.append(f"{where}: client_id is required")
        secret = (secrets_ or {}).get(name)
        if not isinstance(secret, str) or not secret:
            problems.append(f"{where}: no client secret in oidc_client_secrets[{name!r}]")
        scopes = tuple(entry.get("scopes", Provider.scopes))
        if "openid" not in scopes or not all(isinstance(s, str) and s for s in scopes):
            problems.append(f"{where}: scopes must be a list of names including openid")
        algorithms = tuple(entry.get("algorithms", Provider.algorithms))
        if not algorithms or not set(algorithms) <= SIGNING_ALGORITHMS:
            problems.append(f"{where}: algorithms must be among "
                            f"{', '.join(sorted(SIGNING_ALGORITHMS))}")
        if problems:
            continue
        out[name] = Provider(
            name, str(issuer), str(client_id), str(secret), scopes,
            str(entry.get("username_claim", "preferred_username")),
            str(entry.get("label", name)), int(entry.get("leeway", 0)),
            float(entry.get("timeout", 5)), float(entry.get("discovery_ttl", 3600)),
            float(entry.get("jwks_refetch_interval", 30)), algorithms)
    if problems:
        raise StartupError(problems)
    return out


def _safe_return_to(value: str | None) -> str | None:
    """A path on this site (no scheme, no host, no ``//``, no backslash), or None."""
    if not value:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value or \
            any(ord(c) < 33 for c in value) or len(value) > 512:
        raise BadRequest(N_("return_to: must be a path on this site"),
                         errors={"return_to": N_("must be a path on this site")})
    return value


class StateStore:
    """Flow state in Redis: encrypted, keyed by a hash of the state, taken out once."""

    def __init__(self, redis: Redis, secret_key: str, ttl: int) -> None:
        self.redis = redis
        self.ttl = int(ttl)
        self._cipher = AESEncrypt(secret_key, context="oidc-state")

    def put(self, data: dict[str, Any]) -> str:
        state = secrets.token_urlsafe(32)
        self.redis.set(_STATE_PREFIX + token_hash(state),
                       self._cipher.encrypt(json.dumps(data)), ex=self.ttl)
        return state

    def take(self, state: str) -> dict[str, Any] | None:
        """The data kept for ``state``, deleting it in the same step; None if unknown."""
        if not state or len(state) > 128:
            return None
        key = _STATE_PREFIX + token_hash(state)
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(key)
        pipe.delete(key)
        raw, deleted = pipe.execute()
        if raw is None or not deleted:
            return None
        try:
            data = json.loads(self._cipher.decrypt(raw))
        except (DecryptError, ValueError):
            return None
        return data if isinstance(data, dict) else None


class OidcController:
    """``/auth/methods`` and ``/auth/oidc/{provider}...`` (see the module docstring)."""

    operations = ("methods", "start", "link", "callback")

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.states = StateStore(services.redis.client, services.settings.secret_key,
                                 services.settings.oidc_state_ttl)

    @property
    def providers(self) -> dict[str, Provider]:
        return providers_of(self.services)

    # -- helpers ------------------------------------------------------------------------
    def _provider(self, ctx: RequestContext) -> Provider:
        provider = self.providers.get(ctx.params.get("provider") or "")
        if provider is None or "oidc" not in self.settings.auth_methods:
            raise NotFound(N_("no such OpenID provider"))
        return provider

    def _base(self, ctx: RequestContext) -> str:
        base = self.settings.public_url.rstrip("/")
        if not base:
            host = ctx.headers.get("Host") or f"{self.settings.host}:{self.settings.port}"
            base = f"{ctx.scheme}://{host}"
        return base + self.services.base_url

    def _redirect_uri(self, ctx: RequestContext, provider: Provider) -> str:
        return f"{self._base(ctx)}/auth/oidc/{provider.name}/callback"

    def _cookie_name(self) -> str:
        return self.settings.cookie_name + _BROWSER_COOKIE_SUFFIX

    def _authorization(self, ctx: RequestContext, provider: Provider,
                       link_uid: str | None) -> tuple[str, dict[str, Any]]:
        meta = provider.metadata()
        browser = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        redirect_uri = self._redirect_uri(ctx, provider)
        state = self.states.put({
            "provider": provider.name, "nonce": nonce, "verifier": verifier,
            "browser": token_hash(browser), "redirect_uri": redirect_uri,
            "return_to": _safe_return_to(ctx.params.get("return_to")),
            "link_uid": link_uid})
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": provider.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(provider.scopes),
            "state": state, "nonce": nonce, "code_challenge": _pkce_challenge(verifier),
            "code_challenge_method": "S256"})
        endpoint = meta["authorization_endpoint"]
        url = endpoint + ("&" if "?" in endpoint else "?") + query
        cookie = {"key": self._cookie_name(), "value": browser,
                  "max_age": self.states.ttl, "httponly": True, "samesite": "Lax",
                  "secure": ctx.scheme == "https",
                  "path": f"{self.services.base_url}/auth/oidc/"}
        return url, cookie

    # -- operations ---------------------------------------------------------------------
    def methods(self, ctx: RequestContext) -> Reply:
        """``GET /auth/methods``: the login methods enabled, and the OpenID providers."""
        enabled = list(self.settings.auth_methods)
        configured = {"oidc": bool(self.providers), "jwt": bool(self.settings.jwt_issuers),
                      "ldap": bool(self.services.ldap)}
        methods = [m for m in enabled if m == "password" or configured.get(m)]
        providers = [{"name": p.name, "label": p.label,
                      "login_url": f"{self.services.base_url}/auth/oidc/{p.name}"}
                     for p in self.providers.values()] if "oidc" in methods else []
        return Reply({"methods": methods, "providers": providers}, 200)

    def start(self, ctx: RequestContext) -> Reply:
        """``GET /auth/oidc/{provider}``: off to the provider (302), or its URL in JSON."""
        provider = self._provider(ctx)
        url, cookie = self._authorization(ctx, provider, None)
        if ctx.params.get("format") == "json":
            return Reply({"authorization_url": url}, 200, {"Cache-Control": "no-store"},
                         cookies=[cookie])
        return Reply(None, 302, {"Location": url, "Cache-Control": "no-store"},
                     cookies=[cookie])

    def link(self, ctx: RequestContext) -> Reply:
        """``POST /auth/oidc/{provider}/link``: the URL that links this provider to the
        caller's account (a session is needed; keys and external tokens may not)."""
        principal = ctx.principal
        if not principal.authenticated or principal.method not in ("bearer", "cookie", "basic"):
            raise Unauthorized(N_("linking a provider needs a signed-in session"))
        provider = self._provider(ctx)
        url, cookie = self._authorization(ctx, provider, principal.uid)
        return Reply({"authorization_url": url}, 200, {"Cache-Control": "no-store"},
                     cookies=[cookie])

    def callback(self, ctx: RequestContext) -> Reply:
        """``GET /auth/oidc/{provider}/callback``: verify, find the account, sign in."""
        provider = self._provider(ctx)
        params = ctx.params
        data = self.states.take(params.get("state") or "")
        if data is None or data.get("provider") != provider.name:
            raise Unauthorized(N_("unknown, expired or already used state"), slug="oidc-state")
        browser = _cookie(ctx.headers, self._cookie_name())
        if not browser or not constant_time_equals(token_hash(browser), data["browser"]):
            raise Unauthorized(N_("this sign-in was not started by this browser"),
                               slug="oidc-state")
        if params.get("error"):
            error = re.sub(r"[^A-Za-z0-9_ .-]", "", str(params["error"]))[:64]
            raise Unauthorized(N_("the provider refused the sign-in: %(error)s", error=error),
                               slug="oidc-refused")
        code = params.get("code")
        if not code:
            raise BadRequest(N_("code: missing"), errors={"code": N_("is required")})
        tokens = self._exchange(provider, code, data)
        claims = self._verify_id_token(provider, tokens.get("id_token"), data["nonce"])
        username = claims.get(provider.username_claim)
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        verified = claims.get("email_verified") in (True, "true")
        name = claims.get("name") if isinstance(claims.get("name"), str) else None
        account = account_for_identity(
            self.services, ctx.db, provider=provider.name, issuer=provider.issuer,
            subject=str(claims["sub"]), username=username if isinstance(username, str)
            else None, email=email, email_verified=verified, name=name,
            link_uid=data.get("link_uid"))
        clear = {"key": self._cookie_name(), "value": "", "max_age": 0, "httponly": True,
                 "samesite": "Lax", "path": f"{self.services.base_url}/auth/oidc/"}
        return session_reply(self.services, ctx, account, method=f"oidc:{provider.name}",
                             location=data.get("return_to"), extra_cookies=[clear])

    def _exchange(self, provider: Provider, code: str, data: dict[str, Any]) -> dict:
        """The token response for ``code`` (client_secret_basic, PKCE verifier)."""
        meta = provider.metadata()
        form = urllib.parse.urlencode({
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": data["redirect_uri"], "code_verifier": data["verifier"],
            "client_id": provider.client_id}).encode()
        quote = urllib.parse.quote
        basic = base64.b64encode(f"{quote(provider.client_id, safe='')}:"
                                 f"{quote(provider.client_secret, safe='')}".encode()).decode()
        req = urllib.request.Request(meta["token_endpoint"], data=form, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json", "Authorization": f"Basic {basic}"})
        try:
            # the endpoint comes from the provider's checked discovery document (http(s))
            with urllib.request.urlopen(req, timeout=provider.timeout) as resp:  # nosec B310 # http(s) only
                body = resp.read(512 * 1024)
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = str(json.loads(exc.read(4096)).get("error", ""))
            except (ValueError, AttributeError, OSError):
                pass
            detail = re.sub(r"[^A-Za-z0-9_ .-]", "", detail)[:64]
            log.info("oidc code exchange refused", extra={
                "event": "oidc_refused", "provider": provider.name, "error": detail})
            raise Unauthorized(N_("the provider did not accept the authorization code (%(error)s)",
                                  error=detail) if detail else
                               N_("the provider did not accept the authorization code"),
                               slug="oidc-refused") from None
        except (urllib.error.URLError, OSError):
            raise ServiceUnavailable(N_("the OpenID provider %(provider)s cannot be reached",
                                        provider=provider.name)) from None
        try:
            tokens = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            tokens = None
        if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            raise Unauthorized(N_("the provider answered no ID token"), slug="oidc-refused")
        return tokens

    def _verify_id_token(self, provider: Provider, token: Any, nonce: str) -> dict[str, Any]:
        header, _ = read_unverified(token)
        claims = check_signature(token, header, provider.keys, provider.token_algorithms())
        check_claims(claims, provider.issuer, [provider.client_id], provider.leeway,
                     sub={"essential": True}, iat={"essential": True})
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != provider.client_id:
            raise Unauthorized(N_("ID token names other audiences and is not for this client "
                                  "(azp)"), slug="invalid-token")
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not constant_time_equals(sent, nonce):
            raise Unauthorized(N_("ID token nonce does not match this sign-in"),
                               slug="invalid-token")
        if not isinstance(claims.get("sub"), str) or len(claims["sub"]) > 255:
            raise Unauthorized(N_("ID token has no usable sub"), slug="invalid-token")
        return claims


def _cookie(headers: Headers | Mapping[str, str], name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    raw = headers.get("Cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def providers_of(services: Services) -> dict[str, Provider]:
    """The providers of ``oidc_providers``, read once per process (see :func:`init_app`)."""
    providers = services.oidc_providers
    if providers is None:
        providers = parse_providers(services.settings.oidc_providers,
                                    services.settings.oidc_client_secrets)
        if providers:
            require_link_model(services, "setting oidc_providers")
        services.oidc_providers = providers
    return providers


def init_app(services: Services) -> None:
    """Read ``oidc_providers`` at start-up: a bad entry stops the start."""
    providers_of(services)
