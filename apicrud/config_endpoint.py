"""``GET /config``: the running settings, for administrators.

Every declared setting is listed with its value, except that secrets (``format:
password`` in the schema: keys, passwords, URLs that may hold credentials) are masked
when set; an empty secret shows as empty, which tells an operator it is unset without
telling anyone anything else. The settings schema version comes along, so tools can
tell which set of keys to expect.
"""

from __future__ import annotations

from typing import Any

from apicrud.context import Reply, RequestContext
from apicrud.errors import Forbidden, Unauthorized
from apicrud.i18n import N_


class ConfigController:
    """Read-only view of :class:`apicrud.config.Settings`."""

    def __init__(self, resource: Any, services: Any) -> None:
        self.services = services

    def get(self, ctx: RequestContext) -> Reply:
        principal = ctx.principal
        if not principal.authenticated:
            raise Unauthorized()
        if not principal.is_admin:
            raise Forbidden(N_("only administrators may read the configuration"))
        settings = self.services.settings
        return Reply({"schema_version": settings.schema_version,
                      "settings": settings.as_dict(redact=True)}, 200,
                     {"Cache-Control": "no-store"})
