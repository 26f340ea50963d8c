"""The worker's side of webhooks: decide, sign, send, retry.

At each attempt of a delivery, in the worker:

1. the webhook must still be active and its owner's account active;
2. the owner must be able to read the event's audit entry *now* (the same rules as
   ``GET /audit``: they may read the record, or every record of its resource), else the
   delivery is ``skipped``; so is one whose record fails the webhook's ``filter``;
3. the payload is ``{"id", "event", "event_id", "timestamp", "record"}``: ``id`` is the
   delivery's (the same on every retry: receivers drop repeats by it), ``record`` the
   record as its owner reads it (``GET /{resource}/{id}``), null once purged;
4. the URL is resolved and checked again (:mod:`apicrud.webhooks.ssrf`); a refused
   target ends the delivery at once (``dead``);
5. it is POSTed with ``X-Apicrud-Timestamp`` and ``X-Apicrud-Signature: v1=<hex>``, the
   HMAC-SHA256 under the webhook's secret of ``<timestamp>.<body>``. A 2xx answer is
   ``delivered``; anything else is retried after ``webhook_retry_delay`` seconds,
   doubling each time (at most an hour), until ``webhook_max_attempts`` attempts: then
   the delivery is ``dead`` and stays in the delivery log, the dead-letter list.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apicrud.auth.principal import Principal
from apicrud.context import RequestContext
from apicrud.crypto import DecryptError
from apicrud.db.base import utcnow
from apicrud.db.repository import Status
from apicrud.errors import required
from apicrud.webhooks import TASK_DELIVER
from apicrud.webhooks.ssrf import UnsafeTarget, post, resolve

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session

    from apicrud.config import Settings
    from apicrud.services import Services

__all__ = ["WebhookDeliverer", "register", "sign"]

log = logging.getLogger("apicrud.webhooks")
SIGNATURE_HEADER = "X-Apicrud-Signature"
TIMESTAMP_HEADER = "X-Apicrud-Timestamp"
FINAL = frozenset({"delivered", "dead", "skipped"})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``v1=`` and the hex HMAC-SHA256 of
    ``<timestamp>.<body>`` under the webhook's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class WebhookDeliverer:
    """Runs attempts; builds the application's services on first use (in the worker)."""

    def __init__(self, settings: Settings, services: Services | None = None) -> None:
        self.settings = settings
        self._services = services

    @property
    def services(self) -> Services:
        if self._services is None:
            from apicrud.app import create_app

            self._services = create_app(settings=self.settings, migrate=False) \
                .extensions["apicrud"]
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None

    def _owner(self, db: Session, uid: str) -> Principal | None:
        account = self.services.models.Account
        row = db.execute(select(account).where(account.uid == uid,
                                               account.status == "active")).scalars().first()
        if row is None:
            return None
        principal = Principal(uid=uid, account_id=row.id, username=row.name,
                              is_admin=bool(row.is_admin), status=row.status, method="webhook")
        roles = self.services.roles
        if roles.sources:
            levels, kinds = roles.for_uid(uid)
            principal = replace(principal, memberships=levels, membership_kinds=kinds)
        return principal

    def _record(self, ctx: RequestContext, delivery: Any) -> tuple[bool, Any]:
        """(may the owner see the event, the record as they read it or None)."""
        services = self.services
        audit = required(services.controllers.get("audit"), "the audit resource")
        entry = services.models.Audit
        seen = ctx.db.execute(select(entry.id).where(
            entry.id == delivery.event_id, *audit.visible(ctx, "r"))).first()
        if seen is None:
            return False, None
        controller = services.controllers.get(delivery.resource)
        if controller is None or delivery.record_id is None:
            return True, None
        model = controller.model
        record = ctx.db.execute(select(model).where(
            model.id == delivery.record_id)).scalar_one_or_none()
        if record is None:
            return True, None  # purged
        if record.status == Status.TRASHED:
            return True, {"id": record.id, "status": record.status}
        if not services.access.allows(ctx.principal, "r", delivery.resource, record):
            return False, None
        return True, controller.serialize(ctx, record)

    def attempt(self, delivery_id: str) -> float | None:
        """One attempt; returns the seconds to wait before the next one, or None when
        the delivery is finished (delivered, skipped or dead)."""
        services = self.services
        models = services.models
        settings = services.settings
        with services.db.session() as db:
            delivery = db.get(models.WebhookDelivery, delivery_id)
            if delivery is None or delivery.status in FINAL:
                return None
            hook: Any = db.get(models.Webhook, delivery.webhook_id)  # not None with an owner
            owner = self._owner(db, hook.uid) if hook is not None and \
                hook.status == Status.ACTIVE else None
            delivery.attempts += 1
            delivery.modified = utcnow()
            if owner is None:
                return self._finish(db, delivery, "skipped", "webhook or its owner inactive")
            ctx = RequestContext.detached(services, owner, db)
            visible, record = self._record(ctx, delivery)
            if not visible:
                return self._finish(db, delivery, "skipped",
                                    "the owner may not read this record")
            wanted = json.loads(hook.filter) if hook.filter else {}
            if wanted and not (isinstance(record, dict) and
                               all(record.get(k) == v for k, v in wanted.items())):
                return self._finish(db, delivery, "skipped", "filtered out")
            try:
                from apicrud.webhooks.controller import sealer

                secret = sealer(settings).decrypt(hook.secret)
            except DecryptError:
                return self._finish(db, delivery, "dead", "secret unreadable (secret_key "
                                    "changed?)")
            stamp = str(int(time.time()))
            status: int | None
            error: str | None
            body = json.dumps({"id": delivery.id, "event": delivery.event,
                               "event_id": delivery.event_id, "timestamp": int(stamp),
                               "record": record}, separators=(",", ":"), default=str
                              ).encode()
            try:
                target = resolve(hook.url, frozenset(settings.webhook_allowed_hosts))
                status = post(target, body, {
                    "Content-Type": "application/json", "User-Agent": "apicrud-webhooks",
                    TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body)},
                    float(settings.webhook_timeout))
            except UnsafeTarget as exc:
                return self._finish(db, delivery, "dead", f"refused: {exc}")
            except OSError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"[:255]
            else:
                error = None if 200 <= status < 300 else f"HTTP {status}"
            delivery.response_status = status
            if error is None:
                return self._finish(db, delivery, "delivered", None)
            if delivery.attempts >= settings.webhook_max_attempts:
                return self._finish(db, delivery, "dead", error)
            delivery.status, delivery.error = "retrying", error
            db.commit()
            delay = min(float(settings.webhook_retry_delay) * 2 ** (delivery.attempts - 1),
                        3600.0)
            log.warning("webhook delivery %s: attempt %d failed (%s); retrying in %.2fs",
                        delivery.id, delivery.attempts, error, delay,
                        extra={"event": "webhook_retry"})
            return delay

    @staticmethod
    def _finish(db: Session, delivery: Any, status: str, error: str | None) -> None:
        delivery.status, delivery.error = status, error
        db.commit()
        level = logging.ERROR if status == "dead" else logging.INFO
        log.log(level, "webhook delivery %s %s%s", delivery.id, status,
                f": {error}" if error else "", extra={"event": f"webhook_{status}"})
        return None


def register(app: Celery, settings: Settings) -> Any:  # the Celery task
    """Register the delivery task on a worker's Celery ``app``; return it."""
    deliverer = WebhookDeliverer(settings)

    # max_retries=None: the attempts are counted by the delivery (webhook_max_attempts)
    @app.task(name=TASK_DELIVER, bind=True, acks_late=True, ignore_result=True,
              shared=False, max_retries=None)
    def deliver_webhook(self: Any, delivery_id: str) -> None:  # self: the bound Celery task
        delay = deliverer.attempt(delivery_id)
        if delay is not None:
            raise self.retry(countdown=delay, max_retries=None)

    deliver_webhook.deliverer = deliverer
    return deliver_webhook
