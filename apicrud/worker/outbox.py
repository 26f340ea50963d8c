"""The API side of messaging: render a message, seal it, publish it for the worker.

A request never waits for SMTP: :meth:`Outbox.send` renders the template (a broken
template fails the request, not a worker later), seals the result
(:mod:`apicrud.messaging.envelope`) and publishes it to the broker. If the broker is
unreachable the request gets 503 and its transaction is rolled back, so nothing is
half-done. Components reach it as ``services.outbox`` (see :func:`init_app`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from apicrud.errors import ServiceUnavailable
from apicrud.i18n import N_, SOURCE_LANGUAGE, language_of
from apicrud.messaging.envelope import Sealer
from apicrud.messaging.render import MessageRenderer
from apicrud.worker.celery_app import TASK_SEND, make_celery

if TYPE_CHECKING:
    from celery import Celery

    from apicrud.config import Settings
    from apicrud.services import Services

__all__ = ["Outbox", "init_app"]

log = logging.getLogger("apicrud.mail")


class Outbox:
    """Queues messages for the worker; the Celery app is built on first use."""

    def __init__(self, settings: Settings, redis_url: str,
                 renderer: MessageRenderer | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.renderer = renderer or MessageRenderer()
        self._sealer = Sealer(settings.secret_key)
        self._celery: Celery | None = None
        self._lock = threading.Lock()

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            with self._lock:
                if self._celery is None:
                    self._celery = make_celery(self.settings, self.redis_url)
        return self._celery

    def send(self, to: str | None, template: str, /, language: str | None = None,
             **context: Any) -> str:
        """Queue template ``template`` rendered with ``context`` in ``language`` (the
        recipient's, see apicrud.i18n; by default the setting ``default_locale``) for
        ``to``; return its id.

        ``to=None`` queues a stand-in that the worker drops: callers that must not
        reveal whether an address exists do the same work either way.
        """
        if language is None:
            language = language_of(self.settings.default_locale) or SOURCE_LANGUAGE
        rendered = self.renderer.render(template, language, **context)
        ident = uuid.uuid4().hex
        envelope = self._sealer.seal({"id": ident, "template": template, "to": to,
                                      "subject": rendered.subject, "body": rendered.body})
        try:
            self.celery.send_task(TASK_SEND, args=[envelope],
                                  queue=self.settings.worker_queue)
        except Exception as exc:  # noqa: BLE001  kombu raises OperationalError and socket errors alike
            log.error("mail %s (%s) could not be queued: %s", ident, template,
                      type(exc).__name__)
            raise ServiceUnavailable(N_("the message queue is unavailable")) from None
        if to:
            log.info("mail %s (%s) queued", ident, template)
        return ident

    def close(self) -> None:
        """Release the broker connections of the Celery app, if one was made."""
        if self._celery is not None:
            self._celery.close()


def init_app(services: Services) -> None:
    """Give the services an outbox on the configured broker (``services.outbox``)."""
    services.outbox = Outbox(services.settings, services.redis.url)
    services.closers.append(services.outbox.close)
