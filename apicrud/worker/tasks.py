"""The worker's task: open a sealed message and send it by SMTP, or keep trying.

A send that fails for a passing reason (server down, timeout, 4xx) is retried after
``mail_retry_delay`` seconds, doubling each time up to an hour, ``mail_max_retries``
times. A message that still fails, or that the server refuses for good (5xx), or that
cannot be opened, is logged at error and kept, still sealed, in the Redis list
``apicrud:mail:dead`` (:class:`DeadLetters`) for an operator to inspect and requeue
(``apicrud dead-letters --requeue``). If even that list cannot be written, the message
goes back to the broker for later: it is never dropped without a trace.

Log lines name the message id, its template and a masked recipient, never its body
(which may hold a one-time token).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import redis

from apicrud import redis_keys
from apicrud.messaging.envelope import EnvelopeError, Sealer
from apicrud.messaging.send import MailError, SmtpConfig, build_message, send_message
from apicrud.redis_client import CLIENT_OPTIONS
from apicrud.worker.names import TASK_SEND

if TYPE_CHECKING:
    from celery import Celery, Task

    from apicrud.config import Settings

__all__ = ["DeadLetters", "Deliverer", "register", "requeue_dead_letters", "retry_delay",
           "mask_address"]

log = logging.getLogger("apicrud.worker")
DEAD_LETTER_KEY = redis_keys.key("mail", "dead")


def retry_delay(first: float, retries_done: int, cap: float = 3600.0) -> float:
    """Seconds to wait before the next attempt: ``first``, doubled per retry, at most ``cap``."""
    return min(first * 2 ** retries_done, cap)


def mask_address(address: Any) -> str:
    """``jane@example.com`` -> ``j***@example.com``: enough to tell messages apart in logs."""
    local, at, domain = str(address or "").rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


class DeadLetters:
    """Messages that could not be delivered, newest first, in a Redis list."""

    def __init__(self, client: Any, key: str = DEAD_LETTER_KEY) -> None:
        self.redis = client
        self.key = key

    def add(self, record: dict[str, Any]) -> None:
        self.redis.lpush(self.key, json.dumps(record, separators=(",", ":")))

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.redis.lrange(self.key, 0, limit - 1)]

    def __len__(self) -> int:
        return int(self.redis.llen(self.key))

    def pop_oldest(self) -> dict[str, Any] | None:
        raw = self.redis.rpop(self.key)
        return json.loads(raw) if raw else None

    def put_back(self, record: dict[str, Any]) -> None:
        self.redis.rpush(self.key, json.dumps(record, separators=(",", ":")))


class Deliverer:
    """What one run of the send task does, with the worker's settings."""

    def __init__(self, settings: Settings, redis_url: str, retry_max: float = 3600.0) -> None:
        self.sealer = Sealer(settings.secret_key)
        self.smtp = SmtpConfig.from_settings(settings)
        self.max_retries = settings.mail_max_retries
        self.first_delay = float(settings.mail_retry_delay)
        self.retry_max = retry_max
        self.redis_url = redis_url
        self._dead: DeadLetters | None = None

    @property
    def dead_letters(self) -> DeadLetters:
        if self._dead is None:
            self._dead = DeadLetters(redis.Redis.from_url(self.redis_url, **CLIENT_OPTIONS))
        return self._dead

    def run(self, task: Task, envelope: str) -> None:
        """Send once; on failure raise the task's Retry, or keep the message as dead."""
        attempt = task.request.retries + 1
        try:
            message = self.sealer.open(envelope)
        except EnvelopeError as exc:
            self._bury(task, envelope, {"id": task.request.id}, str(exc), attempt)
            return
        ident = message.get("id") or task.request.id
        template, to = message.get("template", "?"), message.get("to")
        if not to:
            # the stand-in queued for an unknown account (same work either way): no mail
            log.debug("mail %s (%s) has no recipient; nothing to send", ident, template)
            return
        try:
            send_message(self.smtp, build_message(self.smtp.mail_from, to,
                                                  message["subject"], message["body"],
                                                  str(ident)))
        except MailError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # a bad message or a bug: keep it rather than lose it
            log.exception("mail %s (%s): unexpected error while sending", ident, template)
            error, permanent = f"{type(exc).__name__}: {exc}"[:300], False
        else:
            log.info("mail %s (%s) sent to %s (attempt %d)", ident, template,
                     mask_address(to), attempt)
            return
        if not permanent and task.request.retries < self.max_retries:
            delay = retry_delay(self.first_delay, task.request.retries, self.retry_max)
            log.warning("mail %s (%s) to %s: attempt %d of %d failed (%s); retrying in "
                        "%.1f s", ident, template, mask_address(to), attempt,
                        self.max_retries + 1, error, delay)
            raise task.retry(countdown=delay, max_retries=None)
        self._bury(task, envelope, message, error, attempt)

    def _bury(self, task: Task, envelope: str, message: dict[str, Any], error: str,
              attempts: int) -> None:
        ident, template = message.get("id") or task.request.id, message.get("template", "?")
        record = {"id": ident, "template": template, "to": mask_address(message.get("to")),
                  "error": error, "attempts": attempts, "failed_at": int(time.time()),
                  "envelope": envelope}
        try:
            self.dead_letters.add(record)
        except redis.RedisError as exc:
            log.error("mail %s (%s) to %s not delivered after %d attempt(s): %s; the "
                      "dead-letter list is unavailable (%s), so it goes back to the broker",
                      ident, template, record["to"], attempts, error, type(exc).__name__)
            raise task.retry(countdown=self.retry_max, max_retries=None) from None
        log.error("mail %s (%s) to %s not delivered after %d attempt(s): %s; kept in the "
                  "dead-letter list %s", ident, template, record["to"], attempts, error,
                  self.dead_letters.key)


def register(app: Celery, settings: Settings, redis_url: str,
             retry_max: float = 3600.0) -> Any:  # the Celery task
    """Register the send task on ``app`` (a worker's Celery app); return it."""
    deliverer = Deliverer(settings, redis_url, retry_max)

    # shared=False: a shared task would also be added to every Celery app created later
    # in this process, with this app's settings baked in
    @app.task(name=TASK_SEND, bind=True, acks_late=True, reject_on_worker_lost=True,
              max_retries=None, ignore_result=True, shared=False)
    def send_mail(self: Task, envelope: str) -> None:
        deliverer.run(self, envelope)

    send_mail.deliverer = deliverer
    return send_mail


def requeue_dead_letters(app: Celery, dead: DeadLetters, queue: str) -> int:
    """Publish every dead letter again, oldest first; return how many were requeued."""
    count = 0
    while True:
        record = dead.pop_oldest()
        if record is None:
            return count
        try:
            app.send_task(TASK_SEND, args=[record["envelope"]], queue=queue)
        except Exception:
            dead.put_back(record)
            raise
        count += 1
