"""The link between an account and an identity at an OpenID provider, as a mixin.

A project that enables OpenID Connect login declares a class ``IdentityLink`` in its
models module from this mixin (and a table ``identity_link`` in its migrations)::

    class IdentityLink(IdentityLinkMixin, RecordMixin, Base):
        __tablename__ = "identity_link"

One row says: the subject ``subject`` of the issuer ``issuer`` is the account
``account_id``. An account may hold several (one per provider, or more); a subject
of an issuer belongs to one account at most.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from apicrud.db.base import Timestamp

__all__ = ["IdentityLinkMixin"]


class IdentityLinkMixin:
    """(issuer, subject) -> account: who signs in through which provider."""

    provider: Mapped[str] = mapped_column(String(64), nullable=False)
    issuer: Mapped[str] = mapped_column(String(255), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    email: Mapped[str | None] = mapped_column(String(254))
    last_login: Mapped[datetime | None] = mapped_column(Timestamp)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), nullable=False, index=True)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (UniqueConstraint("issuer", "subject", "live"),)
