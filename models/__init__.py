"""Models of the default application (CONTRACT section 6).

Framework code never imports this module by name: it is found through the
``models_module`` setting, so an application can ship its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from apicrud.audit import AuditMixin
from apicrud.auth.external.models import IdentityLinkMixin
from apicrud.auth.models import AccountMixin, ApiKeyMixin, PersonMixin
from apicrud.db.base import Base, RecordMixin, Timestamp
from apicrud.files.models import FileMixin
from apicrud.webhooks.model import WebhookDeliveryMixin, WebhookMixin

PRIVACY = ("public", "invitee", "member", "manager", "secret")


class Person(PersonMixin, RecordMixin, Base):
    """A human known to the service; an account belongs to one person."""

    __tablename__ = "person"


class Account(AccountMixin, RecordMixin, Base):
    """Login identity of a person: username, password hash, admin flag."""

    __tablename__ = "account"


class Category(RecordMixin, Base):
    __tablename__ = "category"
    __table_args__ = (UniqueConstraint("uid", "name", "live"),)

    name: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )


class List(RecordMixin, Base):
    __tablename__ = "list"
    __table_args__ = (UniqueConstraint("uid", "name", "live"),)

    name: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))
    privacy: Mapped[str] = mapped_column(String(8), nullable=False, default="secret")
    category_id: Mapped[str | None] = mapped_column(
        ForeignKey("category.id", ondelete="SET NULL"), index=True
    )
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )


class Message(RecordMixin, Base):
    __tablename__ = "message"
    # a list's page in id order, and an author's, straight from an index (keyset paging);
    # ix_message_access holds every column of the RBAC filter, so counting the rows a
    # caller may read scans that index, not the table
    __table_args__ = (Index("ix_message_list_id_id", "list_id", "id"),
                      Index("ix_message_uid_id", "uid", "id"),
                      Index("ix_message_access", "list_id", "privacy", "uid", "status"))

    list_id: Mapped[str] = mapped_column(
        ForeignKey("list.id", ondelete="CASCADE"), nullable=False, index=True
    )
    subject: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[str | None] = mapped_column(Text)
    privacy: Mapped[str] = mapped_column(String(8), nullable=False, default="member")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )


class Contact(RecordMixin, Base):
    """A way to reach a person: email address, phone number, ..."""

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("uid", "type", "info", "live"),)

    info: Mapped[str] = mapped_column(String(254), nullable=False)
    type: Mapped[str] = mapped_column(String(8), nullable=False, default="email")
    label: Mapped[str] = mapped_column(String(8), nullable=False, default="home")
    privacy: Mapped[str] = mapped_column(String(8), nullable=False, default="member")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )


class ListMember(RecordMixin, Base):
    """A person's membership of a list, at a level (invitee, member or manager)."""

    __tablename__ = "listmember"
    __table_args__ = (UniqueConstraint("list_id", "uid", "live"),)

    list_id: Mapped[str] = mapped_column(
        ForeignKey("list.id", ondelete="CASCADE"), nullable=False, index=True
    )
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )
    authorization: Mapped[str] = mapped_column(String(8), nullable=False, default="member")


class Scope(RecordMixin, Base):
    """A named capability an API key may be limited to (managed by admins)."""

    __tablename__ = "scope"
    __table_args__ = (UniqueConstraint("name", "live"),)
    __owner__ = None

    name: Mapped[str] = mapped_column(String(32), nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))


class ApiKey(ApiKeyMixin, RecordMixin, Base):
    """A credential for programs: ``<prefix>.<secret>``; only a hash of the secret is kept."""

    __tablename__ = "apikey"


class IdentityLink(IdentityLinkMixin, RecordMixin, Base):
    """An account's identity at an OpenID provider (issuer + subject)."""

    __tablename__ = "identity_link"


class Settings(RecordMixin, Base):
    """Per-account settings (AccountSettings reads them through a Redis cache)."""

    __tablename__ = "settings"
    __table_args__ = (UniqueConstraint("account_id", "live"),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), nullable=False
    )
    locale: Mapped[str] = mapped_column(String(16), nullable=False, default="en_US")
    timezone: Mapped[str] = mapped_column(String(48), nullable=False, default="UTC")
    default_category_id: Mapped[str | None] = mapped_column(
        ForeignKey("category.id", ondelete="SET NULL")
    )
    default_privacy: Mapped[str] = mapped_column(String(8), nullable=False, default="member")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )


class Grant(RecordMixin, Base):
    """A per-user override of a default grant (record counts, rate limit, ...)."""

    __tablename__ = "grant"
    __table_args__ = (UniqueConstraint("uid", "name", "live"),)

    name: Mapped[str] = mapped_column(String(32), nullable=False)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    expires: Mapped[datetime | None] = mapped_column(Timestamp)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )


class File(FileMixin, RecordMixin, Base):
    """An uploaded file: its metadata is a record (apicrud.files keeps the bytes).

    Without ``list_id`` a file is its owner's alone; in a list, its members read it as
    its privacy says, as they read messages.
    """

    __tablename__ = "file"
    __table_args__ = (Index("ix_file_list_id_id", "list_id", "id"),
                      Index("ix_file_uid_id", "uid", "id"))

    list_id: Mapped[str | None] = mapped_column(
        ForeignKey("list.id", ondelete="CASCADE"), index=True
    )
    privacy: Mapped[str] = mapped_column(String(8), nullable=False, default="member")
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True
    )
class Audit(AuditMixin, Base):
    """Who changed what, when and by which rule: one entry per write (append-only)."""

    __tablename__ = "audit"


class Webhook(WebhookMixin, RecordMixin, Base):
    """A subscription to change events, delivered signed to its URL by the worker."""

    __tablename__ = "webhook"


class WebhookDelivery(WebhookDeliveryMixin, Base):
    """One event for one webhook, and how its delivery went (the delivery log)."""

    __tablename__ = "webhook_delivery"
