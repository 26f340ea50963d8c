"""The columns of an audit entry (an application declares its table with the mixin)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from apicrud.db.base import ID_LENGTH, Timestamp, utcnow

#: longest policy rule text kept (a rule's source line, or a membership rule's wording)
RULE_LENGTH = 255


class AuditMixin:
    if TYPE_CHECKING:  # set by the application's model class
        __tablename__: ClassVar[str]

    """One write, as recorded in the same transaction: who, when, from where, what, the
    changed fields (old and new values; secrets only marked ``changed``) and the rule
    that allowed it. Rows are only ever inserted: the mapper refuses updates and
    deletes (see :func:`apicrud.audit.trail.guard_append_only`); only the retention
    purge of the worker removes old entries, with a core DELETE.

    An application declares its table as ``class Audit(AuditMixin, Base):
    __tablename__ = "audit"``; without it nothing is recorded.
    """

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, nullable=False)
    uid: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    auth_method: Mapped[str | None] = mapped_column(String(16))
    apikey_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(64))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(32), nullable=False)
    record_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    operation: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[str | None] = mapped_column(Text)  # JSON: field -> {old, new} | {changed}
    rule: Mapped[str | None] = mapped_column(String(RULE_LENGTH))

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        name = cls.__tablename__
        # a record's history in time order; the whole trail in time order
        return (Index(f"ix_{name}_record", "resource", "record_id", "created"),
                Index(f"ix_{name}_created", "created", "id"))
