"""``apicrud worker``, ``apicrud beat`` and ``apicrud dead-letters``: run the worker and its
scheduler, tend the dead-letter list.

With no ``redis_url`` the worker attaches to the embedded Redis of the same
``data_dir`` (start ``apicrud serve`` first: the process that starts an embedded server
owns it and stops it when it exits).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from apicrud.config import mask_url
from apicrud.redis_client import RedisProvider
from apicrud.worker.celery_app import broker_url, make_celery
from apicrud.worker.tasks import DeadLetters, requeue_dead_letters

if TYPE_CHECKING:
    from apicrud.config import Settings

__all__ = ["run_worker", "run_beat", "dead_letters"]


def run_worker(settings: Settings, concurrency: int = 2, pool: str = "prefork",
               loglevel: str = "INFO") -> None:
    """Consume ``worker_queue`` until stopped (Ctrl-C or SIGTERM: a warm shutdown)."""
    redis = RedisProvider(settings.redis_url, settings.path("data_dir"))
    try:
        app = make_celery(settings, redis.url, worker=True)
        print(f"apicrud worker: queue {settings.worker_queue} on "
              f"{mask_url(broker_url(settings, redis.url))}", flush=True)
        app.worker_main(["worker", f"--loglevel={loglevel}", f"--pool={pool}",
                         f"--concurrency={concurrency}", "-Q", settings.worker_queue,
                         "--without-gossip", "--without-mingle"])
    finally:
        redis.close()


def dead_letters(settings: Settings, requeue: bool = False) -> tuple[list[dict[str, Any]], int]:
    """(the dead letters, newest first, without their sealed bodies; how many requeued)."""
    redis = RedisProvider(settings.redis_url, settings.path("data_dir"))
    try:
        dead = DeadLetters(redis.client)
        listed = [{k: v for k, v in r.items() if k != "envelope"} for r in dead.list(1000)]
        count = 0
        if requeue:
            app = make_celery(settings, redis.url)
            try:
                count = requeue_dead_letters(app, dead, settings.worker_queue)
            finally:
                app.close()
        return listed, count
    finally:
        redis.close()


def run_beat(settings: Settings, loglevel: str = "INFO") -> None:
    """Run Celery beat: queue each scheduled task when due, until stopped."""
    from apicrud.audit.retention import schedule as schedule_audit
    from apicrud.worker.retention import schedule

    redis = RedisProvider(settings.redis_url, settings.path("data_dir"))
    try:
        app = make_celery(settings, redis.url)
        schedule(app, settings)
        schedule_audit(app, settings)
        state = os.path.join(settings.path("data_dir"), "celerybeat-schedule")
        print(f"apicrud beat: queue {settings.worker_queue}; schedule "
              f"{sorted(app.conf.beat_schedule or {})}", flush=True)
        app.start(["beat", f"--loglevel={loglevel}", f"--schedule={state}"])
    finally:
        redis.close()
