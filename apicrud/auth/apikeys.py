"""API keys: the ``X-API-KEY`` authenticator, the scope guard, and the ``apikey`` and
``scope`` resources.

A key reads ``<prefix>.<secret>``: ``ak`` plus 12 hex digits, a dot, then 43 URL-safe
characters (256 random bits). ``POST /apikey`` shows it once. The database keeps the
prefix (to find the row, and to show in lists) and ``hmac-sha256:<hex>``, an
HMAC-SHA256 of the whole key under a key derived from ``secret_key``. A fast keyed
hash is enough here: nobody can guess 256 random bits however fast the hash, unlike a
human password, which needs argon2. The price: changing ``secret_key`` invalidates every
API key, as it already ends every session and TOTP secret. Verification compares
hashes with :func:`hmac.compare_digest`, and computes one for unknown prefixes too.

A key acts as its owner, narrowed by its ``scopes``. A key without scopes may do what
its owner may; a key with scopes may only call operations that accept one of them:

- an operation lists the scopes that grant it in the spec, ``x-scopes: [metrics]``;
- without ``x-scopes`` it accepts ``<resource>:read`` (GET) or ``<resource>:write``
  (POST, PUT, PATCH, DELETE), e.g. ``list:read`` for ``GET /list``.

Any other call is a 403 naming the scopes that would have allowed it. Scope names must
exist in the ``scope`` resource (admins manage it) when a key is created or changed.
A key created by a scoped key gets no scope its creator lacks. Scopes bind public
operations too: there a scoped key acts as its owner only when its scopes accept the
operation; otherwise the request goes on as anonymous (the operation is open to
anyone), so a key limited to ``list:read`` can never register an administrator
through the public ``POST /account`` with its owner's rights.

``expires`` ends a key; ``DELETE /apikey/{id}`` revokes it at once and for good (it
also sets ``expires``). Revocation is final: the ``expires`` of a key that has ended
cannot be changed, and a deleted key cannot be restored from the trashcan. A key also
ends when its account is suspended or its person trashed. Either way the key gets 401,
as a wrong one does. ``last_used`` is written at most once a
minute per key, so a busy key does not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.auth.schemes import API_KEY_HEADER
from apicrud.context import Reply, RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.crypto import derive_key
from apicrud.db.base import naive_utc, utcnow
from apicrud.errors import BadRequest, Forbidden, StartupError, Unauthorized, required
from apicrud.i18n import N_

if TYPE_CHECKING:
    from flask import Request

    from apicrud.services import Services
    from apicrud.spec.operations import Operation

__all__ = ["ApiKeyController", "ScopeController", "KeyHasher", "operation_scopes",
           "init_app", "HEADER"]

log = logging.getLogger("apicrud.auth")

HEADER = API_KEY_HEADER  # the header schemes.py maps to the apiKey security scheme
HASH_SCHEME = "hmac-sha256"
PREFIX_RE = re.compile(r"^ak[0-9a-f]{12}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,31}$")
LAST_USED_EVERY = timedelta(seconds=60)
READ_METHODS = frozenset({"get", "head"})
_INVALID = N_("invalid, expired or revoked API key")


class KeyHasher:
    """Issues keys and checks them against stored hashes."""

    def __init__(self, secret_key: str) -> None:
        self._key = derive_key(secret_key, b"apicrud apikey")

    def digest(self, apikey: str) -> str:
        return f"{HASH_SCHEME}:" + hmac.new(self._key, apikey.encode(), hashlib.sha256) \
            .hexdigest()

    def issue(self) -> tuple[str, str, str]:
        """(prefix, the whole key to show once, its stored hash)."""
        prefix = "ak" + secrets.token_hex(6)
        apikey = f"{prefix}.{secrets.token_urlsafe(32)}"
        return prefix, apikey, self.digest(apikey)

    def verify(self, stored: str | None, apikey: str) -> bool:
        """Constant-time comparison; a missing row still costs one HMAC."""
        computed = self.digest(apikey)
        return hmac.compare_digest(computed, stored or "x" * len(computed)) and \
            stored is not None


def _split(raw: str) -> tuple[str, str]:
    prefix, sep, secret = raw.strip().partition(".")
    if not sep or not PREFIX_RE.fullmatch(prefix) or not SECRET_RE.fullmatch(secret):
        raise Unauthorized(_INVALID)
    return prefix, secret


def _scopes_of(record: Any) -> list[str]:
    try:
        value = json.loads(record.scopes) if record.scopes else []
    except ValueError:
        return []
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def authenticate_key(services: Services, hasher: KeyHasher, raw: str,
                     client_addr: str | None = None) -> Principal:
    """The owner of a valid key, narrowed to its scopes; 401 for anything else. A use
    is audited when ``last_used`` is written (at most once a minute per key)."""
    prefix, _ = _split(raw)
    models = services.models
    key_model, account_model, person_model = models.ApiKey, models.Account, models.Person
    with services.db.session() as db:
        # a suspended account or a trashed person ends its keys (see apicrud.auth.cutoff)
        row = db.execute(
            select(key_model, account_model)
            .join(account_model, account_model.uid == key_model.uid)
            .join(person_model, person_model.id == key_model.uid)
            .where(key_model.prefix == prefix, key_model.status == "active",
                   account_model.status == "active",
                   person_model.status == "active")).first()
        key, account = (row[0], row[1]) if row else (None, None)
        if not hasher.verify(key.hash if key else None, raw.strip()) or key is None or \
                account is None:  # (account is None only when key is)
            raise Unauthorized(_INVALID)
        now = utcnow()
        if key.expires is not None and key.expires <= now:
            raise Unauthorized(_INVALID)
        if key.last_used is None or now - key.last_used >= LAST_USED_EVERY:
            # a plain UPDATE: neither the row version (ETag) nor `modified` change for it
            db.execute(update(key_model).where(key_model.id == key.id)
                       .values(last_used=now, modified=key_model.modified))
            audit = services.audit
            if audit is not None:
                audit.record_on(db, "apikey", key.id, "use", uid=key.uid, method="apikey",
                                apikey_id=key.id, client_addr=client_addr)
            db.commit()
        scopes = _scopes_of(key)
        return Principal(uid=key.uid, account_id=account.id, username=account.name,
                         is_admin=bool(account.is_admin), status=account.status,
                         method="apikey", scopes=frozenset(scopes) if scopes else None,
                         apikey_id=key.id)


# -- scopes of operations --------------------------------------------------------------

def operation_scopes(operations: Iterable[Operation]) -> dict[str, frozenset[str]]:
    """operationId -> scopes that grant it; raise StartupError for a bad ``x-scopes``."""
    out: dict[str, frozenset[str]] = {}
    problems = []
    for op in operations:
        declared = op.extensions.get("x-scopes")
        if declared is None:
            kind = "read" if op.method.lower() in READ_METHODS else "write"
            out[op.operation_id] = frozenset({f"{op.resource}:{kind}"})
        elif isinstance(declared, list) and declared and \
                all(isinstance(s, str) and SCOPE_RE.fullmatch(s) for s in declared):
            out[op.operation_id] = frozenset(declared)
        else:
            problems.append(f"{op.method.upper()} {op.path}: x-scopes must be a non-empty "
                            f"list of scope names matching {SCOPE_RE.pattern}")
    if problems:
        raise StartupError(problems)
    return out


def init_app(services: Services) -> None:
    """Register the X-API-KEY authenticator (first) and the scope guard."""
    hasher = KeyHasher(services.settings.secret_key)
    needed = operation_scopes(services.decl.operations)

    def from_api_key(request: Request) -> Principal | None:
        raw = request.headers.get(HEADER)
        if raw is None:
            return None
        if len(raw) > 256:
            raise Unauthorized(_INVALID)
        return authenticate_key(services, hasher, raw, request.remote_addr)

    def scope_guard(ctx: RequestContext) -> None:
        held = ctx.principal.scopes
        if held is None:
            return
        accepted = needed.get(ctx.operation.operation_id, frozenset())
        if not accepted & held:
            if ctx.operation.public:
                # open to anyone: the key's owner's rights are not lent to it
                ctx.principal = ANONYMOUS
                return
            wanted = ", ".join(sorted(accepted))
            raise Forbidden(N_("this token lacks the scope for this operation: one of %(scopes)s",
                               scopes=wanted) if ctx.principal.method == "jwt" else
                            N_("this API key lacks the scope for this operation: one of %(scopes)s",
                               scopes=wanted),
                            slug="insufficient-scope")

    services.pipeline.authenticators.insert(0, from_api_key)
    services.pipeline.guards.append(scope_guard)
    services.apikey_hasher = hasher


# -- the apikey and scope resources ----------------------------------------------------

def _parse_time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = naive_utc(str(value))
    except (ValueError, OverflowError):  # OverflowError: beyond year 1..9999 in UTC
        raise BadRequest(N_("%(field)s: not an ISO 8601 date-time between years 1 and 9999",
                            field=field),
                         errors={field: N_("not an ISO 8601 date-time between years 1 and "
                                           "9999")}) from None
    return parsed


class ApiKeyController(BasicCRUD):
    """``apikey``: create shows the key once; scopes are checked against ``scope``."""

    def _check_scopes(self, ctx: RequestContext, scopes: Any) -> str | None:
        names = list(dict.fromkeys(scopes or []))
        held = ctx.principal.scopes
        if held is not None and (not names or not set(names) <= held):
            raise Forbidden(N_("a key may only hand on scopes it holds itself"),
                            errors={"scopes": N_("must be a non-empty subset of this key's")})
        if not names:
            return None
        scope = self.services.models.Scope
        found = set(ctx.db.execute(select(scope.name).where(
            scope.name.in_(names), scope.status == "active")).scalars())
        missing = [n for n in names if n not in found]
        if missing:
            absent = ", ".join(missing)
            raise BadRequest(N_("scopes: no such scope: %(names)s", names=absent),
                             errors={"scopes": N_("no such scope: %(names)s", names=absent)})
        return json.dumps(names)

    def before_create(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        data["scopes"] = self._check_scopes(ctx, data.get("scopes"))
        expires = _parse_time(data.get("expires"), "expires")
        if expires is not None and expires <= utcnow():
            raise BadRequest(N_("expires: must be in the future"),
                             errors={"expires": N_("must be in the future")})
        data["expires"] = expires
        prefix, apikey, digest = required(self.services.apikey_hasher, "apikey_hasher").issue()
        data.update(prefix=prefix, hash=digest)
        ctx.memo[("issued_apikey",)] = apikey  # shown once, by after_create
        return data

    def after_create(self, ctx: RequestContext, record: Any, reply: dict[str, Any]) -> None:
        reply["apikey"] = ctx.memo[("issued_apikey",)]
        log.info("api key created", extra={"event": "apikey_created", "uid": record.uid,
                                           "prefix": record.prefix})

    def create(self, ctx: RequestContext) -> Reply:
        reply = super().create(ctx)
        reply.headers["Cache-Control"] = "no-store"
        return reply

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        if "scopes" in changes:
            new = self._check_scopes(ctx, changes["scopes"])
            if new == record.scopes:
                changes.pop("scopes")
            else:
                changes["scopes"] = new
        if "expires" in changes:
            expires = _parse_time(changes["expires"], "expires")
            now = utcnow()
            if record.expires is not None and record.expires <= now:
                # revocation is final: an ended key is never brought back
                raise Forbidden(N_("expires: this key has expired or was revoked; create a new "
                                   "one"), slug="apikey-ended",
                                errors={"expires": N_("the key has ended and stays ended")})
            changes["expires"] = expires
        return changes

    def before_restore(self, ctx: RequestContext, record: Any) -> None:
        """A deleted key was revoked, and revocation is final: no restore."""
        raise Forbidden(N_("a revoked API key cannot be restored; create a new one"),
                        slug="apikey-ended")

    def before_delete(self, ctx: RequestContext, record: Any) -> None:
        now = utcnow()
        if record.expires is None or record.expires > now:
            record.expires = now
        log.info("api key revoked", extra={"event": "apikey_revoked", "uid": record.uid,
                                           "prefix": record.prefix})

    def serialize(self, ctx: RequestContext, record: Any) -> dict[str, Any]:
        out = super().serialize(ctx, record)
        if "scopes" in out:
            out["scopes"] = _scopes_of(record)
        return out


class ScopeController(BasicCRUD):
    """``scope``: admins name the capabilities keys may be narrowed to; names are fixed
    once created, since keys refer to them by name."""

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        if "name" in changes:
            raise BadRequest(N_("name: a scope cannot be renamed (keys refer to it by name)"),
                             errors={"name": N_("cannot be changed")})
        return changes
