"""The trashcan's retention: a scheduled task purges records trashed long ago.

Every ``PURGE_EVERY`` seconds Celery beat queues ``apicrud.purge_trash``; a worker runs
:func:`apicrud.trashcan.purge_expired` with setting ``trash_retention_days`` (0 keeps
trashed records forever: then nothing is scheduled, and the task does nothing). Beat
runs as ``apicrud beat``, exactly one per deployment beside any number of workers; a
purge queued twice does no harm, the second finds nothing left to remove.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from apicrud.config.loader import Settings
    from apicrud.services import Offline

__all__ = ["PURGE_EVERY", "TASK_PURGE", "Purger", "register", "schedule"]

log = logging.getLogger("apicrud.worker")
TASK_PURGE = "apicrud.purge_trash"
PURGE_EVERY = 3600.0  # seconds; a record outlives its retention by at most this much


class Purger:
    """What one run of the purge task does. Opens the database on first use (in the
    worker process, after it forked) and keeps it for later runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._services: Offline | None = None

    def _open(self) -> Offline:
        if self._services is None:
            from apicrud.services import open_offline

            # purge_expired needs the database, the resources' models and the settings
            # (a controller's before_purge may reach storage through them)
            self._services = open_offline(self.settings, declarations=True, pool_size=1)
        return self._services

    def run(self) -> int:
        """Purge what is past retention; return how many records went."""
        from apicrud.trashcan import purge_expired

        days = self.settings.trash_retention_days
        if days <= 0:
            return 0
        purged = purge_expired(self._open(), days)
        log.info("trash retention (%d days): purged %d record(s)", days, purged,
                 extra={"event": "purge_retention", "purged": purged})
        return purged

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


def schedule(app: Celery, settings: Settings) -> None:
    """Add the purge to ``app``'s beat schedule (unless retention is off)."""
    if settings.trash_retention_days <= 0:
        return
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "purge-trash": {"task": TASK_PURGE, "schedule": PURGE_EVERY,
                        # a purge nobody ran before the next one is due is not worth running
                        "options": {"queue": settings.worker_queue, "expires": PURGE_EVERY}},
    }


def register(app: Celery, settings: Settings) -> Any:  # the Celery task
    """Register the purge task on a worker's Celery ``app`` and schedule it; return it."""
    purger = Purger(settings)

    # shared=False: each Celery app (one per worker, several in tests) gets its own
    @app.task(name=TASK_PURGE, ignore_result=True, shared=False)
    def purge_trash() -> int:
        return purger.run()

    purge_trash.purger = purger
    schedule(app, settings)
    return purge_trash
