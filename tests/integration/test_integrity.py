"""Integrity errors are told apart by the driver's error code on the backend under test
(SQLite, PostgreSQL or MariaDB: whichever the suite runs on), not by their message."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from apicrud.db.integrity import Violation, integrity_problem, violation


@pytest.fixture(scope="module")
def engine(settings):
    eng = sa.create_engine(settings.sqlalchemy_url)
    if eng.dialect.name == "sqlite":
        sa.event.listen(eng, "connect",
                        lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    meta = sa.MetaData()
    parent = sa.Table("integrity_probe_parent", meta,
                      sa.Column("id", sa.String(8), primary_key=True),
                      sa.Column("name", sa.String(20), nullable=False, unique=True))
    sa.Table("integrity_probe_child", meta,
             sa.Column("id", sa.String(8), primary_key=True),
             sa.Column("parent_id", sa.String(8), sa.ForeignKey(parent.c.id), nullable=False))
    meta.drop_all(eng)
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO integrity_probe_parent (id, name) VALUES ('p1', 'one')"))
        conn.execute(sa.text("INSERT INTO integrity_probe_child (id, parent_id) "
                             "VALUES ('c1', 'p1')"))
    yield eng
    meta.drop_all(eng)
    eng.dispose()


def _error(engine, statement: str) -> IntegrityError:
    with engine.connect() as conn:
        with pytest.raises(IntegrityError) as caught:
            conn.execute(sa.text(statement))
        conn.rollback()
    return caught.value


@pytest.mark.parametrize("statement, kind, status", [
    ("INSERT INTO integrity_probe_parent (id, name) VALUES ('p2', 'one')", Violation.UNIQUE, 409),
    ("INSERT INTO integrity_probe_parent (id, name) VALUES ('p1', 'two')", Violation.UNIQUE, 409),
    ("INSERT INTO integrity_probe_child (id, parent_id) VALUES ('c2', 'nope')",
     Violation.FOREIGN_KEY, 409),
    ("DELETE FROM integrity_probe_parent WHERE id = 'p1'", Violation.FOREIGN_KEY, 409),
    ("INSERT INTO integrity_probe_parent (id, name) VALUES ('p3', NULL)",
     Violation.NOT_NULL, 400),
], ids=["unique", "primary-key", "missing-parent", "parent-in-use", "not-null"])
def test_each_violation_is_named_by_its_code(engine, statement, kind, status):
    exc = _error(engine, statement)
    assert violation(exc) is kind
    problem = integrity_problem(exc, "thing")
    assert problem.status == status
    assert problem.detail.startswith("thing: ")
