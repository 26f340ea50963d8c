"""``/auth/links``: the external identities (OpenID, LDAP) linked to an account.

``GET /auth/links`` lists the caller's links (an administrator may ask for another
account's with ``account_id``); ``DELETE /auth/links/{id}`` removes one. A link that is
not the caller's is a 404 as if it did not exist, unless the caller is an administrator.
The last way to sign in cannot be removed: an account without a usable password (none
set, or password login turned off in ``auth_methods``) keeps its last link (409). The
account row is locked while the links are counted, so two removals at the same time
cannot both take the "other" link. Each removal is an audit entry (resource
``identity_link``, action ``delete``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from apicrud.auth.external.provision import require_link_model
from apicrud.context import Reply, RequestContext
from apicrud.db.base import iso_datetime
from apicrud.errors import Conflict, NotFound, Unauthorized, required
from apicrud.i18n import N_

if TYPE_CHECKING:
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Services

__all__ = ["LinksController"]

log = logging.getLogger("apicrud.auth")

FIELDS = ("id", "provider", "issuer", "subject", "email", "account_id", "created",
          "last_login")


def _out(link: Any) -> dict[str, Any]:
    out = {f: getattr(link, f) for f in FIELDS}
    for key in ("created", "last_login"):
        if out[key] is not None:
            out[key] = iso_datetime(out[key])
    return out


class LinksController:
    """List and remove identity links."""

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        self.resource = resource
        self.services = services
        self.model = require_link_model(services, "/auth/links")

    def _account_id(self, ctx: RequestContext) -> str:
        principal = ctx.principal
        if not principal.authenticated or not principal.account_id:
            raise Unauthorized()
        wanted = ctx.params.get("account_id")
        if wanted and wanted != principal.account_id:
            if not principal.is_admin:  # another account's links do not exist for the caller
                raise NotFound(N_("no such account"))
            return wanted
        return principal.account_id

    def links(self, ctx: RequestContext) -> Reply:
        """``GET /auth/links``: the links of the caller's account (or, for an
        administrator, of ``account_id``)."""
        model = self.model
        account_id = self._account_id(ctx)
        rows = ctx.db.execute(select(model).where(
            model.account_id == account_id, model.status == "active")
            .order_by(model.created, model.id)).scalars().all()
        return Reply({"items": [_out(r) for r in rows]}, 200, {"Cache-Control": "no-store"})

    def unlink(self, ctx: RequestContext) -> Reply:
        """``DELETE /auth/links/{id}``: remove a link, unless it is the last way in."""
        principal = ctx.principal
        if not principal.authenticated or not principal.account_id:
            raise Unauthorized()
        model = self.model
        accounts = self.services.models.Account
        link_id = str(ctx.params.get("id") or "")[:64]
        link = ctx.db.execute(select(model).where(
            model.id == link_id, model.status == "active")).scalar_one_or_none()
        if link is None or (link.account_id != principal.account_id and not principal.is_admin):
            raise NotFound(N_("no such link"))
        # lock the account while its ways in are counted (two removals at once)
        account = ctx.db.execute(select(accounts).where(accounts.id == link.account_id)
                                 .with_for_update()).scalar_one_or_none()
        links = ctx.db.execute(select(func.count()).select_from(model).where(
            model.account_id == link.account_id, model.status == "active")).scalar_one()
        password = account is not None and bool(account.password) and \
            "password" in self.services.settings.auth_methods
        if links <= 1 and not password:
            raise Conflict(N_("the last way to sign in cannot be removed; set a password or link "
                              "another provider first"),
                           errors={"id": N_("the account's last way to sign in")})
        ctx.db.execute(delete(model).where(model.id == link.id))
        audit = required(self.services.audit, "the audit trail (apicrud.audit)")
        audit.note(ctx, "identity_link", link.id, "delete",
                   changes={"provider": {"old": link.provider},
                            "account_id": {"old": link.account_id}})
        log.info("external identity unlinked", extra={
            "event": "identity_unlinked", "uid": principal.uid, "provider": link.provider})
        return Reply(None, 204)
