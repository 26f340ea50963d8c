"""Declarative base, naming convention and the mixins every CRUD model shares."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Boolean, DateTime, Integer, MetaData, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

if TYPE_CHECKING:
    from sqlalchemy import Table

# Stable constraint names so that migrations can drop or alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 32
#: MariaDB's DATETIME drops fractions unless asked; keyset paging and ETags need them.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> datetime:
    """Naive UTC now: stored the same way on SQLite, PostgreSQL and MariaDB."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(text: str) -> datetime:
    """An ISO 8601 date-time as naive UTC (text without an offset is taken as UTC), the
    one parser of date-times the clients send. ``ValueError`` for text that is not one,
    ``OverflowError`` when its time in UTC is beyond the years 1 to 9999."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def iso_datetime(value: datetime) -> str:
    """A stored (naive UTC) date-time as JSON shows it: RFC 3339 with microseconds and
    ``Z`` (``2026-01-31T12:00:00.000000Z``); an aware one (a ``timezone=True`` column, a
    computed value) is shown in UTC the same way."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def iso_utc(epoch: float) -> str:
    """Seconds since the epoch as an ISO 8601 UTC date-time (``2026-01-31T12:00:00Z``)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix: str = "x-") -> str:
    """A server-generated id: prefix plus 16 URL-safe random characters (96 bits)."""
    return prefix + secrets.token_urlsafe(12)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RecordMixin:
    """Columns of every CRUD record: id, timestamps, status (soft delete) and a row version.

    ``version`` drives SQLAlchemy's optimistic concurrency: an UPDATE carries
    ``WHERE version = <read version>``, so two writers of one version never both win.
    """

    if TYPE_CHECKING:  # set by declarative mapping on the model classes
        __table__: ClassVar[Table]

    #: attribute holding the owner's person id; ``None`` for unowned resources
    __owner__: str | None = "uid"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, nullable=False)
    modified: Mapped[datetime | None] = mapped_column(Timestamp, onupdate=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False, index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    #: True while the record is live, NULL once trashed. Unique constraints include it,
    #: so they bind live records only (NULLs never collide, on every backend): a name
    #: freed by deleting can be used again, and restoring checks for a conflict.
    live: Mapped[bool | None] = mapped_column(Boolean, default=True)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}
