"""The models of the events example (Open Event's speakers): one SQLAlchemy class per
table (setting models_module).

Person, Account and ApiKey are the identity tables apicrud's login, first start,
`apicrud account` and API keys use: their columns come from apicrud.auth.models, and
you may add more. Every other class is a resource of the spec (openapi/api.yaml):
the class named like the resource in CamelCase (event -> Event). After changing a
class, write a migration (`apicrud db revision -m "what changed"`, review it in
migrations/versions/) and apply it (`apicrud db upgrade`).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from apicrud.auth.models import AccountMixin, ApiKeyMixin, PersonMixin
from apicrud.db.base import Base, RecordMixin


class Person(PersonMixin, RecordMixin, Base):
    __tablename__ = "person"


class Account(AccountMixin, RecordMixin, Base):
    __tablename__ = "account"


class ApiKey(ApiKeyMixin, RecordMixin, Base):
    __tablename__ = "apikey"


class Event(RecordMixin, Base):
    """An event; its owner (uid) is its organizer."""

    __tablename__ = "event"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Eventrole(RecordMixin, Base):
    """Membership of an event: person uid is its organizer or coorganizer."""

    __tablename__ = "eventrole"

    event_id: Mapped[str] = mapped_column(
        ForeignKey("event.id", ondelete="CASCADE"), nullable=False, index=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="coorganizer")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Session(RecordMixin, Base):
    """A talk submitted to an event by uid."""

    __tablename__ = "session"

    event_id: Mapped[str] = mapped_column(
        ForeignKey("event.id", ondelete="CASCADE"), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Speaker(RecordMixin, Base):
    """A speaker of a session. event_id is the session's event, kept by the server
    (controllers.SpeakerController): the membership attribute organizers' rules read."""

    __tablename__ = "speaker"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("session.id", ondelete="CASCADE"), nullable=False, index=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("event.id", ondelete="CASCADE"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    email: Mapped[str | None] = mapped_column(String(255))
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Eventsettings(RecordMixin, Base):
    """The site's settings: one record (controllers.EventsettingsController), some of its
    fields public."""

    __tablename__ = "eventsettings"

    app_name: Mapped[str | None] = mapped_column(String(255))
    tagline: Mapped[str | None] = mapped_column(String(255))
    support_url: Mapped[str | None] = mapped_column(String(255))
    analytics_key: Mapped[str | None] = mapped_column(String(255))
    admin_email: Mapped[str | None] = mapped_column(String(255))
