"""A write's reference check reads the related values its answer shows in the same
statement (BasicCRUD._reference_statement): attacks on that statement's SQL.

The related value sits in a scalar subquery under the caller's read filter of the related
resource. A read filter may hold subqueries of its own over any table, the referenced
one too; had the referenced row been read from its table (not an alias of it), such a
subquery would silently correlate with the referenced row and decide readability by it.
"""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import ForeignKey, String, create_engine, exists, false, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec
from apicrud.db.base import RecordMixin


class Base(DeclarativeBase):
    pass


class Folk(RecordMixin, Base):
    __tablename__ = "folk"
    name: Mapped[str | None] = mapped_column(String(20))


class Board(RecordMixin, Base):
    __tablename__ = "board"
    uid: Mapped[str | None] = mapped_column(String(20))


class Post(RecordMixin, Base):
    __tablename__ = "post"
    board_id: Mapped[str] = mapped_column(ForeignKey("board.id"))
    uid: Mapped[str | None] = mapped_column(ForeignKey("folk.id"))


class Access:
    """A folk is readable by whoever owns some board: a subquery over board."""

    def __init__(self, readable=True):
        self.readable = readable

    def record_columns(self, resource):
        return ("id", "uid")

    def has_field_rules(self, resource):
        return False

    def allows(self, principal, action, resource, record):
        return True

    def where(self, principal, resource, model, action):
        if not self.readable:
            return false()
        return exists(select(Board.id).where(Board.uid == model.id))


def controller(access):
    specs = {
        "folk": ResourceSpec(name="folk", model=Folk, controller_path=None),
        "board": ResourceSpec(name="board", model=Board, controller_path=None),
    }
    spec = ResourceSpec(name="post", model=Post, controller_path=None,
                        exposed=("id", "board_id", "uid"),
                        references={"board_id": "board"},
                        related={"author": ("uid", "folk", "name")})
    services = SimpleNamespace(access=access, resources=specs,
                               resource_for_table=lambda table: specs.get(table))
    return BasicCRUD(spec, services)  # type: ignore[arg-type]


def context(session):
    return SimpleNamespace(db=session, open_session=session, connection=session.connection,
                           related={}, memo={}, services=None,
                           principal=SimpleNamespace(uid="f2", access_key=("k",),
                                                     is_admin=False))


def row(id_, **values):
    return {"id": id_, "status": "active", "version": 1, "live": True, **values}


def test_the_read_filter_of_a_related_value_never_correlates_with_the_referenced_row(
        tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'f.db'}")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Folk.__table__), [row("f1", name="one"), row("f2", name="two"),
                                              row("f3", name="three")])
        conn.execute(insert(Board.__table__), [row("b1", uid="f1"), row("b2", uid="f2")])
    crud = controller(Access())
    with Session(engine) as session:
        # every check references b1 (owned by f1). f2 owns b2, so f2's name is readable:
        # a filter correlated with the referenced board would ask whether b1 is f2's
        # (no) and hide it; f3 owns nothing
        for uid, shown in (("f2", "two"), ("f3", None), ("f1", "one")):
            ctx = context(session)
            crud._check_references(ctx, {"board_id": "b1", "uid": uid})
            assert ctx.related == {("folk", uid): shown}, uid
        fold = crud._foldable_related(context(session), {"uid": "f1"})
        stmt = crud._reference_statement(context(session), crud.services.resources["board"],
                                         ("id", "uid"), fold)
        assert "FROM board AS " in str(stmt.compile(engine))  # the row read: an alias
    engine.dispose()


def test_what_the_caller_may_not_read_is_null_and_a_field_rule_reads_apart(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Folk.__table__), [row("f1", name="hidden")])
        conn.execute(insert(Board.__table__), [row("b1", uid="f1")])
    with Session(engine) as session:
        ctx = context(session)
        controller(Access(readable=False))._check_references(
            ctx, {"board_id": "b1", "uid": "f1"})
        assert ctx.related == {("folk", "f1"): None}
        ruled = Access()
        ruled.has_field_rules = lambda resource: resource == "folk"  # type: ignore[method-assign]
        ctx = context(session)
        controller(ruled)._check_references(ctx, {"board_id": "b1", "uid": "f1"})
        assert ctx.related == {}  # left to prefetch, which applies the field rules
    engine.dispose()
