"""``Authorization: Bearer <JWT>`` from issuers named in the setting ``jwt_issuers``.

A request carrying a JWT of a trusted issuer (an identity provider, an API gateway)
authenticates without an apicrud session. The token must be signed with one of the
issuer's keys (a JWKS URL, cached and refetched on key rotation, or static keys: see
:mod:`.jwks`) with an asymmetric algorithm of the issuer's ``algorithms``; it must name
the issuer (``iss``), carry an ``aud`` the issuer entry accepts and an ``exp`` still
ahead (within ``leeway`` seconds). ``alg: none`` and symmetric algorithms are refused
whatever the settings say.

The token names an apicrud account, by the claim ``username_claim`` (an account name)
or ``uid_claim`` (a person id); the account must exist and be live, so suspending it
ends its tokens too. The caller is an admin when ``admin_claim`` is set and that claim
(a string or a list) holds ``admin_value``; without ``admin_claim`` the account's own
admin flag counts. Scopes in ``scope_claim`` (a space-separated string or a list)
narrow the caller as an API key's scopes do (see :mod:`apicrud.auth.apikeys`); a token
without that claim is not narrowed.

Every refusal is a 401 problem whose detail says what was wrong (unknown issuer,
expired, wrong audience, bad signature, unknown key id...) and a
``WWW-Authenticate: Bearer error="invalid_token"`` header (RFC 6750). When an issuer's
keys cannot be fetched and none are cached, the answer is 503.

Session tokens never contain dots, so a JWT is told apart by its shape alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.util import urlsafe_b64decode
from sqlalchemy import select

from apicrud.auth.external.jwks import KeySource, KeysUnavailable, UnknownKey
from apicrud.auth.principal import Principal
from apicrud.errors import ServiceUnavailable, StartupError, Unauthorized
from apicrud.i18n import N_

if TYPE_CHECKING:
    from flask import Request

    from apicrud.services import Services

__all__ = ["Issuer", "JwtVerifier", "parse_issuers", "looks_like_jwt", "init_app",
           "SIGNING_ALGORITHMS", "read_unverified", "check_signature", "check_claims"]

log = logging.getLogger("apicrud.auth")

#: asymmetric JWS algorithms an issuer may be configured with (never none, never HS*)
SIGNING_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                "ES256", "ES384", "ES512", "EdDSA", "Ed25519"})
MAX_TOKEN = 8192
_JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_CLAIM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_:./-]{0,127}$")
_ISSUER_KEYS = {"jwks_url", "keys", "audience", "leeway", "algorithms", "uid_claim",
                "username_claim", "admin_claim", "admin_value", "scope_claim",
                "jwks_ttl", "jwks_refetch_interval", "timeout"}


def looks_like_jwt(value: str) -> bool:
    """Whether a bearer credential has the shape of a compact JWS (three parts)."""
    return bool(_JWT_RE.fullmatch(value))


def _unauthorized(detail: str) -> Unauthorized:
    return Unauthorized(detail, slug="invalid-token", headers={
        "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'})


@dataclass(frozen=True)
class Issuer:
    """One trusted issuer of bearer JWTs (an entry of ``jwt_issuers``)."""

    issuer: str
    keys: KeySource
    audiences: tuple[str, ...]
    leeway: int = 0
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    uid_claim: str | None = None
    username_claim: str | None = None
    admin_claim: str | None = None
    admin_value: str = "admin"
    scope_claim: str | None = "scope"


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def parse_issuers(config: Mapping[str, Any]) -> dict[str, Issuer]:
    """The ``jwt_issuers`` setting as :class:`Issuer` entries.

    :raises StartupError: lists every bad entry
    """
    out: dict[str, Issuer] = {}
    problems: list[str] = []
    for name, entry in (config or {}).items():
        where = f"jwt_issuers[{name!r}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        unknown = sorted(set(entry) - _ISSUER_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(unknown)}")
        audiences = _strings(entry.get("audience"))
        if not audiences:
            problems.append(f"{where}: audience (a string or a list of strings) is required")
        algorithms = _strings(entry.get("algorithms", Issuer.algorithms))
        if not algorithms or not set(algorithms) <= SIGNING_ALGORITHMS:
            problems.append(f"{where}: algorithms must be among "
                            f"{', '.join(sorted(SIGNING_ALGORITHMS))}")
        claims = {k: entry.get(k) for k in ("uid_claim", "username_claim", "admin_claim")}
        scope_claim = entry.get("scope_claim", "scope")
        for key, value in [*claims.items(), ("scope_claim", scope_claim)]:
            if value is not None and not (isinstance(value, str) and _CLAIM_RE.fullmatch(value)):
                problems.append(f"{where}: {key} must be a claim name")
        if (claims["uid_claim"] is None) == (claims["username_claim"] is None):
            problems.append(f"{where}: give exactly one of uid_claim and username_claim")
        leeway = entry.get("leeway", 0)
        if not isinstance(leeway, int) or isinstance(leeway, bool) or not 0 <= leeway <= 600:
            problems.append(f"{where}: leeway must be 0 to 600 seconds")
        try:
            keys = entry.get("keys")
            source = KeySource(name, jwks_url=entry.get("jwks_url"),
                               keys=list(keys) if keys is not None else None,
                               ttl=float(entry.get("jwks_ttl", 3600)),
                               refetch_interval=float(entry.get("jwks_refetch_interval", 30)),
                               timeout=float(entry.get("timeout", 5)))
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        if problems:
            continue
        out[name] = Issuer(name, source, audiences or (), leeway, algorithms or (),
                           claims["uid_claim"], claims["username_claim"],
                           claims["admin_claim"], str(entry.get("admin_value", "admin")),
                           scope_claim)
    if problems:
        raise StartupError(problems)
    return out


def _segment_json(segment: bytes | str) -> Any:
    try:
        return json.loads(urlsafe_b64decode(segment.encode() if isinstance(segment, str)
                                            else segment))
    except (ValueError, UnicodeDecodeError, TypeError):
        return None


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a compact JWS, before any check of its signature.

    :raises Unauthorized: too long, malformed, ``alg: none``, or a header asking to
        fetch keys from where the token says (``jku``, ``x5u``, an embedded ``jwk``)
    """
    if len(token) > MAX_TOKEN or not looks_like_jwt(token):
        raise _unauthorized(N_("malformed or too long token"))
    parts = token.split(".")
    header = _segment_json(parts[0])
    if not isinstance(header, dict):
        raise _unauthorized(N_("malformed token header"))
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise _unauthorized(N_("unsigned tokens (alg none) are not accepted"))
    if "crit" in header or "jku" in header or "x5u" in header or "jwk" in header:
        raise _unauthorized(N_("token header names keys or extensions this service "
                               "does not follow"))
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _unauthorized(N_("malformed key id"))
    payload = _segment_json(parts[1])
    if not isinstance(payload, dict):
        raise _unauthorized(N_("malformed token payload"))
    return header, payload


