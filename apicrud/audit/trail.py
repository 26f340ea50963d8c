"""Recording the audit trail: one entry per written record, in the write's transaction.

Two choke points, no calls sprinkled through the controllers:

- the request's database session: an ``after_flush`` listener turns every record the
  ORM inserted, changed or deleted into a pending entry of its request (the changed
  fields come from the attribute history SQLAlchemy already keeps, old values included:
  no extra SELECT). A controller that knows *why* a write was allowed (the evaluator's
  deciding rule) says so with :meth:`RequestContext.audit_intent`; writes without one
  (registration, TOTP, confirming a token) name their operation instead;
- :meth:`RequestContext.finish`: the pending entries of a request are inserted in one
  statement just before its commit, so a request that fails (or rolls back) leaves
  none, and one that commits has them.

Writes that bypass the ORM (a purge's core DELETE, a login, a logout) add their entry
with :meth:`AuditTrail.note`. A failed login has no transaction to join (its request
fails): :meth:`AuditTrail.write_alone` records it in one of its own.

What is stored of a field: old and new values for the fields the resource's schema
exposes, except those declared secret (``format: password``, ``writeOnly`` or
``x-secret: true``); every other column (password hashes, key hashes, TOTP secrets)
only as ``{"changed": true}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session

from apicrud.db.base import new_id, utcnow
from apicrud.db.repository import TRASHED

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Mapper, UOWTransaction

    from apicrud.context import RequestContext
    from apicrud.services import Services

log = logging.getLogger("apicrud.audit")

#: columns every record has whose changes say nothing about the write
BOOKKEEPING = frozenset({"id", "created", "modified", "version", "live"})
SECRET_MARK = {"changed": True}


def _plain(value: Any) -> Any:
    """A column value as JSON can hold it."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return None  # binary columns are secrets or blobs: never copied
    return value


def secret_fields(schema: dict[str, Any]) -> frozenset[str]:
    """Properties of a resource schema whose values are never recorded."""
    props = schema.get("properties") or {}
    return frozenset(name for name, p in props.items() if isinstance(p, dict) and (
        p.get("format") == "password" or p.get("writeOnly") or p.get("x-secret")))


