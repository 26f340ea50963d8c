"""apicrud.db.repository: the soft-delete and RBAC filters, run on a real SQLite engine."""

from __future__ import annotations

import pytest
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from apicrud.access.decide import AccessControl
from apicrud.access.policy import compile_policy
from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.db import query as q
from apicrud.db.repository import TRASHED, Repository, Status, live, trashed


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    uid: Mapped[str] = mapped_column(String(32))
    privacy: Mapped[str] = mapped_column(String(8), default="secret")
    name: Mapped[str] = mapped_column(String(64))


ALICE = Principal(uid="x-alice", username="alice")
BOB = Principal(uid="x-bob", username="bob")
ADMIN = Principal(uid="x-root", username="root", is_admin=True)

ROWS = [  # id, status, owner, privacy
    ("n1", "active", "x-alice", "secret"),
    ("n2", "disabled", "x-alice", "secret"),
    ("n3", "active", "x-bob", "public"),
    ("n4", "pending", "x-bob", "secret"),  # not trashed: live
    ("n5", "disabled", "x-bob", "public"),
]


@pytest.fixture()
def session():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all(Note(id=i, status=st, uid=u, privacy=pr, name=f"note {i}")
                  for i, st, u, pr in ROWS)
        s.commit()
        yield s
    engine.dispose()


@pytest.fixture()
def notes():
    policy = compile_policy({
        "privacy_levels": ["public", "invitee", "member", "manager", "secret"],
        "policies": {"note": [
            {"principal": "admin", "resource": "note:*", "actions": "crud"},
            {"principal": "user/{{uid}}", "resource": "note:{{uid}}", "actions": "crud"},
        ]}}, "test.yaml")
    access = AccessControl(policy, owners={"note": "uid"}, privacy={"note": "privacy"})
    return Repository(Note, "note", access)


def _ids(rows):
    return sorted(r.id for r in rows)


def test_status_names_the_column_values():
    assert Status.TRASHED == TRASHED == "disabled" and Status.ACTIVE == "active"
    assert q.TRASHED is TRASHED and q.Status is Status and q.active_only is live


def test_live_and_trashed_split_the_rows(session, notes):
    assert _ids(session.query(Note).filter(notes.live())) == ["n1", "n3", "n4"]
    assert _ids(session.query(Note).filter(trashed(Note))) == ["n2", "n5"]
    assert _ids(session.query(Note).filter(live(Note))) == ["n1", "n3", "n4"]


def test_get_live_reads_a_live_record_only(session, notes):
    assert notes.get_live(session, "n1").name == "note n1"
    assert notes.get_live(session, "n4").status == "pending"
    assert notes.get_live(session, "n2") is None  # trashed
    assert notes.get_live(session, "nope") is None


def test_get_live_with_columns_gives_a_row_of_them(session, notes):
    row = notes.get_live(session, "n3", "uid", "privacy")
    assert tuple(row) == ("x-bob", "public") and row.uid == "x-bob"
    assert notes.get_live(session, "n5", "id") is None
    assert notes.get_live(session, "n3", "id", where=[Note.uid == "x-alice"]) is None


def test_visible_adds_the_evaluators_sql(session, notes):
    def shown(who):
        return _ids(notes.page(session, notes.visible(who, "r"), [Note.id], 10))

    assert shown(ALICE) == ["n1", "n3"]  # own, and bob's public one; never the trash
    assert shown(BOB) == ["n3", "n4"]
    assert shown(ADMIN) == ["n1", "n3", "n4"]
    assert shown(ANONYMOUS) == []


def test_count_counts_what_page_pages(session, notes):
    where = notes.visible(ADMIN, "l")
    assert notes.count(session, where) == 3
    assert notes.count(session, [notes.live(), Note.uid == "x-bob"]) == 2
    assert notes.count(session, [notes.trashed()]) == 2


def test_page_orders_limits_and_offsets(session, notes):
    where = [notes.live()]
    assert [r.id for r in notes.page(session, where, [Note.id.desc()], 2)] == ["n4", "n3"]
    assert [r.id for r in notes.page(session, where, [Note.id.desc()], 2, offset=2)] == ["n1"]
    assert notes.page(session, where, [Note.id], 2, offset=5) == []
