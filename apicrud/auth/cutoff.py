"""Cutting a user off: when an account is suspended or its person trashed, its login
sessions and API keys end at once.

The identity component knows which models hold people and accounts from the
``models_module`` setting (``Person``, ``Account``, ``ApiKey``); it does not know which
request, controller or command changes them. So :func:`install` watches the database
sessions of one :class:`~apicrud.db.engine.Database`: whenever a flush changes the
``status`` of an account to something other than ``active`` or ``pending``, or of a
person to anything other than ``active`` (trashcan, ``PATCH /account/{id}``, ``apicrud
account disable``, ...), or deletes one, the same flush

- ends the API keys of that person (``expires`` set to now, in the same transaction, so
  a rolled-back request ends nothing; revocation is final, so keys stay ended when the
  account is enabled again or the person restored);
- ends every login session of that person in Redis, before the commit (a Redis outage
  fails the write instead of leaving sessions alive) and again after it, so a login that
  read the account just before the change cannot keep a session made after it
  (the login also checks the account again once its session exists).

API keys are checked against the database on every use and join the account's and the
person's status, so they would stop working even without the ``expires`` write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, or_, update

from apicrud.db.base import utcnow
from apicrud.db.rowwrite import orm_writes_only

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, UOWTransaction

    from apicrud.auth.sessions import SessionManager
    from apicrud.db.engine import Database

__all__ = ["install", "ACCOUNT_LIVE", "PERSON_LIVE"]

log = logging.getLogger("apicrud.auth")
ACCOUNT_LIVE = ("active", "pending")
PERSON_LIVE = ("active",)
_INFO = "apicrud_cut_off"


def _status_left(obj: Any, live: tuple[str, ...]) -> bool:
    history = inspect(obj).attrs.status.history
    return bool(history.added) and obj.status not in live


def install(database: Database, models: Any, sessions: SessionManager) -> None:
    """Watch ``database``'s sessions; ``sessions`` is the SessionManager to end sessions in."""
    account_model = getattr(models, "Account", None)
    person_model = getattr(models, "Person", None)
    key_model = getattr(models, "ApiKey", None)
    if account_model is None or person_model is None:
        return
    # the listener below reads their changes among the session's dirty objects
    orm_writes_only(account_model, person_model)

    def people_cut_off(session: Session) -> set[str]:
        uids: set[str] = set()
        for obj in session.deleted:
            if isinstance(obj, account_model):
                uids.add(obj.uid)
            elif isinstance(obj, person_model):
                uids.add(obj.id)
        for obj in session.dirty:
            if isinstance(obj, account_model) and _status_left(obj, ACCOUNT_LIVE):
                uids.add(obj.uid)
            elif isinstance(obj, person_model) and _status_left(obj, PERSON_LIVE):
                uids.add(obj.id)
        return {u for u in uids if u}

    def end_sessions(uids: Iterable[str]) -> int:
        return sum(sessions.delete_all(uid) for uid in sorted(uids))

    @event.listens_for(database.sessionmaker, "before_flush")
    def _before_flush(session: Session, _context: UOWTransaction, _instances: Any) -> None:
        uids = people_cut_off(session)
        if not uids:
            return
        if key_model is not None:
            now = utcnow()
            table = key_model.__table__
            session.connection().execute(
                update(table).where(table.c.uid.in_(sorted(uids)),
                                    or_(table.c.expires.is_(None), table.c.expires > now))
                .values(expires=now))
        ended = end_sessions(uids)
        session.info.setdefault(_INFO, set()).update(uids)
        log.info("user cut off", extra={"event": "cut_off", "uids": sorted(uids),
                                        "sessions": ended})

    @event.listens_for(database.sessionmaker, "after_commit")
    def _after_commit(session: Session) -> None:
        uids = session.info.pop(_INFO, None)
        if not uids:
            return
        try:
            end_sessions(uids)
        except Exception:  # the write stands; the sessions were ended before the commit
            log.error("ending the sessions of a suspended user after commit failed",
                      exc_info=True, extra={"event": "cut_off_failed"})

    @event.listens_for(database.sessionmaker, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_INFO, None)
