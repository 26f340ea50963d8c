"""The audit trail's retention: a scheduled task removes entries older than
``audit_retention_days`` (0, the default, keeps them forever and schedules nothing).

The only deletion of entries there is, done with a core DELETE by the worker (the
application's mapper refuses deletes, see :func:`apicrud.audit.trail.guard_append_only`).
Scheduled like the trashcan's purge (:mod:`apicrud.worker.retention`): beat queues
``apicrud.purge_audit`` every ``PURGE_EVERY`` seconds.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete

from apicrud.db.base import utcnow

if TYPE_CHECKING:
    from celery import Celery

    from apicrud.config.loader import Settings

__all__ = ["TASK_PURGE_AUDIT", "purge_audit_expired", "register", "schedule"]

log = logging.getLogger("apicrud.worker")
TASK_PURGE_AUDIT = "apicrud.purge_audit"
PURGE_EVERY = 3600.0


def purge_audit_expired(db: Any, model: Any, retention_days: int,
                        now: datetime | None = None) -> int:
    """Delete the entries of ``model`` older than ``retention_days``; return how many."""
    if model is None or retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with db.session() as session, session.begin():
        result = session.execute(delete(model.__table__).where(
            model.__table__.c.created < cutoff))
    if result.rowcount:
        log.info("audit retention (%d days): purged %d entries", retention_days,
                 result.rowcount, extra={"event": "purge_audit", "purged": result.rowcount})
    return result.rowcount or 0


class AuditPurger:
    """One run of the task; opens the database in the worker process on first use
    (:func:`apicrud.services.open_offline`, as the trashcan's purge does)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._offline: Any = None

    def run(self) -> int:
        days = self.settings.audit_retention_days
        if days <= 0:
            return 0
        if self._offline is None:
            from apicrud.services import open_offline

            self._offline = open_offline(self.settings, pool_size=1)
        offline = self._offline
        return purge_audit_expired(offline.db, getattr(offline.models, "Audit", None), days)

    def close(self) -> None:
        if self._offline is not None:
            self._offline.close()
            self._offline = None


def register(app: Celery, settings: Settings) -> Any:  # the Celery task
    """Register the task on a worker's Celery ``app`` and schedule it (unless off)."""
    purger = AuditPurger(settings)

    @app.task(name=TASK_PURGE_AUDIT, ignore_result=True, shared=False)
    def purge_audit() -> int:
        return purger.run()

    purge_audit.purger = purger
    schedule(app, settings)
    return purge_audit


def schedule(app: Celery, settings: Settings) -> None:
    """Add the purge to ``app``'s beat schedule (unless retention is off)."""
    if settings.audit_retention_days <= 0:
        return
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "purge-audit": {"task": TASK_PURGE_AUDIT, "schedule": PURGE_EVERY,
                        "options": {"queue": settings.worker_queue, "expires": PURGE_EVERY}},
    }
