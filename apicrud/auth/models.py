"""Columns of the identity tables the auth components use, as mixins.

A project's models module declares its own classes from them, so the tables are its
own (and its migrations create them) while the framework can rely on their columns:

    class Person(PersonMixin, RecordMixin, Base):
        __tablename__ = "person"

- ``Person`` (table ``person``): a human; owned by itself (``__owner__ = "id"``).
  Logins, first start and ``apicrud account`` need it.
- ``Account`` (table ``account``): username, password hash, admin flag, second factor;
  ``uid`` names its person. Logins need it.
- ``ApiKey`` (table ``apikey``): keys sent in ``X-API-KEY`` (only a hash is kept).

A class may add columns of its own; the framework looks the classes up by these names
in the ``models_module``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from apicrud.db.base import Timestamp

__all__ = ["PersonMixin", "AccountMixin", "ApiKeyMixin"]


class PersonMixin:
    """A human known to the service; an account belongs to one person."""

    #: a person record is owned by the person it describes
    __owner__ = "id"

    name: Mapped[str] = mapped_column(String(64), nullable=False)
    identity: Mapped[str | None] = mapped_column(String(254))
    privacy: Mapped[str] = mapped_column(String(8), nullable=False, default="member")

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (UniqueConstraint("identity", "live"),)


class AccountMixin:
    """Login identity of a person: username, password hash, admin flag."""

    name: Mapped[str] = mapped_column(String(32), nullable=False)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)
    password: Mapped[str | None] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_login: Mapped[datetime | None] = mapped_column(Timestamp)
    password_changed: Mapped[datetime | None] = mapped_column(Timestamp)
    #: TOTP second factor: encrypted secret, backup codes as a JSON list of hashes
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    backup_codes: Mapped[str | None] = mapped_column(Text)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (UniqueConstraint("name", "live"),)


class ApiKeyMixin:
    """A credential for programs: ``<prefix>.<secret>``; only a hash of the secret is kept."""

    name: Mapped[str] = mapped_column(String(64), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    hash: Mapped[str] = mapped_column(String(128), nullable=False)
    scopes: Mapped[str | None] = mapped_column(Text)  # JSON list of scope names
    expires: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used: Mapped[datetime | None] = mapped_column(Timestamp)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (UniqueConstraint("uid", "name", "live"),)
