"""Controllers of the default application that need more than BasicCRUD.

Each overrides one step and inherits the rest: this is the pattern for special cases,
instead of branches on a resource name inside generic code.
"""

from __future__ import annotations

import re
from typing import Any

from apicrud.context import RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.errors import ValidationProblem

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ().-]{6,20}$")
_RULES = {"email": (_EMAIL, "is not an email address"),
          "sms": (_PHONE, "is not a phone number"),
          "voice": (_PHONE, "is not a phone number"),
          "whatsapp": (_PHONE, "is not a phone number")}


class ContactController(BasicCRUD):
    """Contacts: ``info`` must fit its ``type`` (an address for email, a number for sms)."""

    def _check_info(self, values: dict[str, Any]) -> None:
        rule = _RULES.get(values.get("type") or "email")
        if rule and values.get("info") is not None and not rule[0].match(values["info"]):
            raise ValidationProblem({"info": rule[1]})

    def before_create(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        self._check_info(data)
        return data

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        self._check_info({"type": record.type, "info": record.info, **changes})
        return changes


class PersonController(BasicCRUD):
    """People: under ``open`` or ``onrequest`` registration, a user changing their own
    address (``identity``) proves it first: the change waits for the token mailed to the
    new address, and the answer never says whether another person holds that address
    (see :meth:`apicrud.auth.registration.AccountController.request_identity_change`).
    Administrators, and every caller under ``closed``, change it at once (a taken
    address is a 409)."""

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        new = changes.get("identity")
        if new is not None and new != record.identity and \
                not ctx.principal.is_admin and ctx.principal.uid == record.id and \
                self.services.settings.account_policy in ("open", "onrequest"):
            changes.pop("identity")
            self.services.controllers["account"].request_identity_change(ctx, record, new)
        return changes
