"""The live records of one model: the soft-delete and RBAC filters in one place.

A record is never deleted by an API write: it goes to the trashcan (its ``status``
becomes :attr:`Status.TRASHED`) and from then on only the trashcan reads it. Every other
reader asks a :class:`Repository` for the model's rows:

- :meth:`~Repository.live` is the soft-delete condition, for queries that join a model
  into a larger statement (:func:`live` is the same without a repository at hand);
- :meth:`~Repository.visible` adds the evaluator's SQL for what a principal may do
  (``access.where``): the rows ``find``, counts and embeds may show;
- :meth:`~Repository.get_live` reads one live record (or some of its columns) by id;
- :meth:`~Repository.count` and :meth:`~Repository.page` run a ``find`` over the clauses
  :meth:`~Repository.visible` (and the request's filter) make.

What a caller may see of a record it found is still the evaluator's (``access.allows``):
the repository only builds the SQL that narrows the rows first.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from apicrud.memo import Memo, PartsMemo


class Status(StrEnum):
    """A record's life: live, or in the trashcan (the column's value for that,
    ``disabled``, is older than the trashcan)."""

    ACTIVE = "active"
    TRASHED = "disabled"


TRASHED = Status.TRASHED
#: get_live's statements, per model and columns read
_GET_LIVE: Memo[tuple[Any, tuple[str, ...]], Any] = Memo(256)
_LIVE: Memo[Any, Any] = Memo(1024)  # model (or alias) -> its live() clause
#: count and page statements kept per repository
STATEMENT_MEMO_SIZE = 512


def live(model: Any) -> Any:
    """The soft-delete condition: trashed records are invisible to everything but Trashcan.

    "Not trashed" rather than "active": other states (an account ``pending``
    confirmation) are live records too. (An expression is immutable: each model's is
    built once.)
    """
    found = _LIVE.get(model)
    if found is None:
        found = _LIVE.put(model, model.status != Status.TRASHED)
    return found


def trashed(model: Any) -> Any:
    """The trashcan's condition: the records :func:`live` leaves out."""
    return model.status == Status.TRASHED


class RecordRow:
    """A record as a read loads it without the ORM: its column attributes by name,
    read-only. What get and find hand to the read steps of a controller that overrides
    none of them (see ``BasicCRUD.plain_reads``)."""

    __slots__ = ("__dict__",)

    @classmethod
    def of(cls, keys: tuple[str, ...], row: Any) -> RecordRow:
        """The record of ``row``, whose first values are the columns named ``keys``."""
        record = object.__new__(cls)
        record.__dict__.update(zip(keys, row, strict=False))  # (related values follow)
        return record

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only (a write loads the record)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__dict__.get('id')!r}>"


_ROW_CLASSES: dict[Any, type[RecordRow]] = {}


def row_class(model: Any) -> type[RecordRow]:
    """The :class:`RecordRow` class of ``model``'s rows: it names the model's table
    (``__tablename__``, ``__table__``) as the model does, for code that asks a record
    which table it comes from."""
    found = _ROW_CLASSES.get(model)
    if found is None:
        if getattr(model, "__table__", None) is None:
            return RecordRow
        found = _ROW_CLASSES.setdefault(model, type(f"{model.__name__}Row", (RecordRow,), {
            "__slots__": (), "__tablename__": model.__tablename__,
            "__table__": model.__table__, "__module__": __name__}))
    return found


def _connection(session: Any) -> Connection:
    """``session``'s connection, or ``session`` itself when it is a Connection."""
    return session if isinstance(session, Connection) else session.connection()


class Repository:
    """Reads of one model's live records, for one resource of the policy.

    :param model: the SQLAlchemy model
    :param resource: the resource's name in rbac.yaml (for :meth:`visible`)
    :param access: the evaluator (``AccessControl``; for :meth:`visible`)
    """

    def __init__(self, model: Any, resource: str | None = None, access: Any = None) -> None:
        self.model = model
        self.resource = resource
        self.access = access
        # count and page statements by the identity of their clauses: the evaluator's
        # memoized WHERE clauses give a caller's finds the same statement every time
        self._statements = PartsMemo(STATEMENT_MEMO_SIZE)

    def live(self) -> Any:
        """The soft-delete condition on this model (see :func:`live`)."""
        return live(self.model)

    def trashed(self) -> Any:
        """The records in the trashcan (see :func:`trashed`)."""
        return trashed(self.model)

    def visible(self, principal: Any, action: str) -> list[Any]:
        """The WHERE clauses selecting the live rows the evaluator lets ``principal`` do
        ``action`` (an rbac letter) on."""
        return [self.live(),
                self.access.where(principal, self.resource, self.model, action)]

    def get_live(self, session: Any, id_: Any, *columns: str, where: Iterable[Any] = ()) -> Any:
        """The live record ``id_`` (None if there is none, or it is trashed); with
        ``columns``, only those (a row: what the evaluator needs of a record, without
        loading a whole ORM object). ``where`` narrows it further."""
        model = self.model
        if columns and not where:  # the usual shape: its statement is built once
            key = (model, columns)
            stmt = _GET_LIVE.get(key)
            if stmt is None:
                stmt = _GET_LIVE.put(key, select(*(getattr(model, c) for c in columns)).where(
                    model.id == bindparam("id"), self.live()))
            return session.execute(stmt, {"id": id_}).first()
        if columns:
            return session.execute(select(*(getattr(model, c) for c in columns)).where(
                model.id == id_, self.live(), *where)).first()
        return session.execute(select(model).where(
            model.id == id_, self.live(), *where)).scalar_one_or_none()

    def count(self, session: Any, where: Iterable[Any]) -> int:
        """How many rows ``where`` (built from :meth:`visible` or :meth:`live`) selects,
        asked on ``session``'s connection (or on ``session``, a Connection)."""
        n: int = _connection(session).execute(self.count_statement(where)).scalar_one()
        return n  # (a Core result)

    def count_statement(self, where: Iterable[Any]) -> Any:
        """The statement :meth:`count` runs for ``where`` (built once per clauses)."""
        parts = tuple(where)
        stmt = self._statements.get(parts, ("count",))
        if stmt is None:
            stmt = self._statements.put(parts, ("count",), select(func.count()).select_from(
                self.model).where(*parts))
        return stmt

    def page(self, session: Any, where: Iterable[Any], order: Iterable[Any], limit: int,
             offset: int = 0, columns: tuple[Any, ...] | None = None,
             params: dict[str, Any] | None = None) -> list[Any]:
        """Up to ``limit`` records ``where`` selects, in ``order``, from ``offset`` on
        (keyset paging passes its ``after`` clause in ``where``, its values in
        ``params``); with ``columns`` (the model's, labelled by attribute), as
        :class:`RecordRow` instead of ORM objects (then ``session`` may be a
        Connection)."""
        where = tuple(where)
        order = tuple(order)
        parts = (*where, *order)
        extra = ("page", len(where), limit, offset, columns is not None)
        found = self._statements.get(parts, extra)
        if found is None:  # the statement, and the attribute names of its columns
            stmt = select(*columns) if columns else select(self.model)
            stmt = stmt.where(*where).order_by(*order).limit(limit)
            if offset:
                stmt = stmt.offset(offset)
            found = self._statements.put(parts, extra, (
                stmt, tuple(c.key for c in columns or ())))
        stmt, keys = found
        if columns:
            make = row_class(self.model).of
            return [make(keys, row)
                    for row in _connection(session).execute(stmt, params or {}).all()]
        return list(session.execute(stmt, params or {}).scalars())
