"""The events example's two custom controllers.

SpeakerController keeps each speaker's ``event_id``: the event of its session. The
organizers' entries in rbac.yaml name an event through the record's own ``event_id``
(a membership role is read from an attribute of the record, not through a reference
hop), so a speaker carries its session's event, set by the server and never by a client.

EventsettingsController keeps the settings a single record.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from apicrud.context import RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.db.repository import Repository
from apicrud.errors import Conflict, Forbidden, NotFound


class SpeakerController(BasicCRUD):
    def check_create(self, ctx: RequestContext, data: dict[str, Any], quotas: bool = True) -> str:
        # every create (and restore, and can-i c) reads the event from the session; a
        # session that does not exist leaves it unset, and the reference check says so
        session = Repository(self.services.resources["session"].model)
        row = session.get_live(ctx.db, data.get("session_id"), "event_id")
        event_id = row[0] if row is not None else None
        data.pop("event_id", None)
        if event_id is not None:
            data["event_id"] = event_id
        try:
            return super().check_create(ctx, data, quotas)
        except NotFound as exc:
            if "event_id" in exc.errors:
                # refused in that event: for the client, the session they named
                raise NotFound("session_id: not found",
                               errors={"session_id": "session not found"}) from None
            raise

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        if "session_id" in changes:
            raise Forbidden("session_id: a speaker does not move to another session; add "
                            "a new one", errors={"session_id": "cannot be changed"})
        return changes


class EventsettingsController(BasicCRUD):
    def before_create(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        if ctx.db.execute(select(self.model.id).where(self.records.live())).first() is not None:
            raise Conflict("eventsettings: the settings exist; update them")
        return data