def check_signature(token: str, header: Mapping[str, Any], keys: KeySource,
                    algorithms: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The claims of ``token`` once its signature checks out with one of ``keys``.

    :raises Unauthorized: algorithm not accepted, unknown kid, bad signature
    :raises ServiceUnavailable: the keys cannot be fetched
    """
    alg = header["alg"]
    if alg not in algorithms or alg not in SIGNING_ALGORITHMS:
        raise _unauthorized(N_("algorithm %(alg)s is not accepted for this issuer", alg=alg))
    try:
        key = keys.key_for(header.get("kid"))
    except UnknownKey:
        raise _unauthorized(N_("token signed with a key the issuer does not publish "
                               "(unknown kid)")) from None
    except KeysUnavailable:
        raise ServiceUnavailable(N_("the token issuer's keys cannot be fetched")) from None
    try:
        decoded = jwt.decode(token, key, algorithms=[alg])
    except BadSignatureError:
        raise _unauthorized(N_("token signature is invalid")) from None
    except JoseError as exc:
        raise _unauthorized(N_("token cannot be verified: %(error)s", error=exc.error)) from None
    return dict(decoded.claims)


def check_claims(claims: Mapping[str, Any], issuer: str, audiences: list[str],
                 leeway: int, **more: Any) -> None:
    """``iss``, ``aud`` (one of ``audiences``), ``exp``, ``nbf``, ``iat`` and any
    ``more`` claim options (joserfc's ClaimsOption), within ``leeway`` seconds.

    :raises Unauthorized: naming the claim at fault
    """
    registry = jwt.JWTClaimsRegistry(
        leeway=leeway, iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": list(audiences)}, exp={"essential": True},
        **more)
    try:
        registry.validate(dict(claims))
    except ExpiredTokenError:
        raise _unauthorized(N_("token has expired")) from None
    except MissingClaimError as exc:
        raise _unauthorized(N_("token lacks the claim %(claim)s", claim=exc.claim)) from None
    except InvalidClaimError as exc:
        if exc.claim == "aud":
            raise _unauthorized(N_("token is not meant for this service (aud)")) from None
        raise _unauthorized(N_("token claim %(claim)s is invalid", claim=exc.claim)) from None


class JwtVerifier:
    """Checks bearer JWTs against the trusted issuers (see the module docstring)."""

    def __init__(self, issuers: Mapping[str, Issuer]) -> None:
        self.issuers = dict(issuers)

    def verify(self, token: str) -> tuple[Issuer, dict[str, Any]]:
        """(the issuer, the verified claims).

        :raises Unauthorized: any fault of the token
        :raises ServiceUnavailable: the issuer's keys cannot be had
        """
        header, payload = read_unverified(token)
        iss = payload.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise _unauthorized(N_("token issuer is not trusted"))
        claims = check_signature(token, header, issuer.keys, issuer.algorithms)
        check_claims(claims, issuer.issuer, list(issuer.audiences), issuer.leeway)
        return issuer, claims


def principal_for(services: Services, issuer: Issuer, claims: Mapping[str, Any]) -> Principal:
    """The live account a verified token names, as a Principal.

    :raises Unauthorized: the claim is missing or names no live account
    """
    claim = issuer.uid_claim or issuer.username_claim
    value = claims.get(claim) if claim else None
    if not isinstance(value, str) or not value or len(value) > 255:
        raise _unauthorized(N_("token lacks the claim %(claim)s", claim=claim))
    models = services.models
    account_model, person_model = models.Account, models.Person
    column = account_model.uid if issuer.uid_claim else account_model.name
    with services.db.session() as db:
        account = db.execute(select(account_model).join(
            person_model, person_model.id == account_model.uid).where(
            column == value, account_model.status.in_(("active", "pending")),
            person_model.status == "active")).scalar_one_or_none()
        if account is None:
            raise _unauthorized(N_("no active account matches this token"))
        uid, account_id, name = account.uid, account.id, account.name
        is_admin, status = bool(account.is_admin), account.status
    if issuer.admin_claim:
        held = _strings(claims.get(issuer.admin_claim)) or ()
        is_admin = issuer.admin_value in held
    scopes = None
    if issuer.scope_claim and issuer.scope_claim in claims:
        raw = claims[issuer.scope_claim]
        names = raw.split() if isinstance(raw, str) else (_strings(raw) or ())
        scopes = frozenset(names)  # an empty set allows nothing, as it should
    return Principal(uid=uid, account_id=account_id, username=name, is_admin=is_admin,
                     status=status, method="jwt", scopes=scopes)


def init_app(services: Services) -> None:
    """Register the bearer-JWT authenticator (before the session authenticator)."""
    issuers = parse_issuers(services.settings.jwt_issuers)  # checked even when off
    verifier = JwtVerifier(issuers if "jwt" in services.settings.auth_methods else {})
    services.jwt_verifier = verifier

    def from_jwt(request: Request) -> Principal | None:
        auth = request.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not looks_like_jwt(value):
            return None
        issuer, claims = verifier.verify(value)
        principal = principal_for(services, issuer, claims)
        log.debug("bearer token accepted", extra={"event": "jwt_login", "uid": principal.uid})
        return principal

    services.pipeline.authenticators.append(from_jwt)
