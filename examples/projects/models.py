"""The models of projects: one SQLAlchemy class per table (setting models_module).

Person, Account and ApiKey are the identity tables apicrud's login, first start,
`apicrud account` and API keys use: their columns come from apicrud.auth.models, and
you may add more. Every other class is a resource of the spec (openapi/api.yaml):
the class named like the resource in CamelCase (note -> Note). After changing a
class, write a migration (`apicrud db revision -m "what changed"`, review it in
migrations/versions/) and apply it (`apicrud db upgrade`).
"""

from __future__ import annotations

from datetime import datetime  # noqa: F401  (date-time columns)

from sqlalchemy import (  # noqa: F401  (the column types a class may use)
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from apicrud.auth.models import AccountMixin, ApiKeyMixin, PersonMixin
from apicrud.db.base import Base, RecordMixin, Timestamp  # noqa: F401


class Person(PersonMixin, RecordMixin, Base):
    __tablename__ = "person"


class Account(AccountMixin, RecordMixin, Base):
    __tablename__ = "account"


class ApiKey(ApiKeyMixin, RecordMixin, Base):
    __tablename__ = "apikey"


class Note(RecordMixin, Base):
    __tablename__ = "note"

    title: Mapped[str] = mapped_column(String(255), nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Org(RecordMixin, Base):
    __tablename__ = "org"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Orgmember(RecordMixin, Base):
    __tablename__ = "orgmember"

    org_id: Mapped[str] = mapped_column(ForeignKey("org.id"), nullable=False, index=True)
    authorization: Mapped[str | None] = mapped_column(String(255))
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Project(RecordMixin, Base):
    __tablename__ = "project"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="open",
                                       server_default="open")
    org_id: Mapped[str] = mapped_column(ForeignKey("org.id"), nullable=False, index=True)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Projectmember(RecordMixin, Base):
    __tablename__ = "projectmember"

    project_id: Mapped[str] = mapped_column(ForeignKey("project.id"), nullable=False, index=True)
    authorization: Mapped[str | None] = mapped_column(String(255))
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Job(RecordMixin, Base):
    __tablename__ = "job"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    project_id: Mapped[str] = mapped_column(ForeignKey("project.id"), nullable=False, index=True)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class File(RecordMixin, Base):
    __tablename__ = "file"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    project_id: Mapped[str] = mapped_column(ForeignKey("project.id"), nullable=False, index=True)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)


class Task(RecordMixin, Base):
    __tablename__ = "task"

    name: Mapped[str] = mapped_column(String(255), nullable=False)
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id"), nullable=False, index=True)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("file.id"), index=True)
    uid: Mapped[str] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, index=True)
