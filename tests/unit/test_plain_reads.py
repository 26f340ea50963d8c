"""Which controllers read rows instead of ORM objects (BasicCRUD.plain_reads), and what
such a row allows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec
from apicrud.db.repository import RecordRow


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    text_: Mapped[str] = mapped_column("text", String(40))  # attribute named apart
    count: Mapped[int] = mapped_column(default=0)  # a name tuple-like rows would shadow
    version: Mapped[int] = mapped_column(default=1)


class Tagged(Base):
    __tablename__ = "tagged"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    note_id: Mapped[str] = mapped_column(ForeignKey("note.id"))
    upper = column_property(select(Note.text_).where(Note.id == note_id).scalar_subquery())


def controller(cls, model, exposed):
    spec = ResourceSpec(name=model.__tablename__, model=model, controller_path=None,
                        exposed=exposed)
    return cls(spec, SimpleNamespace(access=None))


def test_a_plain_controller_reads_rows_labelled_by_attribute():
    crud = controller(BasicCRUD, Note, ("id", "text_", "count"))
    assert crud.row_keys == ("id", "text_", "count", "version")


class Serializing(BasicCRUD):
    def serialize(self, ctx, record):
        return {"id": record.id}


class Actions(BasicCRUD):
    def record_actions(self, ctx, record):
        return "r"


@pytest.mark.parametrize("cls", [Serializing, Actions])
def test_overriding_a_read_step_keeps_orm_objects(cls):
    assert controller(cls, Note, ("id", "text_")).row_columns is None


def test_a_subclass_may_opt_in_or_out():
    class OptIn(Serializing):
        plain_reads = True

    class OptOut(BasicCRUD):
        plain_reads = False

    assert controller(OptIn, Note, ("id",)).row_columns is not None
    assert controller(OptOut, Note, ("id",)).row_columns is None


def test_a_model_with_an_expression_attribute_keeps_orm_objects():
    assert controller(BasicCRUD, Tagged, ("id", "note_id", "upper")).row_columns is None


def test_an_exposed_name_that_is_no_column_keeps_orm_objects():
    assert controller(BasicCRUD, Note, ("id", "summary")).row_columns is None


def test_a_record_row_reads_like_the_record_and_refuses_writes():
    row = RecordRow.of(("id", "count", "text_"), ("n1", 3, "hello", "related value"))
    assert (row.id, row.count, row.text_) == ("n1", 3, "hello")
    assert getattr(row, "missing", None) is None
    with pytest.raises(AttributeError):
        row.text_ = "changed"
    with pytest.raises(AttributeError):
        row.anything = 1
    assert "n1" in repr(row)