class AuditTrail:
    """Turns writes into entries of the ``Audit`` model; disabled without one."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.model: Any = getattr(services.models, "Audit", None) \
            if services.settings.audit_enabled else None
        self.enabled = self.model is not None
        self.table: Any = self.model.__table__ if self.model is not None else None
        #: called with (ctx, session, rows) after a request's entries are inserted, in
        #: its transaction (webhooks turn them into deliveries there)
        self.listeners: list = []
        # model class -> (resource, fields whose values may be stored)
        self.kinds: dict[type, tuple[str, frozenset[str]]] = {}
        for name, res in services.resources.items():
            if res.model is None or res.model in self.kinds:
                continue
            shown = frozenset(res.exposed) - secret_fields(res.schema) - BOOKKEEPING
            self.kinds[res.model] = (name, shown)

    # -- building entries ---------------------------------------------------------------
    @staticmethod
    def _change(key: str, old: Any, value: Any, shown: frozenset[str]) -> dict[str, Any]:
        return {"old": _plain(old), "new": _plain(value)} if key in shown \
            else dict(SECRET_MARK)

    def _changes(self, obj: Any, shown: frozenset[str], new: bool) -> dict[str, Any]:
        state = inspect(obj)
        out: dict[str, Any] = {}
        for attr in state.mapper.column_attrs:
            key = attr.key
            if key in BOOKKEEPING:
                continue
            if new:
                value = getattr(obj, key)
                if value is not None:
                    out[key] = self._change(key, None, value, shown)
                continue
            hist = state.attrs[key].history
            if not hist.added and not hist.deleted:
                continue
            old = hist.deleted[0] if hist.deleted else None
            value = hist.added[0] if hist.added else None
            if old != value:
                out[key] = self._change(key, old, value, shown)
        return out

    def note_row(self, ctx: RequestContext, model: Any, record_id: str, action: str,
                 rule: str | None, old: dict[str, Any] | None,
                 new: dict[str, Any]) -> None:
        """The entry of a write made without the ORM's flush (``apicrud.db.rowwrite``):
        the same changes :meth:`collect` finds in a flush. ``old`` is None for a create
        (``new`` holds every attribute), else the values before (``new``: those the
        UPDATE set)."""
        kind = self.kinds.get(model)
        if not self.enabled or kind is None:
            return
        resource, shown = kind
        changes = {key: self._change(key, None if old is None else old.get(key), value,
                                     shown)
                   for key, value in new.items() if key not in BOOKKEEPING and (
                       value is not None if old is None else old.get(key) != value)}
        if old is not None and not changes:
            return
        self.note(ctx, resource, record_id, action, rule, changes)

    @staticmethod
    def _default_action(obj: Any, changes: dict[str, Any], new: bool) -> str:
        if new:
            return "create"
        status = changes.get("status")
        if status and "new" in status:
            if status["new"] == TRASHED:
                return "delete"
            if status["old"] == TRASHED:
                return "restore"
        return "update"

    def collect(self, ctx: RequestContext, session: Session) -> None:
        """The ``after_flush`` step: pending entries for what this flush wrote."""
        intents = ctx.audit_intents
        for group, new in ((session.new, True), (session.dirty, False)):
            for obj in group:
                kind = self.kinds.get(type(obj))
                if kind is None or (not new and not session.is_modified(obj)):
                    continue
                resource, shown = kind
                changes = self._changes(obj, shown, new)
                if not changes and not new:
                    continue
                action, rule = intents.get(id(obj), (None, None, None))[1:]
                action = action or self._default_action(obj, changes, new)
                self.note(ctx, resource, obj.id, action, rule, changes)
        for obj in session.deleted:
            kind = self.kinds.get(type(obj))
            if kind is not None:
                action, rule = intents.get(id(obj), (None, None, None))[1:]
                self.note(ctx, kind[0], obj.id, action or "purge", rule)

    def note(self, ctx: RequestContext, resource: str, record_id: str | None, action: str,
             rule: str | None = None, changes: dict[str, Any] | None = None,
             uid: str | None = None, method: str | None = None) -> None:
        """Add an entry to the request's pending ones (written at its commit). Two
        writes of one record in one request are one entry: the first old value and
        the last new one of each field, the first action."""
        if not self.enabled:
            return
        key = (resource, record_id)
        found = ctx.audit_pending.get(key)
        if found is not None and record_id is not None:
            merged = found["_changes"]
            for name, change in (changes or {}).items():
                if name in merged and "old" in merged[name] and "new" in change:
                    merged[name] = {"old": merged[name]["old"], "new": change["new"]}
                else:
                    merged[name] = change
            found["rule"] = found["rule"] or rule
            return
        principal = ctx.principal
        if rule is None and ctx.operation is not None:
            rule = f"operation {ctx.operation.operation_id}"
        entry = {"resource": resource, "record_id": record_id, "action": action,
                 "rule": (rule or "")[:255] or None, "_changes": dict(changes or {}),
                 "uid": uid or principal.uid,
                 "auth_method": method or (principal.method if principal.authenticated
                                           else None),
                 "apikey_id": getattr(principal, "apikey_id", None)}
        ctx.audit_pending[key if record_id is not None else (resource, len(
            ctx.audit_pending), action)] = entry

    def _rows(self, ctx: RequestContext,
              entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        now = utcnow()
        prefix = self.services.settings.id_prefix
        rows = []
        for entry in entries:
            row = {k: v for k, v in entry.items() if not k.startswith("_")}
            changes = entry["_changes"]
            row.update(id=new_id(prefix), created=now, request_id=ctx.request_id or None,
                       client_addr=(ctx.remote_addr or None),
                       operation=ctx.operation.operation_id if ctx.operation else None,
                       changes=json.dumps(changes, sort_keys=True, default=str)
                       if changes else None)
            rows.append(row)
        return rows

    def flush(self, ctx: RequestContext, session: Session) -> None:
        """Insert the request's pending entries on ``session`` (one statement), just
        before its commit."""
        if not self.enabled:
            return
        session.flush()  # what the commit would flush adds its entries first
        if not ctx.audit_pending:
            return
        rows = self._rows(ctx, ctx.audit_pending.values())
        ctx.audit_pending.clear()
        session.execute(insert(self.table), rows)
        for listener in self.listeners:
            listener(ctx, session, rows)

    def write_alone(self, ctx: RequestContext, resource: str, record_id: str | None, action: str,
                    uid: str | None = None, rule: str | None = None,
                    method: str | None = None) -> None:
        """Record an event whose request fails (a failed login) in its own transaction."""
        if not self.enabled:
            return
        pending: dict = {}
        saved, ctx.audit_pending = ctx.audit_pending, pending
        try:
            self.note(ctx, resource, record_id, action, rule, uid=uid, method=method)
            with self.services.db.session() as db, db.begin():
                db.execute(insert(self.table), self._rows(ctx, pending.values()))
        finally:
            ctx.audit_pending = saved

    def record_on(self, session: Session, resource: str, record_id: str | None,
                  action: str, *, uid: str | None, method: str | None,
                  apikey_id: str | None = None, client_addr: str | None = None,
                  rule: str | None = None) -> None:
        """Insert one entry on ``session``, outside any request context (an API key's
        use, written with its ``last_used``); the caller commits."""
        if not self.enabled:
            return
        session.execute(insert(self.table), [{
            "id": new_id(self.services.settings.id_prefix), "created": utcnow(),
            "uid": uid, "auth_method": method, "apikey_id": apikey_id,
            "request_id": None, "client_addr": client_addr, "resource": resource,
            "record_id": record_id, "action": action, "operation": None, "changes": None,
            "rule": rule}])


def install(services: Services) -> AuditTrail:
    """Create ``services.audit`` and hook it into the sessions of requests."""
    trail = AuditTrail(services)
    services.audit = trail
    if not trail.enabled:
        return trail

    def after_flush(session: Session, _flush_context: UOWTransaction) -> None:
        ctx = session.info.get("apicrud_ctx")
        if ctx is not None:
            trail.collect(ctx, session)

    event.listen(services.db.sessionmaker, "after_flush", after_flush)
    guard_append_only(trail.model)
    return trail


_GUARDED: set[type] = set()


def guard_append_only(model: Any) -> None:
    """The application never changes or deletes an entry through the ORM."""
    if model in _GUARDED:
        return
    _GUARDED.add(model)

    def refuse(_mapper: Mapper[Any], _conn: Connection, target: Any) -> None:
        raise PermissionError(f"{model.__tablename__} entries are append-only")

    event.listen(model, "before_update", refuse)
    event.listen(model, "before_delete", refuse)
