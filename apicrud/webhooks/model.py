"""Columns of a webhook subscription and of its deliveries, as mixins."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from apicrud.db.base import ID_LENGTH, Timestamp, utcnow


class WebhookMixin:
    """A subscription: its owner, the target URL, the events (``message.created``, ...)
    and an optional filter (field -> value the record must have). The signing secret is
    kept encrypted (AES-GCM under ``secret_key``): it must be read back to sign."""

    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    events: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of names
    filter: Mapped[str | None] = mapped_column(Text)  # JSON object
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    @declared_attr
    def uid(cls) -> Mapped[str]:
        return mapped_column(ForeignKey("person.id", ondelete="CASCADE"), nullable=False,
                             index=True)


class WebhookDeliveryMixin:
    if TYPE_CHECKING:  # set by the application's model class
        __tablename__: ClassVar[str]

    """One event for one webhook: written with the write, then sent by the worker.
    ``status``: pending, retrying, delivered, skipped (not readable by the owner at
    delivery time, or filtered out), dead (every attempt failed)."""

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, nullable=False)
    modified: Mapped[datetime | None] = mapped_column(Timestamp)
    event: Mapped[str] = mapped_column(String(64), nullable=False)
    event_id: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False)  # audit id
    resource: Mapped[str] = mapped_column(String(32), nullable=False)
    record_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(255))

    @declared_attr
    def webhook_id(cls) -> Mapped[str]:
        return mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (Index(f"ix_{cls.__tablename__}_webhook", "webhook_id", "created"),)
