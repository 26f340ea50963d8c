"""Writes of one record with Core statements: the INSERT and the versioned UPDATE.

What the ORM's unit of work does for a create or an update of one plain record (fill in
the column defaults, bump the version, refuse a stale one, apply ``onupdate``), done with
one statement built once per shape, so a request only binds values. It stands in for a
flush only where nothing else watches that flush: :func:`row_writer` answers None for a
model with mapper or attribute events, validators, a server-side default or version, or
one registered by :func:`orm_writes_only` (a module whose ``before_flush`` listener reads
the session's dirty objects of that model, such as the cut-off of suspended users).

A writer returns the record it wrote as a read-only row (:class:`RecordRow` of the model),
whose attributes are what the ORM object would hold after its flush.
"""

from __future__ import annotations

import inspect
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy import inspect as sa_inspect

from apicrud.db.repository import RecordRow, row_class
from apicrud.memo import Memo

#: models whose writes must go through the ORM's flush (see :func:`orm_writes_only`)
_ORM_ONLY: set[type] = set()
_MAPPER_EVENTS = ("before_insert", "after_insert", "before_update", "after_update")


def orm_writes_only(*models: Any) -> None:
    """Say that the writes of ``models`` must be flushed by the ORM: something (a session
    listener) reads them among the session's new or dirty objects."""
    _ORM_ONLY.update(m for m in models if m is not None)


def _plain_default(default: Any) -> tuple[bool, Any] | None:
    """(is it a call, the value or the zero-argument call) of a column's Python-side
    default or onupdate; None when a Core write could not know its value beforehand (an
    SQL expression, a sequence, a function of the execution context)."""
    if default is None:
        return (False, None)
    if getattr(default, "is_scalar", False):
        return (False, default.arg)
    if getattr(default, "is_callable", False):
        try:
            takes = inspect.signature(default.arg).parameters  # (follows the ORM's wrapper)
        except (TypeError, ValueError):
            return None
        return (True, default.arg) if not takes else None
    return None


class RowWriter:
    """INSERT and versioned UPDATE of one model's records (see the module's text)."""

    def __init__(self, model: Any, keys: tuple[str, ...], columns: dict[str, Any],
                 defaults: dict[str, tuple[bool, Any]],
                 onupdates: dict[str, tuple[bool, Any]], version: str,
                 next_version: Any) -> None:
        self.model = model
        self.table = model.__table__
        self.keys = keys  # attribute names, in the order of the model's column attributes
        self.columns = columns  # attribute name -> its Column
        self.attrs = frozenset(keys)
        self._defaults = defaults
        self._onupdates = onupdates
        self._version = version
        self._next_version = next_version
        self._row = row_class(model)
        self._insert = insert(self.table).values(
            {c: bindparam("v_" + c.key) for c in columns.values()})
        self._updates: Memo[tuple[str, ...], Any] = Memo(256)

    @staticmethod
    def _value(spec: tuple[bool, Any]) -> Any:
        call, arg = spec
        return arg(None) if call else arg

    def new_values(self, data: dict[str, Any]) -> dict[str, Any]:
        """Every attribute of a new record: ``data`` over the column defaults, and its
        first version."""
        values = {}
        for key in self.keys:
            value = data.get(key)
            # as the ORM does: None leaves the column to its default
            values[key] = value if value is not None else self._value(self._defaults[key])
        values[self._version] = self._next_version(None)
        return values

    def insert(self, connection: Any, values: dict[str, Any]) -> RecordRow:
        """INSERT the record whose attributes are ``values`` (see :meth:`new_values`)."""
        connection.execute(self._insert, self._bound(values))
        return self.row(values)

    def insert_many(self, connection: Any, rows: list[dict[str, Any]]) -> None:
        """INSERT every record of ``rows`` (each as :meth:`new_values` gives it) in one
        execution with a list of parameter sets (the driver's executemany)."""
        if rows:
            connection.execute(self._insert, [self._bound(values) for values in rows])

    def row(self, values: dict[str, Any]) -> RecordRow:
        """The record whose attributes are ``values``, as a read-only row."""
        return self._row.of(self.keys, [values[k] for k in self.keys])

    def _bound(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"v_" + self.columns[k].key: v for k, v in values.items()}

    def _update_statement(self, names: tuple[str, ...]) -> Any:
        stmt = self._updates.get(names)
        if stmt is None:
            table, columns = self.table, self.columns
            stmt = self._updates.put(names, update(table).where(
                columns["id"] == bindparam("w_id"),
                columns[self._version] == bindparam("w_version")).values(
                {columns[n]: bindparam("v_" + columns[n].key) for n in names}))
        return stmt

    def update(self, connection: Any, record: Any,
               changes: dict[str, Any]) -> tuple[RecordRow | None, dict[str, Any]]:
        """UPDATE ``record`` (as read) with ``changes`` where its version is still the one
        read, with the ``onupdate`` values and the next version. Returns the record as
        written (None when another request changed it first: nothing was written) and
        every value the statement set."""
        old_version = getattr(record, self._version)
        written = dict(changes)
        for key, spec in self._onupdates.items():
            if key not in written:
                written[key] = self._value(spec)
        written[self._version] = self._next_version(old_version)
        names = tuple(sorted(written))
        params = {"v_" + self.columns[n].key: written[n] for n in names}
        params.update(w_id=record.id, w_version=old_version)
        if connection.execute(self._update_statement(names), params).rowcount != 1:
            return None, written
        values = {k: getattr(record, k) for k in self.keys}
        values.update(written)
        return self._row.of(self.keys, [values[k] for k in self.keys]), written


def row_writer(model: Any) -> RowWriter | None:
    """The Core writer of ``model``'s records, or None where a write must be the ORM's
    (see the module's text)."""
    if model is None or model in _ORM_ONLY:
        return None
    mapper = sa_inspect(model)
    table = mapper.local_table
    if mapper.inherits is not None or mapper.polymorphic_on is not None or \
            mapper.validators or any(getattr(mapper.dispatch, e) for e in _MAPPER_EVENTS):
        return None
    vcol = mapper.version_id_col
    generator = mapper.version_id_generator
    if vcol is None or not callable(generator) or "id" not in table.c or \
            list(mapper.primary_key) != [table.c.id]:
        return None
    keys, columns = [], {}
    defaults: dict[str, tuple[bool, Any]] = {}
    onupdates: dict[str, tuple[bool, Any]] = {}
    version = None
    for prop in mapper.column_attrs:
        if len(prop.columns) != 1 or getattr(prop.columns[0], "table", None) is not table:
            return None
        column = prop.columns[0]
        if column.server_default is not None or column.server_onupdate is not None or \
                column.type.should_evaluate_none or getattr(model, prop.key).dispatch.set:
            return None
        default, onupdate = _plain_default(column.default), _plain_default(column.onupdate)
        if default is None or onupdate is None:
            return None
        keys.append(prop.key)
        columns[prop.key] = column
        defaults[prop.key] = default
        if column.onupdate is not None:
            onupdates[prop.key] = onupdate
        if column is vcol:
            version = prop.key
    if version is None or columns.get("id") is not table.c.id:
        return None
    return RowWriter(model, tuple(keys), columns, defaults, onupdates, version, generator)
