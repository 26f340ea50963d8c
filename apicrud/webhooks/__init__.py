"""Change events delivered as signed webhooks.

Each audit entry of a record write (:mod:`apicrud.audit`) is an event named
``<resource>.<created|updated|deleted|restored|purged>``. When a request's entries are
inserted, a delivery row is written, in the same transaction, for each active webhook
subscribed to one of its events; once the request commits the delivery ids are queued
for the worker (:mod:`apicrud.webhooks.deliver`), which decides *then* whether the
webhook's owner may read the record (the event's audit entry is visible to them),
builds the payload from the record as the owner reads it, signs it and POSTs it.

Which events have subscribers is kept in memory for ``SUBSCRIBERS_TTL`` seconds (and
dropped at once when this instance writes a webhook), so a write costs no extra query
while nobody subscribes to it; another instance sees a new webhook within that time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from apicrud.db.base import new_id, utcnow
from apicrud.db.repository import Status
from apicrud.errors import required

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from apicrud.context import RequestContext
    from apicrud.services import Services

__all__ = ["EVENT_VERBS", "Webhooks", "init_app"]

log = logging.getLogger("apicrud.webhooks")
#: audit action -> event verb
EVENT_VERBS = {"create": "created", "update": "updated", "delete": "deleted",
               "restore": "restored", "purge": "purged"}
SUBSCRIBERS_TTL = 5.0
TASK_DELIVER = "apicrud.deliver_webhook"


class Webhooks:
    """Turns a request's audit entries into deliveries and queues them after commit."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.model = services.models.Webhook
        self.delivery = services.models.WebhookDelivery
        self._subs: tuple[float, list[tuple[str, frozenset[str]]]] | None = None
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop the cached subscriptions (a webhook was written)."""
        self._subs = None

    def _subscriptions(self, session: Session) -> list[tuple[str, frozenset[str]]]:
        cached = self._subs
        if cached is not None and time.monotonic() - cached[0] < SUBSCRIBERS_TTL:
            return cached[1]
        hook = self.model
        rows = session.execute(select(hook.id, hook.events).where(
            hook.status == Status.ACTIVE)).all()
        subs = []
        for id_, events in rows:
            try:
                names = frozenset(json.loads(events))
            except (TypeError, ValueError):
                continue
            subs.append((id_, names))
        with self._lock:
            self._subs = (time.monotonic(), subs)
        return subs

    def on_entries(self, ctx: RequestContext, session: Session, rows: list[dict[str, Any]]) -> None:
        """Audit listener: one delivery per (subscribed webhook, event) of ``rows``."""
        if any(row["resource"] == "webhook" for row in rows):
            self.forget()
        events = [(f"{row['resource']}.{EVENT_VERBS[row['action']]}", row) for row in rows
                  if row["action"] in EVENT_VERBS]
        if not events:
            return
        subs = self._subscriptions(session)
        if not subs:
            return
        now = utcnow()
        prefix = self.services.settings.id_prefix
        out = []
        for name, row in events:
            for hook_id, names in subs:
                if name in names:
                    out.append({"id": new_id(prefix), "created": now, "modified": None,
                                "webhook_id": hook_id, "event": name,
                                "event_id": row["id"], "resource": row["resource"],
                                "record_id": row["record_id"], "status": "pending",
                                "attempts": 0, "response_status": None, "error": None})
        if not out:
            return
        session.execute(insert(self.delivery.__table__), out)
        ids = [d["id"] for d in out]
        ctx.after_commit.append(lambda: self.publish(ids))

    def publish(self, ids: list[str]) -> None:
        """Queue each delivery for the worker (after the commit that wrote it). One the
        broker refuses stays ``pending`` in the delivery log."""
        celery = required(self.services.outbox, "the outbox (apicrud.worker.outbox)").celery
        for delivery_id in ids:
            celery.send_task(TASK_DELIVER, args=[delivery_id],
                             queue=self.services.settings.worker_queue)


def init_app(services: Services) -> None:
    """``services.webhooks``, listening to the audit trail (when the app has the models)."""
    models = services.models
    audit = services.audit
    if audit is None or not audit.enabled or not hasattr(models, "Webhook") or \
            not hasattr(models, "WebhookDelivery"):
        services.webhooks = None
        return
    services.webhooks = Webhooks(services)
    audit.listeners.append(services.webhooks.on_entries)
