"""Which models a Core statement may write (apicrud.db.rowwrite.row_writer), and what its
INSERT and versioned UPDATE store, against a real SQLite database, next to the ORM's
unit of work writing the same records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import JSON, String, create_engine, event, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, validates

from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec
from apicrud.db.base import RecordMixin
from apicrud.db.rowwrite import orm_writes_only, row_writer


class Base(DeclarativeBase):
    pass


class Plain(RecordMixin, Base):
    __tablename__ = "plain"
    __owner__ = None
    title_: Mapped[str | None] = mapped_column("title", String(40))  # named apart
    kind: Mapped[str] = mapped_column(String(8), default="memo")
    stamp: Mapped[str | None] = mapped_column(String(8), onupdate="changed")


class ServerDefault(RecordMixin, Base):
    __tablename__ = "server_default"
    kind: Mapped[str] = mapped_column(String(8), server_default=text("'x'"))


class ContextDefault(RecordMixin, Base):
    __tablename__ = "context_default"
    kind: Mapped[str] = mapped_column(
        String(8), default=lambda context: context.get_current_parameters()["id"][:4])


class Validated(RecordMixin, Base):
    __tablename__ = "validated"
    kind: Mapped[str | None] = mapped_column(String(8))

    @validates("kind")
    def _lower(self, _key, value):
        return value.lower()


class Evented(RecordMixin, Base):
    __tablename__ = "evented"
    kind: Mapped[str | None] = mapped_column(String(8))


event.listen(Evented, "before_insert", lambda *_: None)


class AttrEvented(RecordMixin, Base):
    __tablename__ = "attr_evented"
    kind: Mapped[str | None] = mapped_column(String(8))


event.listen(AttrEvented.kind, "set", lambda *_: None)


class Jsonish(RecordMixin, Base):
    __tablename__ = "jsonish"
    data: Mapped[dict | None] = mapped_column(JSON)


class Watched(RecordMixin, Base):
    __tablename__ = "watched"
    kind: Mapped[str | None] = mapped_column(String(8))


class Unversioned(Base):
    __tablename__ = "unversioned"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)


def test_a_plain_model_has_a_writer():
    writer = row_writer(Plain)
    assert writer is not None and "title_" in writer.attrs


@pytest.mark.parametrize("model", [ServerDefault, ContextDefault, Validated, Evented,
                                   AttrEvented, Jsonish, Unversioned])
def test_what_watches_or_fills_a_flush_keeps_the_orm(model):
    assert row_writer(model) is None


def test_a_model_registered_for_orm_writes_keeps_the_orm():
    assert row_writer(Watched) is not None
    orm_writes_only(Watched)
    assert row_writer(Watched) is None


def controller(cls, exposed=("id", "title_", "kind")):
    spec = ResourceSpec(name="plain", model=Plain, controller_path=None, exposed=exposed)
    return cls(spec, SimpleNamespace(access=None))


class Hooked(BasicCRUD):
    def before_update(self, ctx, record, changes):
        record.kind = "hooked"  # a hook writing the object: needs the ORM's
        return changes


class Serializing(BasicCRUD):
    def serialize(self, ctx, record):
        return {"id": record.id}


class Explicit(BasicCRUD):
    plain_writes = False


def test_controllers_with_write_or_read_hooks_keep_the_orm():
    assert controller(BasicCRUD).row_writer is not None
    for cls in (Hooked, Serializing, Explicit):
        assert controller(cls).row_writer is None, cls


@pytest.fixture
def db(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    Base.metadata.create_all(engine, tables=[Plain.__table__])
    yield engine
    engine.dispose()


def stored(engine, id_):
    with engine.connect() as conn:
        return dict(conn.execute(select(Plain.__table__).where(
            Plain.__table__.c.id == id_)).mappings().one())


def test_insert_and_update_store_what_the_orm_stores(db):
    writer = row_writer(Plain)
    with Session(db) as session, session.begin():
        session.add(Plain(id="orm", title_="t", kind=None))
    with db.begin() as conn:
        values = writer.new_values({"id": "core", "title_": "t", "kind": None})
        record = writer.insert(conn, values)
    orm, core = stored(db, "orm"), stored(db, "core")
    assert record.id == "core" and record.kind == "memo" and record.version == 1
    assert {k: v for k, v in core.items() if k not in ("id", "created")} == \
        {k: v for k, v in orm.items() if k not in ("id", "created")}
    assert core["created"] == record.created
    with Session(db) as session, session.begin():
        session.get(Plain, "orm").title_ = "u"
    with db.begin() as conn:
        written, values = writer.update(conn, record, {"title_": "u"})
    orm, core = stored(db, "orm"), stored(db, "core")
    assert written is not None and written.title_ == "u" and written.version == 2
    assert written.stamp == "changed" and values["version"] == 2
    assert {k: v for k, v in core.items() if k not in ("id", "created", "modified")} == \
        {k: v for k, v in orm.items() if k not in ("id", "created", "modified")}
    assert core["modified"] == written.modified is not None
    # the row read before that write is stale: its UPDATE matches nothing
    with db.begin() as conn:
        again, _ = writer.update(conn, record, {"title_": "lost"})
    assert again is None and stored(db, "core")["title"] == "u"


def test_a_written_row_is_read_only_and_names_its_table(db):
    writer = row_writer(Plain)
    with db.begin() as conn:
        record = writer.insert(conn, writer.new_values({"id": "r1"}))
    assert record.__tablename__ == "plain" and record.__table__ is Plain.__table__
    with pytest.raises(AttributeError):
        record.kind = "changed"
