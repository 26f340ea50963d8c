"""The ``webhook`` resource: subscriptions to change events, and their delivery log.

``POST /webhook`` checks the URL (http or https; its host must resolve to public
addresses only, unless named in setting ``webhook_allowed_hosts``), the events
(``<resource>.<created|updated|deleted|restored|purged>`` of existing resources) and
returns the signing secret once; only an encryption of it is kept.
``GET /webhook/{id}/deliveries`` lists the webhook's deliveries, newest first.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apicrud.context import Reply, RequestContext
from apicrud.crud import paging
from apicrud.crud.controller import BasicCRUD, json_value
from apicrud.crypto import AESEncrypt
from apicrud.errors import BadRequest
from apicrud.i18n import N_, text_of
from apicrud.webhooks import EVENT_VERBS
from apicrud.webhooks.ssrf import UnsafeTarget, resolve

if TYPE_CHECKING:
    from apicrud.config import Settings

EVENT_RE = re.compile(r"^([a-z][a-z0-9_]*)\.([a-z]+)$")
CIPHER_CONTEXT = "apicrud webhooks"
MAX_EVENTS = 50


def sealer(settings: Settings) -> AESEncrypt:
    """The cipher of webhook secrets (a key of their own, derived from secret_key)."""
    return AESEncrypt(settings.secret_key, context=CIPHER_CONTEXT)


class WebhookController(BasicCRUD):
    """BasicCRUD with checked URLs and events, a secret shown once, and deliveries."""

    def _check_url(self, url: Any) -> str:
        try:
            resolve(str(url), frozenset(self.services.settings.webhook_allowed_hosts))
        except UnsafeTarget as exc:
            raise BadRequest(N_("url: %(problem)s", problem=text_of(exc)),
                             errors={"url": text_of(exc)}) from None
        return str(url)

    def _check_events(self, events: Any) -> str:
        verbs = set(EVENT_VERBS.values())
        names = list(dict.fromkeys(events or []))
        bad = [n for n in names if not isinstance(n, str) or not (m := EVENT_RE.match(n)) or
               m.group(1) not in self.services.resources or
               self.services.resources[m.group(1)].model is None or
               m.group(2) not in verbs]
        if not names or bad or len(names) > MAX_EVENTS:
            text = N_("unknown event %(name)s", name=repr(str(bad[0])[:64])) if bad else \
                N_("name 1 to %(count)s events", count=MAX_EVENTS)
            raise BadRequest(N_("events: %(problem)s (<resource>.<%(verbs)s>)", problem=text,
                                verbs='|'.join(sorted(verbs))),
                             errors={"events": text})
        return json.dumps(names)

    @staticmethod
    def _check_filter(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
                isinstance(v, (str, int, float, bool)) or v is None for v in value.values()):
            raise BadRequest(N_("filter: an object of field -> value (string, number, boolean or "
                                "null)"), errors={"filter": N_("must map fields to values")})
        return json.dumps(value, sort_keys=True)

    def before_create(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        data["url"] = self._check_url(data.get("url"))
        data["events"] = self._check_events(data.get("events"))
        data["filter"] = self._check_filter(data.get("filter"))
        secret = "whsec_" + secrets.token_urlsafe(32)
        data["secret"] = sealer(self.services.settings).encrypt(secret)
        ctx.memo[("issued_webhook_secret",)] = secret
        return data

    def after_create(self, ctx: RequestContext, record: Any, reply: dict[str, Any]) -> None:
        reply["secret"] = ctx.memo[("issued_webhook_secret",)]  # shown this once

    def create(self, ctx: RequestContext) -> Reply:
        reply = super().create(ctx)
        reply.headers["Cache-Control"] = "no-store"
        return reply

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        if "url" in changes:
            changes["url"] = self._check_url(changes["url"])
        if "events" in changes:
            changes["events"] = self._check_events(changes["events"])
            if changes["events"] == record.events:
                changes.pop("events")
        if "filter" in changes:
            changes["filter"] = self._check_filter(changes["filter"])
        return changes

    def serialize(self, ctx: RequestContext, record: Any) -> dict[str, Any]:
        out = super().serialize(ctx, record)
        for name in ("events", "filter"):
            if isinstance(out.get(name), str):
                out[name] = json.loads(out[name])
        return out

    def deliveries(self, ctx: RequestContext) -> Reply:
        """``GET /webhook/{id}/deliveries``: its delivery log, newest first (``limit``,
        default setting per_page_default); ``status`` narrows it (e.g. ``dead``)."""
        hook = self._load(ctx, ctx.params["id"])
        settings = self.services.settings
        limit = paging.page_size(ctx.params.get("limit"), settings)
        model = self.services.models.WebhookDelivery
        stmt = select(model).where(model.webhook_id == hook.id)
        if ctx.params.get("status"):
            stmt = stmt.where(model.status == ctx.params["status"])
        rows = ctx.db.execute(stmt.order_by(model.created.desc(), model.id)
                              .limit(limit)).scalars()
        items = [{name: json_value(getattr(row, name)) for name in DELIVERY_FIELDS}
                 for row in rows]
        return Reply({"items": items}, 200)


DELIVERY_FIELDS = ("id", "created", "modified", "event", "event_id", "resource",
                   "record_id", "status", "attempts", "response_status", "error")
