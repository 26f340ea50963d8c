"""LDAP login: ``POST /auth`` with ``"method": "ldap"`` binds to a directory.

The setting ``ldap`` (empty: off) names the directory and how a user is found:

- ``url``: ``ldap://host:389`` or ``ldaps://host:636``; ``start_tls: true`` upgrades a
  plain connection first; ``ca_file`` is the PEM of CAs trusted for the server's
  certificate (TLS is always verified); ``timeout`` bounds connecting and every answer
  (seconds), so an unreachable directory is a quick 503, not a hanging request.
- either ``bind_dn_template`` (``uid={username},ou=people,dc=example,dc=org``; the
  name is escaped as an RDN value, and for Active Directory ``{username}@corp.example``
  works as a user principal name) or search-then-bind: ``search_base`` and
  ``search_filter`` (``(sAMAccountName={username})``, escaped as a filter value), found
  by the service account ``bind_dn`` with the secret setting ``ldap_bind_password``
  (anonymous search without it).
- ``username_attribute``, ``email_attribute``, ``name_attribute``, ``id_attribute``
  (stable identifier: ``entryUUID`` for OpenLDAP, ``objectGUID`` for AD).
- ``admin_group``: the DN of a group (``member`` or ``uniqueMember``) whose members
  are administrators; checked at each login and written to the account's admin flag.
- ``trust_email`` (default true): the directory's ``mail`` counts as a verified
  address (to find the existing account under ``account_policy: closed``).

The account is found or made as for OpenID Connect (:mod:`.provision`): by a link to
the directory identity, by verified email, or as ``account_policy`` allows. Wrong
password and unknown user give the same 401, and count toward the same lockout as
password logins. An empty password is refused before any bind (an LDAP bind with an
empty password is an anonymous bind, which succeeds).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apicrud.auth.external.provision import account_for_identity, require_link_model, session_reply
from apicrud.context import Reply, RequestContext
from apicrud.errors import NotFound, ServiceUnavailable, StartupError, Unauthorized, required
from apicrud.i18n import N_

if TYPE_CHECKING:
    from ldap3 import Connection, Server

    from apicrud.auth.controller import AuthController
    from apicrud.services import Services

__all__ = ["LdapDirectory", "parse_ldap", "ldap_login", "init_app"]

log = logging.getLogger("apicrud.auth")

_KEYS = {"url", "start_tls", "ca_file", "timeout", "bind_dn_template", "search_base",
         "search_filter", "bind_dn", "username_attribute", "email_attribute",
         "name_attribute", "id_attribute", "admin_group", "trust_email"}
_INVALID = N_("invalid username or password")


class DirectoryDown(Exception):
    """The directory cannot be reached or answered nothing usable in time."""


@dataclass(frozen=True)
class LdapDirectory:
    """The directory of the ``ldap`` setting, and the bind that checks a password."""

    url: str
    start_tls: bool = False
    ca_file: str | None = None
    timeout: float = 5
    bind_dn_template: str | None = None
    search_base: str | None = None
    search_filter: str | None = None
    bind_dn: str | None = None
    bind_password: str | None = None
    username_attribute: str = "uid"
    email_attribute: str = "mail"
    name_attribute: str = "cn"
    id_attribute: str = "entryUUID"
    admin_group: str | None = None
    trust_email: bool = True

    def _server(self) -> Server:
        from ldap3 import NONE, Server, Tls

        tls = None
        if self.url.lower().startswith("ldaps://") or self.start_tls:
            tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_file,
                      version=ssl.PROTOCOL_TLS_CLIENT)
        return Server(self.url, use_ssl=self.url.lower().startswith("ldaps://"), tls=tls,
                      connect_timeout=self.timeout, get_info=NONE)  # no schema read

    def _connect(self, user: str | None, password: str | None) -> Connection | None:
        """A bound connection; None when the directory refuses the credentials.

        :raises DirectoryDown: unreachable, TLS failure, timeout
        """
        from ldap3 import Connection
        from ldap3.core.exceptions import (
            LDAPException,
            LDAPInvalidCredentialsResult,
            LDAPSocketOpenError,
            LDAPStartTLSError,
        )

        conn = Connection(self._server(), user=user, password=password,
                          receive_timeout=self.timeout, raise_exceptions=True,
                          read_only=True, auto_bind=False)
        try:
            conn.open()
            if self.start_tls and not self.url.lower().startswith("ldaps://"):
                conn.start_tls()
            conn.bind()
        except LDAPInvalidCredentialsResult:
            conn.unbind()
            return None
        except (LDAPSocketOpenError, LDAPStartTLSError, OSError) as exc:
            raise DirectoryDown(str(exc)) from None
        except LDAPException as exc:
            conn.unbind()
            if type(exc).__name__.startswith("LDAPSocket"):
                raise DirectoryDown(str(exc)) from None
            log.info("ldap bind refused: %s", type(exc).__name__)
            return None
        return conn

    def _attributes(self) -> list[str]:
        return [self.username_attribute, self.email_attribute, self.name_attribute,
                self.id_attribute]

    def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        """The user's entry (dn and attributes) when the password is right, else None.

        :raises DirectoryDown: the directory cannot be used now
        """
        from ldap3 import BASE, SUBTREE
        from ldap3.core.exceptions import LDAPException
        from ldap3.utils.conv import escape_filter_chars
        from ldap3.utils.dn import escape_rdn

        if not password or not username:
            return None
        try:
            if self.bind_dn_template:
                dn = self.bind_dn_template.format(username=escape_rdn(username))
            else:
                finder = self._connect(self.bind_dn, self.bind_password)
                if finder is None:
                    raise DirectoryDown("the service account cannot bind")
                try:
                    query = required(self.search_filter, "ldap search_filter").format(
                        username=escape_filter_chars(username))
                    finder.search(required(self.search_base, "ldap search_base"), query, SUBTREE,
                                  attributes=self._attributes(), size_limit=2)
                    found = list(finder.entries)
                finally:
                    finder.unbind()
                if len(found) != 1:
                    return None
                dn = found[0].entry_dn
            conn = self._connect(dn, password)
            if conn is None:
                return None
            try:
                conn.search(dn, "(objectClass=*)", BASE, attributes=self._attributes())
                entry = conn.entries[0] if conn.entries else None
                attrs = entry.entry_attributes_as_dict if entry is not None else {}
                admin = False
                if self.admin_group:
                    escaped = escape_filter_chars(dn)
                    conn.search(self.admin_group,
                                f"(|(member={escaped})(uniqueMember={escaped}))", BASE,
                                attributes=["cn"])
                    admin = bool(conn.entries)
            finally:
                conn.unbind()
        except LDAPException as exc:
            raise DirectoryDown(f"{type(exc).__name__}: {exc}") from None

        def first(name: str) -> str | None:
            values = attrs.get(name) or []
            value = values[0] if values else None
            return str(value) if value is not None else None

        return {"dn": dn, "username": first(self.username_attribute) or username,
                "email": first(self.email_attribute), "name": first(self.name_attribute),
                "id": first(self.id_attribute) or dn.lower(), "admin": admin}


def parse_ldap(config: Mapping[str, Any], bind_password: str) -> LdapDirectory | None:
    """The ``ldap`` setting as an :class:`LdapDirectory` (None when empty).

    :raises StartupError: lists every problem
    """
    if not config:
        return None
    problems = [f"ldap: unknown keys {', '.join(sorted(set(config) - _KEYS))}"] \
        if set(config) - _KEYS else []
    url = config.get("url")
    if not isinstance(url, str) or not url.lower().startswith(("ldap://", "ldaps://")):
        problems.append("ldap: url must be an ldap:// or ldaps:// URL")
    template = config.get("bind_dn_template")
    base, query = config.get("search_base"), config.get("search_filter")
    if template is not None:
        if not isinstance(template, str) or "{username}" not in template:
            problems.append("ldap: bind_dn_template must contain {username}")
    elif not (isinstance(base, str) and isinstance(query, str) and "{username}" in query):
        problems.append("ldap: give bind_dn_template, or search_base and a search_filter "
                        "containing {username}")
    timeout = config.get("timeout", 5)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or \
            not 0 < timeout <= 60:
        problems.append("ldap: timeout must be 0 to 60 seconds")
    if problems:
        raise StartupError(problems)
    fields = {k: config[k] for k in _KEYS if k in config and k != "url"}
    return LdapDirectory(url=str(url), bind_password=bind_password or None, **fields)


def ldap_login(controller: AuthController, ctx: RequestContext) -> Reply:
    """``POST /auth`` with ``method: ldap`` (called by AuthController.login)."""
    from apicrud.auth.totp import check_second_factor, mfa_required

    services = controller.services
    directory: LdapDirectory | None = services.ldap
    if directory is None or "ldap" not in services.settings.auth_methods:
        raise NotFound(N_("LDAP login is not enabled"))
    body = ctx.body
    username, password = body["username"], body["password"]
    keys = controller.reserve(ctx, username)
    try:
        entry = directory.authenticate(username, password)
    except DirectoryDown as exc:
        controller.release(keys, succeeded=False)  # not the caller's failure
        log.warning("ldap directory unavailable: %s", exc)
        raise ServiceUnavailable(N_("the directory cannot be reached")) from None
    if entry is None:
        log.info("login failed", extra={"event": "login_failed", "method": "ldap"})
        raise Unauthorized(_INVALID)  # the attempt stays counted
    account = account_for_identity(
        services, ctx.db, provider="ldap", issuer=f"ldap:{directory.url}",
        subject=entry["id"], username=entry["username"], email=entry["email"],
        email_verified=directory.trust_email, name=entry["name"])
    if directory.admin_group and bool(account.is_admin) != entry["admin"]:
        account.is_admin = entry["admin"]
        ctx.db.flush()
        log.info("admin flag from the directory", extra={
            "event": "ldap_admin_sync", "uid": account.uid, "admin": entry["admin"]})
    if account.totp_enabled:
        if not body.get("otp"):
            controller.release(keys, succeeded=False)
            raise mfa_required()
        if not check_second_factor(services, account, body["otp"]):
            raise mfa_required(N_("invalid or already used one-time code"))
    controller.release(keys, succeeded=True)
    return session_reply(services, ctx, account, method="ldap")


def init_app(services: Services) -> None:
    """Read the ``ldap`` setting (start-up errors for a bad one) into ``services.ldap``."""
    directory = parse_ldap(services.settings.ldap, services.settings.ldap_bind_password)
    if directory is not None:
        require_link_model(services, "setting ldap")
    services.ldap = directory
