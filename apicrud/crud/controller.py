"""BasicCRUD: create, get, update, delete and find on any declared resource.

Each public operation is a fixed sequence of small steps (``before_create``,
``serialize``, ...). A resource with special needs subclasses BasicCRUD and overrides
one step; the generic code never names a resource.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.types import TypeDecorator

from apicrud.access import fields as fieldrules
from apicrud.access.policy import VERBS
from apicrud.context import READS, Reply, RequestContext
from apicrud.crud import paging
from apicrud.crud.registry import ResourceSpec
from apicrud.db import query as q
from apicrud.db.base import iso_datetime, new_id
from apicrud.db.integrity import integrity_problem
from apicrud.db.repository import RecordRow, Repository, Status, live, row_class
from apicrud.db.rowwrite import RowWriter, row_writer
from apicrud.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Problem,
    UnsupportedMediaType,
)
from apicrud.i18n import N_
from apicrud.memo import Memo

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

    from apicrud.services import Offline, Services

log = logging.getLogger("apicrud.crud")
TRASHED = Status.TRASHED
#: Load statements kept per controller (one per caller's access key where related
#: fields join under the caller's read filter): the callers of the last moments.
LOAD_MEMO_SIZE = 1024
#: The steps a read hands its records to: a controller that overrides none of them reads
#: rows instead of ORM objects on get and find (see :attr:`BasicCRUD.plain_reads`).
READ_HOOKS = ("serialize", "record_actions", "prefetch", "embed", "etag", "tag",
              "_check_selection", "_shows")
#: The steps that may change a record object or need one: a controller that overrides
#: none of them (nor a read step) writes a single create or update with Core statements
#: (see :attr:`BasicCRUD.plain_writes`).
WRITE_HOOKS = ("before_update", "after_create", "create", "update", "patch", "_insert",
               "_change", "_changes")


def json_value(value: Any) -> Any:
    """A column value as JSON shows it (date-times in UTC with microseconds and ``Z``)."""
    if isinstance(value, datetime):
        return iso_datetime(value)
    return value


class BasicCRUD:
    """Generic controller bound to one :class:`ResourceSpec` at start-up."""

    #: Do get and find hand the read steps (``serialize``, ``record_actions``, ...)
    #: read-only rows, whose attributes are the model's column attributes, instead of ORM
    #: objects? Rows skip the ORM's session layer and instance loading.
    #: ``None`` (the default): yes, unless the controller overrides one of
    #: :data:`READ_HOOKS` or the model maps more than its own table's columns; a subclass
    #: whose overrides read only columns may set ``True``, one that needs objects ``False``.
    #: Writes (update, delete, restore) always load ORM objects.
    plain_reads: bool | None = None
    #: Are creates and a single update written with Core statements (an INSERT, one for
    #: a whole batch with a parameter set per record; a versioned UPDATE of the row a
    #: plain read loads) instead of ORM objects and a flush? Every check, hook, audit
    #: entry and answer stays the same; the unit of work does not run. ``None`` (the
    #: default): yes where reads are plain, the controller overrides none of
    #: :data:`WRITE_HOOKS`, and :func:`apicrud.db.rowwrite.row_writer` finds nothing else
    #: watching the model's flushes (events, validators, server-side defaults). ``False``
    #: keeps the ORM. Updates of several records, bulk writes by filter, deletes and
    #: restores always use the ORM.
    plain_writes: bool | None = None

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        self.resource = resource
        self.services = services
        self.model: Any = resource.model  # a model class of the application
        self.access = services.access
        #: the model's live records, as the evaluator lets callers see them
        self.records = Repository(self.model, resource.name, self.access)
        # statements built once per shape and caller's access key (see _load_statement
        # and _prefetch_statement)
        self._load_memo: Memo[tuple[Any, ...], Any] = Memo(LOAD_MEMO_SIZE)
        self._prefetch_memo: Memo[tuple[Any, ...], Any] = Memo(LOAD_MEMO_SIZE)
        self._reference_memo: Memo[tuple[Any, ...], Any] = Memo(LOAD_MEMO_SIZE)
        self._sort_memo: Memo[tuple[Any, ...], Any] = Memo(LOAD_MEMO_SIZE)
        #: the labelled columns a plain read selects (None: reads load ORM objects)
        self.row_columns: tuple[Any, ...] | None = self._row_columns()
        self.row_keys = tuple(c.key for c in self.row_columns or ())
        self.row_class = row_class(self.model) if self.model is not None else RecordRow

    # -- hooks: override in a subclass ----------------------------------------------
    def before_create(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        """Adjust or check the values of a new record before it is written."""
        return data

    def after_create(self, ctx: RequestContext, record: Any, reply: dict[str, Any]) -> None:
        """Called after the insert is flushed; may add fields to ``reply``."""

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        return changes

    def before_delete(self, ctx: RequestContext, record: Any) -> None:
        pass

    @classmethod
    def before_purge(cls, services: Services | Offline, record: Any,
                     after_commit: list[Callable[[], Any]]) -> None:
        """A trashed record is about to be deleted for good (a purge, or the worker's
        retention, which has no controllers: hence a class method): append to
        ``after_commit`` what must go with it once that is committed (e.g. bytes kept
        outside the database)."""

    def before_restore(self, ctx: RequestContext, record: Any) -> None:
        """Refuse (raise a Problem) to bring this trashed record back; the checks of a
        create run as well (see :meth:`check_create`)."""

    def serialize(self, ctx: RequestContext, record: Any) -> dict[str, Any]:
        """The record as the caller may see it: exposed fields, ``rbac``, related values."""
        resource = self.resource
        if resource.related and (self.access.has_conditions(resource.name) or any(
                (target, getattr(record, via)) not in ctx.related
                for _, via, target in self._related_ids
                if getattr(record, via) is not None)):
            self.prefetch(ctx, [record])  # (a page's were fetched at once)
        return self._serialized(ctx, [record])[0]

    def serialize_page(self, ctx: RequestContext, records: list[Any]) -> list[dict[str, Any]]:
        """A page of records, serialized after :meth:`prefetch` loaded their related
        values: :meth:`serialize` of each. Where ``serialize`` and ``prefetch`` are this
        class's own and no condition reads more of a record, one loop gives the same
        answers, with what depends only on the caller and the resource (the evaluator's
        functions for the ``rbac`` letters and the readable fields) looked up once."""
        if not self._page_serializer or self.access.has_conditions(self.resource.name):
            return [self.serialize(ctx, r) for r in records]
        return self._serialized(ctx, records)

    def _serialized(self, ctx: RequestContext, records: list[Any]) -> list[dict[str, Any]]:
        """What :meth:`serialize` shows of each record, its related values loaded."""
        name = self.resource.name
        exposed, timed, related = self.resource.exposed, self._timed_fields, self._related_ids
        values = self._exposed_values
        rbac = "rbac" in self.resource.computed
        if type(self).record_actions is BasicCRUD.record_actions:
            letters = self.access.actions_for(ctx.principal, name)
        else:
            def letters(record: Any) -> str:
                return self.record_actions(ctx, record)
        readable = self.access.read_fields_for(ctx.principal, name) \
            if self.access.has_field_rules(name) else None
        known = ctx.related
        out = []
        for record in records:
            body = dict(zip(exposed, values(record), strict=True))
            for field in timed:
                body[field] = json_value(body[field])
            if rbac:
                body["rbac"] = letters(record)
            allowed = readable(record) if readable is not None else None
            for prop, via, target in related:
                if allowed is None or prop in allowed:
                    body[prop] = json_value(known.get((target, getattr(record, via))))
            out.append(body if allowed is None else fieldrules.limit(body, allowed))
        return out

    @cached_property
    def _page_serializer(self) -> bool:
        """May :meth:`serialize_page` take its one loop (``serialize`` and ``prefetch``
        are this class's own)?"""
        cls = type(self)
        return cls.serialize is BasicCRUD.serialize and cls.prefetch is BasicCRUD.prefetch

    @cached_property
    def _exposed_values(self) -> Callable[[Any], tuple[Any, ...]]:
        """A record's exposed values, in the order of ``resource.exposed``."""
        exposed = self.resource.exposed
        if len(exposed) > 1:
            return attrgetter(*exposed)
        return lambda record: tuple(getattr(record, n) for n in exposed)

    @cached_property
    def _related_ids(self) -> tuple[tuple[str, str, str], ...]:
        """(property, attribute holding the related id, target resource) per relation."""
        return tuple((prop, via, target)
                     for prop, (via, target, _) in self.resource.related.items())

    @cached_property
    def _timed_fields(self) -> tuple[str, ...]:
        """The exposed fields whose values may need :func:`json_value` (a date-time): all
        but the columns whose type says they hold something else (a type decorator may
        turn anything into a date-time: its fields keep the conversion)."""
        table = getattr(self.model, "__table__", None)
        timed = []
        for name in self.resource.exposed:
            column = table.c.get(name) if table is not None else None
            kind = None
            if column is not None and not isinstance(column.type, TypeDecorator):
                try:
                    kind = column.type.python_type
                except NotImplementedError:
                    pass
            if kind is None or issubclass(kind, datetime) or \
                    not issubclass(kind, (str, int, float, bool, Decimal)):
                timed.append(name)
        return tuple(timed)

    def record_actions(self, ctx: RequestContext, record: Any) -> str:
        """The ``rbac`` letters of a record: what :meth:`authorize` would allow. A
        subclass that adds rules there adds their letters here."""
        return self.access.actions(ctx.principal, self.resource.name, record)

    def prefetch(self, ctx: RequestContext, records: list[Any]) -> None:
        """Load related values (e.g. an author's name) for a page in one query per relation.

        Only related records the caller may read are loaded, through the same SQL the
        evaluator gives ``find``: serialization never jumps a permission scope.
        """
        if self.access.has_conditions(self.resource.name):
            self.access.prefetch_conditions(ctx.principal, self.resource.name, records)
        for via, target, fieldname in self.resource.related.values():
            ids = {getattr(r, via) for r in records} - {None}
            ids = {i for i in ids if (target, i) not in ctx.related}
            if not ids:
                continue
            for i in ids:
                ctx.related[(target, i)] = None  # unreadable or gone: shown as null
            limited = self.access.has_field_rules(target)
            inputs = self.access.record_columns(target) if limited else ()
            stmt = self._prefetch_statement(ctx, target, fieldname, inputs, len(ids) == 1)
            rows = ctx.reads().execute(stmt, {"ids": sorted(ids)} if len(ids) > 1
                                               else {"id": next(iter(ids))}).all()
            for row in rows:
                if limited:
                    allowed = self.access.read_fields(ctx.principal, target,
                                                      dict(zip(inputs, row[2:], strict=True)))
                    if allowed is not None and fieldname not in allowed:
                        continue
                ctx.related[(target, row[0])] = row[1]

    def _prefetch_statement(self, ctx: RequestContext, target: str, fieldname: str,
                            inputs: tuple[str, ...], single: bool) -> Any:
        """The SELECT of one relation's values for :meth:`prefetch`: the ids bound (one by
        a plain comparison, several by an expanding IN list), the caller's read filter of
        the target (under field rules, with the columns deciding it); built once per
        caller's access key."""
        key = (target, fieldname, inputs, single, ctx.principal.access_key)
        memo = self._prefetch_memo
        found = memo.get(key)
        if found is not None:
            return found
        other: Any = self.services.resources[target].model  # references have one
        match = other.id == bindparam("id") if single else \
            other.id.in_(bindparam("ids", expanding=True))
        return memo.put(key, select(other.id, getattr(other, fieldname),
                                    *(getattr(other, c) for c in inputs)).where(
            match, live(other), self.access.where(ctx.principal, target, other, "r")))

    # -- helpers --------------------------------------------------------------------
    def visible(self, ctx: RequestContext, action: str) -> list[ColumnElement[bool]]:
        """The WHERE clauses selecting the rows ``find`` may show: live ones the
        evaluator lets the caller ``action``. A resource whose rows are about other
        records (the audit trail) narrows them further."""
        return self.records.visible(ctx.principal, action)

    def etag(self, record: Any, fields: tuple[str, ...] | None = None,
             view: dict[str, Any] | None = None) -> str:
        """The record's version as an entity tag; a representation limited to ``fields``
        gets its own tag (``"<version>.<fields>"``), whose version part still serves as
        ``If-Match`` for a write. With ``view`` (what a caller under field rules reads of
        the record) the tag is a digest of that view instead: a change to a field they
        may not read changes nothing they can observe (see :meth:`tag`)."""
        if view is not None:
            text = json.dumps(view, sort_keys=True, default=str, separators=(",", ":"))
            digest = "v" + hashlib.sha256(f"{record.id}:{text}".encode()).hexdigest()[:20]
        else:
            digest = hashlib.sha256(f"{record.id}:{record.version}".encode()).hexdigest()[:20]
        if fields:
            shape = hashlib.sha256(",".join(fields).encode()).hexdigest()[:8]
            return f'"{digest}.{shape}"'
        return f'"{digest}"'

    def tag(self, ctx: RequestContext, record: Any, shape: tuple[str, ...] | None = None,
            body: dict[str, Any] | None = None) -> str:
        """The ETag the caller gets for ``record``: of its version, or, where field rules
        limit what the caller reads of it, of their view (``body``: its serialization)."""
        if self.access.read_fields(ctx.principal, self.resource.name, record) is None:
            return self.etag(record, shape)
        return self.etag(record, shape, body if body is not None
                         else self.serialize(ctx, record))

    def check_precondition(self, ctx: RequestContext, records: list[Any]) -> None:
        """``If-Match`` against each record's current tag (a write of several records
        lists the tag of each): 412 when one is stale, nothing written; 428 when the
        resource requires one (``if_match: required``) and the request gave none."""
        given = (ctx.headers.get("If-Match") or "").strip()
        if self.resource.if_match_required and not given:
            raise PreconditionRequired(
                N_("%(resource)s: send If-Match with the ETag you read",
                   resource=self.resource.name),
                errors={"If-Match": N_("is required")})
        tags = {t.strip().removeprefix("W/") for t in given.split(",") if t.strip()}
        if not tags or "*" in tags:
            return
        for record in records:
            version = self.tag(ctx, record)
            if not any(t == version or (t.startswith(version[:-1] + ".") and t.endswith('"'))
                       for t in tags):
                if len(records) == 1:
                    raise PreconditionFailed(N_("If-Match does not match the current ETag"))
                raise PreconditionFailed(
                    N_("If-Match: %(id)s was changed since it was read", id=record.id),
                    errors={record.id: N_("changed since read")})

    def selected_fields(self, ctx: RequestContext) -> tuple[str, ...] | None:
        """``fields=a,b``: the fields a response carries (``id`` always); None: all. A
        field that isn't readable in the representation is a 400, as an unknown one."""
        raw = ctx.params.get("fields")
        if raw is None:
            return None
        names = [n.strip() for n in str(raw).split(",") if n.strip()]
        readable = self.readable_fields(ctx)
        unknown = [n for n in names if n not in readable]
        if unknown or not names:
            bad = unknown[0][:64] if unknown else ""
            if unknown:
                raise BadRequest(N_("fields: unknown field %(name)s", name=repr(bad)),
                                 errors={"fields": N_("unknown field %(name)s", name=repr(bad))})
            raise BadRequest(N_("fields: name at least one field"),
                             errors={"fields": N_("name at least one field")})
        return tuple(dict.fromkeys(["id", *names]))

    def readable_fields(self, ctx: RequestContext) -> frozenset[str]:
        """The fields of this resource's representation the caller may read on some
        record (embedded records come with ``embed``, not with ``fields``)."""
        every = (frozenset(self.resource.exposed) | self.resource.computed |
                 frozenset(self.resource.related)) - frozenset(self.resource.embeds)
        allowed = self.access.possible_fields(ctx.principal, self.resource.name, self.model)
        return every if allowed is None else every & (allowed | fieldrules.ALWAYS_READABLE)

    def filter_columns(self, ctx: RequestContext) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The columns ``filter``, ``sort`` and ``group_by`` may name, and the text fields
        ``q`` searches: under field rules, only those the caller may read on every record
        they may list (any other is an unknown field)."""
        allowed = self.access.list_fields(ctx.principal, self.resource.name, self.model)
        if allowed is None:
            return self.resource.fields, self.resource.search
        return (fieldrules.restrict_columns(self.resource.fields, allowed),
                tuple(f for f in self.resource.search if f in allowed))

    def selected_embeds(self, ctx: RequestContext) -> tuple[str, ...]:
        """``embed=a,b``: the x-embed properties to fill; unknown ones are a 400."""
        raw = ctx.params.get("embed")
        if raw is None:
            return ()
        names = tuple(dict.fromkeys(n.strip() for n in str(raw).split(",") if n.strip()))
        allowed = self.access.possible_fields(ctx.principal, self.resource.name, self.model)
        unknown = [n for n in names if n not in self.resource.embeds or
                   (allowed is not None and n not in allowed)]
        if unknown or not names:
            bad = unknown[0][:64] if unknown else ""
            raise BadRequest(N_("embed: no embeddable %(name)s", name=repr(bad)) if unknown else
                             N_("embed: name at least one"), errors={"embed": N_("unknown embed")})
        return names

    def embed(self, ctx: RequestContext, records: list[Any], bodies: list[dict[str, Any]],
              names: tuple[str, ...]) -> None:
        """Fill each embed of ``bodies`` (the serialized ``records``): one query per embed
        whatever the page size, each embedded record under its own resource's read filter
        and serialized by its own controller (so its rules and rbac apply). What the
        caller may not read is null (to one) or absent (to many)."""
        for name in names:
            emb = self.resource.embeds[name]
            target = self.services.controllers[emb.resource]
            if not emb.many:
                ids = sorted({getattr(r, emb.via) for r in records} - {None})
                found = {}
                if ids:
                    rows = self._embedded(ctx, name, target, {"ids": ids})
                    target.prefetch(ctx, rows)
                    found = {row.id: body for row, body in
                             zip(rows, target.serialize_page(ctx, rows), strict=True)}
                for record, body in zip(records, bodies, strict=True):
                    if self._shows(ctx, record, name):
                        body[name] = found.get(getattr(record, emb.via))
                continue
            parents = sorted({r.id for r in records})
            children: dict[Any, list[dict[str, Any]]] = {i: [] for i in parents}
            if parents:
                rows = self._embedded(ctx, name, target, {"ids": parents})
                target.prefetch(ctx, rows)
                for row, body in zip(rows, target.serialize_page(ctx, rows), strict=True):
                    children[getattr(row, emb.via)].append(body)
            for record, body in zip(records, bodies, strict=True):
                if self._shows(ctx, record, name):
                    body[name] = children.get(record.id, [])

    def _embedded(self, ctx: RequestContext, name: str, target: BasicCRUD,
                  params: dict[str, Any]) -> list[Any]:
        """The records of embed ``name`` for the ids in ``params`` (the records it points
        to; to many, the parents' children, at most the embed's limit each, in its sort),
        under the target's read filter for the caller: rows where the target reads rows
        (:attr:`plain_reads`), else ORM objects. The statement is built once per embed
        and caller's access key."""
        emb = self.resource.embeds[name]
        columns = target.row_columns
        key = ("embed", name, ctx.principal.access_key)
        stmt = self._prefetch_memo.get(key)
        if stmt is None:
            model = target.model
            readable = self.access.where(ctx.principal, emb.resource, model, "r")
            picked = select(*columns) if columns is not None else select(model)
            if not emb.many:
                stmt = picked.where(model.id.in_(bindparam("ids", expanding=True)),
                                    live(model), readable)
            else:
                via = getattr(model, emb.via)
                sort = q.parse_sort(emb.sort, target.resource.fields)
                rank = func.row_number().over(
                    partition_by=via, order_by=q.order_by(sort, target.resource.fields,
                                                          model.id)).label("rank")
                ranked = select(model.id.label("eid"), rank).where(
                    via.in_(bindparam("ids", expanding=True)), live(model),
                    readable).subquery()
                stmt = picked.join(ranked, ranked.c.eid == model.id) \
                    .where(ranked.c.rank <= emb.limit).order_by(via, ranked.c.rank)
            stmt = self._prefetch_memo.put(key, stmt)
        if columns is None:
            return list(ctx.db.execute(stmt, params).scalars())
        make = target.row_class.of
        return [make(target.row_keys, row) for row in ctx.reads().execute(stmt, params).all()]

    def _check_selection(self, ctx: RequestContext, record: Any,
                         fields: tuple[str, ...] | None, embeds: tuple[str, ...]) -> None:
        """``fields=`` and ``embed=`` of one record name only what the caller may read of
        it (field rules): anything else is unknown, as on a find (400)."""
        allowed = self.access.read_fields(ctx.principal, self.resource.name, record)
        if allowed is None:
            return
        for param, names in (("fields", fields or ()), ("embed", embeds)):
            bad = [n for n in names if n not in allowed | fieldrules.ALWAYS_READABLE]
            if bad:
                raise fieldrules.unknown_field(param, bad[0])

    def _shows(self, ctx: RequestContext, record: Any, name: str) -> bool:
        """May the caller read property ``name`` of ``record`` (field rules)?"""
        allowed = self.access.read_fields(ctx.principal, self.resource.name, record)
        return allowed is None or name in allowed

    @staticmethod
    def _shape(fields: tuple[str, ...] | None, embeds: tuple[str, ...]) -> tuple[str, ...]:
        return (*(fields or ()), *(f"+{e}" for e in embeds))

    def _related_aliases(self) -> list[tuple[str, str, Any, str]]:
        """(via, target resource, aliased target model, field) of each related field; the
        aliases are made once, so the evaluator's memo of their WHERE clauses holds."""
        aliases = self.__dict__.get("_aliases")
        if aliases is None:
            aliases = []
            for via, target, fieldname in self.resource.related.values():
                spec = self.services.resources.get(target)
                if spec is not None and spec.model is not None:
                    aliases.append((via, target, aliased(spec.model), fieldname))
            self._aliases = aliases
        return aliases

    def _row_columns(self) -> tuple[Any, ...] | None:
        """The model's column attributes, each labelled by its attribute's name, when
        reads may load rows (see :attr:`plain_reads`); else None."""
        if self.plain_reads is False or self.model is None:
            return None
        if self.plain_reads is None and self._overrides(READ_HOOKS):
            return None
        mapper = sa_inspect(self.model)
        table = mapper.local_table
        if mapper.inherits is not None or mapper.polymorphic_on is not None:
            return None
        columns = []
        for prop in mapper.column_attrs:
            if len(prop.columns) != 1 or getattr(prop.columns[0], "table", None) is not table:
                return None  # an expression or another table's column: the ORM reads those
            columns.append(prop.columns[0].label(prop.key))
        keys = {prop.key for prop in mapper.column_attrs}
        needed = {"id", *self.resource.exposed,
                  *(via for via, _, _ in self.resource.related.values()),
                  *(e.via for e in self.resource.embeds.values() if not e.many)}
        return tuple(columns) if needed <= keys else None

    def _overrides(self, hooks: tuple[str, ...]) -> bool:
        """Does this controller's class override one of ``hooks``?"""
        return any(getattr(type(self), hook) is not getattr(BasicCRUD, hook)
                   for hook in hooks)

    @property
    def row_writer(self) -> RowWriter | None:
        """The Core writer of creates and single updates (see :attr:`plain_writes`), or
        None. Decided at the first write (modules say which models keep the ORM's flush
        while the application starts)."""
        found: RowWriter | bool | None = self.__dict__.get("_row_writer", False)
        if found is False:
            found = None
            if self.plain_writes is not False and self.row_columns is not None and (
                    self.plain_writes or not self._overrides(WRITE_HOOKS)):
                found = row_writer(self.model)
            self._row_writer = found
        return found if isinstance(found, RowWriter) else None

    def _audit_row(self, ctx: RequestContext, record_id: str, action: str, rule: str | None,
                   old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """The audit entry of a Core write (what the flush listener notes for the ORM's)."""
        audit = getattr(self.services, "audit", None)
        if audit is not None:
            audit.note_row(ctx, self.model, record_id, action, rule, old, new)

    def _write_rows(self, ctx: RequestContext, write: Callable[[Any], Any]) -> Any:
        """Run a Core write on the request's connection; a conflict rolls back (409)."""
        try:
            return write(ctx.connection())
        except IntegrityError as exc:
            ctx.rollback()
            raise integrity_problem(exc, self.resource.name) from None

    def _load(self, ctx: RequestContext, id_: str, for_update: bool = False,
              plain: bool = False) -> Any:
        """A live record the caller may read, or 404 (no existence leak); with ``plain``
        (a read, or a plain write, where :attr:`row_columns` allows it) a
        :class:`~apicrud.db.repository.RecordRow`.

        Related values (e.g. a message's author name) come in the same query, each by
        an outer join whose ON clause is the evaluator's read filter of the related
        resource: what the caller may not read joins nothing and shows as null.
        """
        dialect = ctx.services.db.dialect
        lock = for_update and dialect != "sqlite"
        columns = self.row_columns if plain else None
        stmt, joined = self._load_statement(ctx, lock, dialect, columns)
        # rows need no ORM session layer: the session's own connection runs the statement
        row = (ctx.db.execute(stmt, {"load_id": id_}) if columns is None else
               (ctx.connection() if for_update else ctx.reads()).execute(
                   stmt, {"load_id": id_})).first()
        if row is None:
            record = None
        elif columns is not None:
            record = self.row_class.of(self.row_keys, row)
        else:
            record = row[0]
        if row is None or record is None or \
                not self.access.allows(ctx.principal, "r", self.resource.name, record):
            raise NotFound(N_("%(resource)s %(id)s not found", resource=self.resource.name,
                              id=id_[:40]))
        first = 1 if columns is None else len(columns)
        for (via, target, _, _), value in zip(joined, row[first:], strict=True):
            if getattr(record, via) is not None:
                ctx.related[(target, getattr(record, via))] = value
        return record

    def _load_statement(self, ctx: RequestContext, lock: bool, dialect: str,
                        columns: tuple[Any, ...] | None = None,
                        ) -> tuple[Any, list[tuple[str, str, Any, str]]]:
        """The SELECT of :meth:`_load`, the record's id a bound parameter, and the related
        fields it joins. Built once per shape: the related joins' ON clauses are the
        evaluator's memoized read filters of the caller's access key, so the statement
        (and SQLAlchemy's cache key of it) is reused by the caller's next requests."""
        # MariaDB has no FOR UPDATE OF: a locking load there reads related values apart;
        # so do targets with field rules (see prefetch)
        joined = [] if lock and dialect in ("mysql", "mariadb") else [
            a for a in self._related_aliases() if not self.access.has_field_rules(a[1])]
        key = (lock, columns is not None, ctx.principal.access_key if joined else None)
        memo = self._load_memo
        found = memo.get(key)
        if found is not None:
            return found, joined
        stmt = select(*(columns or (self.model,)),
                      *(getattr(a, f) for _, _, a, f in joined)).where(
            self.model.id == bindparam("load_id"), self.records.live())
        for via, target, alias, _ in joined:
            stmt = stmt.outerjoin(alias, and_(
                alias.id == getattr(self.model, via), live(alias),
                self.access.where(ctx.principal, target, alias, "r")))
        if lock:
            stmt = stmt.with_for_update(of=self.model) if joined else stmt.with_for_update()
        return memo.put(key, stmt), joined

    def authorize(self, ctx: RequestContext, action: str, record: Any) -> str:
        """Raise unless the caller may ``action`` the record (a dict of values for create);
        return the rule that allowed it (what ``can-i`` explains).

        Override to add rules rbac.yaml cannot say; the default asks the evaluator. A
        create refused inside a membership (e.g. a message for a list where the caller
        may not post) is a 404 naming that field, as if the list did not exist.
        """
        if action == "c" and isinstance(record, dict) and \
                self.access.has_conditions(self.resource.name):
            # a condition on a new record reads the values it will have: defaults too
            record = {**self.column_defaults(), **record}
        decision = self.access.decide(ctx.principal, action, self.resource.name, record)
        if decision.allowed:
            return decision.reason
        attr = self.access.membership_attr(self.resource.name)
        if action == "c" and attr and attr != "id" and _get(record, attr) is not None:
            raise NotFound(N_("%(field)s: not found", field=attr), errors={attr: N_("not found")})
        raise Forbidden(N_("not allowed to %(verb)s this %(resource)s",
                           verb=VERBS.get(action, action), resource=self.resource.name))

    def column_defaults(self) -> dict[str, Any]:
        """The model's constant column defaults (what an insert fills in)."""
        found = self.__dict__.get("_defaults")
        if found is None:
            found = {}
            for column in self.model.__table__.columns:
                default = column.default
                if default is not None and default.is_scalar:
                    found[column.key] = default.arg
            self._defaults = found
        return found

    def check_owner(self, ctx: RequestContext, values: dict[str, Any], action: str,
                    moved: bool = False) -> None:
        """A record is created for, or moved to, another owner only by a principal that a
        rule on ``{resource}:*`` allows to ``action`` (CONTRACT 3): 403 naming the field.

        :param moved: the owner attribute changes (an update): even to the caller, since
            taking over someone's record is moving it
        """
        owner = self.resource.owner
        if not owner or owner == "id" or owner not in values:
            return
        if not moved and values[owner] == ctx.principal.uid:
            return
        if self.access.allows_every(ctx.principal, action, self.resource.name):
            return
        text = N_("%(field)s: only an administrator of every %(resource)s may move one "
                  "for another user", field=owner, resource=self.resource.name) if moved else \
            N_("%(field)s: only an administrator of every %(resource)s may create one for "
               "another user", field=owner, resource=self.resource.name)
        raise Forbidden(text, errors={owner: N_("may not be set to another user")})

    def check_create(self, ctx: RequestContext, data: dict[str, Any],
                     quotas: bool = True) -> str:
        """Every check a create of ``data`` must pass, without writing anything: ids in
        the payload, the owner rule, the policy's ``c`` (and a subclass's own rules in
        :meth:`authorize`), and with ``quotas`` the pipeline's create checks (grants).
        Creates, restores from the trashcan and ``can-i c`` all ask this one method.
        Returns the rule that allowed it."""
        self._check_references(ctx, data)
        self._check_scope(ctx, data)
        self.check_owner(ctx, data, "c")
        reason = self.authorize(ctx, "c", data)
        if quotas:
            for check in self.services.pipeline.create_checks:
                check(ctx, self.resource, data)
        return reason

    def check_restore(self, ctx: RequestContext, record: Any,
                      values: dict[str, Any]) -> str:
        """Restoring brings a record back into the world: it passes what creating it
        now would (:meth:`check_create`), and what :meth:`before_restore` adds. Returns
        the rule that allowed it."""
        self.before_restore(ctx, record)
        return self.check_create(ctx, values)

    def roles_changed(self, ctx: RequestContext, records: list[Any],
                      *extra_uids: str | None) -> None:
        """Drop the cached roles these records (and ``extra_uids``) give or take away."""
        self.services.roles.changed(ctx, self.resource.name, records, extra_uids)

    def _check_references(self, ctx: RequestContext, data: dict[str, Any]) -> None:
        """Every id of another record in the input must name a record the caller may read.

        The first record read also brings the related values the answer will show
        (e.g. a new message's ``author``: see :meth:`_reference_statement`)."""
        fold = self._foldable_related(ctx, data)
        for attr, table in self.resource.references.items():
            value = data.get(attr)
            if value is None:
                continue
            target = self.services.resource_for_table(table)
            if target is None or target.model is None:
                continue
            seen = ("readable", target.name, value)
            if seen in ctx.memo:
                continue  # found readable for an earlier record of this request's batch
            if attr == self.resource.owner and value == ctx.principal.uid and \
                    self.access.allows(ctx.principal, "r", target.name,
                                       {target.owner or "id": value, "id": value}):
                ctx.memo[seen] = True
                continue  # the caller's own record (their person): it exists while they do
            # only the columns the evaluator reads: a row, not a whole ORM object
            columns = self.access.record_columns(target.name)
            conn = self._reference_connection(ctx)
            if fold:
                stmt = self._reference_statement(ctx, target, columns, fold)
                record = conn.execute(stmt, {"id": value, **{
                    f"rel_{i}": v for i, (_, _, _, _, v) in enumerate(fold)}}).first()
            else:
                record = Repository(target.model).get_live(conn, value, *columns)
            if record is None or not self.access.allows(ctx.principal, "r", target.name,
                                                        record):
                raise NotFound(N_("%(field)s: %(resource)s %(id)s not found", field=attr,
                                  resource=target.name, id=str(value)[:40]),
                               errors={attr: N_("%(resource)s not found",
                                                resource=target.name)})
            ctx.memo[seen] = True
            for i, (_, related, _, _, v) in enumerate(fold):
                # as prefetch has it: null where the caller may not read the record
                ctx.related[(related, v)] = record[len(columns) + i]
            fold = []
        for attr in self.resource.file_refs:
            if data.get(attr) is not None:
                self._check_file_field(ctx, attr, data[attr])

    @staticmethod
    def _reference_connection(ctx: RequestContext) -> Any:
        """Where a reference check reads: the request's connection (rows, no ORM layer),
        after flushing what the session holds, as the session's own autoflush would (a
        batch may name a record it created before)."""
        session = ctx.open_session
        if session is not None and (session.new or session.dirty or session.deleted):
            session.flush()
        return ctx.connection()

    def _foldable_related(self, ctx: RequestContext, data: dict[str, Any],
                          ) -> list[tuple[str, str, Any, str, Any]]:
        """(via, target, alias, field, id) of the related values a write's answer shows
        that a reference check may read in its statement: the id is in ``data``, the
        value is not known yet, and no field rule of the target decides it per record."""
        fold = []
        for via, target, alias, fieldname in self._related_aliases():
            value = data.get(via)
            if value is not None and not isinstance(value, (dict, list)) and \
                    (target, value) not in ctx.related and \
                    not self.access.has_field_rules(target):
                fold.append((via, target, alias, fieldname, value))
        return fold

    def _reference_statement(self, ctx: RequestContext, target: ResourceSpec,
                             columns: tuple[str, ...],
                             fold: list[tuple[str, str, Any, str, Any]]) -> Any:
        """The reference check's SELECT of ``target``'s row (its ``columns``), with a
        scalar subquery per folded related value, under the caller's read filter of that
        related resource (what they may not read is null). The row is read through an
        alias of its own, so no subquery of a read filter can correlate with it. Built
        once per shape and caller's access key."""
        key = (target.name, columns, tuple((t, f) for _, t, _, f, _ in fold),
               ctx.principal.access_key)
        memo = self._reference_memo
        found = memo.get(key)
        if found is not None:
            return found
        aliases = self.__dict__.setdefault("_reference_aliases", {})
        ref = aliases.get(target.name)
        if ref is None:
            model: Any = target.model  # (a reference check's target has one)
            ref = aliases[target.name] = aliased(model)
        values = [select(getattr(alias, fieldname)).where(
            alias.id == bindparam(f"rel_{i}"), live(alias),
            self.access.where(ctx.principal, related, alias, "r")).scalar_subquery()
            .label(f"_related_{i}") for i, (_, related, alias, fieldname, _) in enumerate(fold)]
        stmt = select(*(getattr(ref, c) for c in columns), *values).where(
            ref.id == bindparam("id"), live(ref))
        return memo.put(key, stmt)

    def _check_file_field(self, ctx: RequestContext, attr: str, value: Any) -> None:
        """A field holding a file's id: the file must be one the caller may read (else
        404 naming the field), uploaded, and of a type the field accepts (else 415)."""
        name, types = self.resource.file_refs[attr]
        target = self.services.resources.get(name) if name else \
            self.services.resource_for_table(self.resource.references.get(attr, ""))
        if target is None or target.model is None or \
                "content_type" not in target.columns:
            raise NotFound(N_("%(field)s: no such file", field=attr),
                           errors={attr: N_("file not found")})
        columns = {*self.access.record_columns(target.name), "content_type",
                   *(("state",) if "state" in target.columns else ())}
        record = Repository(target.model).get_live(ctx.db, str(value), *sorted(columns))
        if record is None or not self.access.allows(ctx.principal, "r", target.name, record):
            raise NotFound(N_("%(field)s: %(resource)s %(id)s not found", field=attr,
                              resource=target.name, id=str(value)[:40]),
                           errors={attr: N_("%(resource)s not found", resource=target.name)})
        if getattr(record, "state", "ready") != "ready":
            raise Conflict(N_("%(field)s: the file's upload is not confirmed", field=attr),
                           errors={attr: N_("the file's upload is not confirmed")})
        ctype = str(record.content_type or "").lower()
        if types is not None and not any(
                t == ctype or t == "*/*" or (t.endswith("/*") and ctype.startswith(t[:-1]))
                for t in types):
            raise UnsupportedMediaType(
                N_("%(field)s: %(ctype)s files are not accepted here (allowed: %(types)s)",
                   field=attr, ctype=ctype, types=", ".join(types)),
                errors={attr: N_("%(ctype)s is not accepted (allowed: %(types)s)", ctype=ctype,
                                 types=", ".join(types))})

    def _check_scope(self, ctx: RequestContext, values: dict[str, Any]) -> None:
        """Same-scope rules (rbac.yaml ``same_scope``): a payload id naming a record of
        another scope is, for that field, no record at all (404, as when unreadable)."""
        scopes = self.access.scopes
        if self.resource.name not in scopes.rules:
            return
        found = scopes.mismatch(ctx.db, self.resource.name, values)
        if found is not None:
            attr, target = found
            raise NotFound(N_("%(field)s: %(resource)s %(id)s not found", field=attr,
                              resource=target, id=str(values.get(attr))[:40]),
                           errors={attr: N_("%(resource)s not found", resource=target)})

    def _prefetch_references(self, ctx: RequestContext, items: list[Any]) -> None:
        """Read the records a batch's payload ids name, one query per reference field,
        and remember those the caller may read (:meth:`_check_references` then asks the
        database only about the others, and refuses them as it would alone)."""
        for attr, table in self.resource.references.items():
            values = sorted({item[attr] for item in items if isinstance(item, dict) and
                             isinstance(item.get(attr), str)})
            target = self.services.resource_for_table(table)
            if not values or target is None or target.model is None:
                continue
            model = target.model
            columns = self.access.record_columns(target.name)
            for row in ctx.db.execute(select(*(getattr(model, c) for c in columns))
                                      .where(model.id.in_(values), live(model))):
                if self.access.allows(ctx.principal, "r", target.name, row):
                    ctx.memo[("readable", target.name, row.id)] = True

    def _strip_read_only(self, body: dict[str, Any],
                         current: dict[str, Any] | None) -> dict[str, Any]:
        """Drop read-only fields that are unchanged; reject any attempt to change them."""
        data = dict(body)
        errors: dict[str, str] = {}
        for name in self.resource.read_only:
            if name not in data:
                continue
            value = data.pop(name)
            if name in self.resource.computed:
                continue  # e.g. rbac echoed back by react-admin
            if current is None:
                if value is not None:
                    errors[name] = N_("is read-only")
            elif value != current.get(name):
                errors[name] = N_("is read-only")
        if errors:
            raise BadRequest(N_("read-only fields cannot be set: %(fields)s",
                                fields=", ".join(sorted(errors))), errors=errors)
        return data

    def _flush(self, ctx: RequestContext) -> None:
        try:
            ctx.db.flush()
        except IntegrityError as exc:
            ctx.rollback()
            raise integrity_problem(exc, self.resource.name) from None
        except StaleDataError:
            ctx.rollback()
            raise self._stale() from None

    def _stale(self) -> Problem:
        return PreconditionFailed(N_("%(resource)s was changed by another request; read it "
                                     "again", resource=self.resource.name))

    # -- operations -----------------------------------------------------------------
    def create(self, ctx: RequestContext) -> Reply:
        """One record from a JSON object; or, from a JSON array (where the spec's body
        allows one), every record or none (see :meth:`create_many`)."""
        if isinstance(ctx.body, list):
            return self.create_many(ctx)
        record = self._insert(ctx, ctx.body or {})
        view = self.serialize(ctx, record)
        body = {"id": record.id, **view}
        self.after_create(ctx, record, body)
        headers = {"Location": f"{self.services.base_url}/{self.resource.name}/{record.id}",
                   "ETag": self.tag(ctx, record, body=view)}
        return Reply(body, 201, headers)

    def _insert(self, ctx: RequestContext, given: dict[str, Any],
                batch: list[tuple[dict[str, Any], str]] | None = None) -> Any:
        """Check and add one record, written at once unless it is part of a ``batch``,
        whose caller writes every record together: a record the Core writer can write is
        appended to ``batch`` (its values, and the reason its create is allowed) and
        returned as the row it will be; any other is added to the session, to be flushed
        with the rest."""
        data = self._strip_read_only(given, None)
        named = list(data)
        owner = self.resource.owner
        if owner and owner != "id":
            data.setdefault(owner, ctx.principal.uid)
        reason = self.check_create(ctx, data)
        # the entries granting the create decide its fields: their conditions read the
        # values the record will have, defaults too (as authorize does)
        values = {**self.column_defaults(), **data} \
            if self.access.has_conditions(self.resource.name) else data
        fieldrules.check_writes(named, self.access.write_fields(
            ctx.principal, "c", self.resource.name, values), self.resource.name)
        data = self.before_create(ctx, data)
        writer = self.row_writer
        if writer is not None and data.keys() <= writer.attrs:
            values = writer.new_values({**data, "id": new_id(self.services.settings.id_prefix)})
            if batch is not None:
                batch.append((values, reason))
                return writer.row(values)
            record = self._write_rows(ctx, lambda conn: writer.insert(conn, values))
            self._audit_row(ctx, record.id, "create", reason, None, values)
            self.roles_changed(ctx, [record])
            return record
        record = self.model(**data)
        record.id = new_id(self.services.settings.id_prefix)
        ctx.db.add(record)
        ctx.audit_intent(record, "create", reason)
        if batch is None:
            self._flush(ctx)
            self.roles_changed(ctx, [record])
        return record

    def create_many(self, ctx: RequestContext) -> Reply:
        """Create every record of the array or none: each passes every check a single
        create would (grants count the whole batch), in one transaction; a refusal names
        the record's index (``errors: {"[3].list_id": ...}``) and nothing is written."""
        items = ctx.body
        self._check_batch(len(items), "body")
        self._prefetch_references(ctx, items)
        rows: list[tuple[dict[str, Any], str]] = []
        records = []
        for i, item in enumerate(items):
            try:
                records.append(self._insert(ctx, item, batch=rows))
            except Problem as exc:
                raise _at(exc, f"[{i}]") from None
        # one flush for the batch, one INSERT with every row the writer writes (grants
        # counted the batch's earlier records through ctx.memo); a unique or foreign-key
        # conflict refuses the whole batch
        if len(rows) < len(records):
            self._flush(ctx)
        writer = self.row_writer
        if writer is not None and rows:
            self._write_rows(ctx, lambda conn: writer.insert_many(conn, [v for v, _ in rows]))
            for values, reason in rows:
                self._audit_row(ctx, values["id"], "create", reason, None, values)
        self.roles_changed(ctx, records)
        self.prefetch(ctx, records)
        bodies = []
        for record, view in zip(records, self.serialize_page(ctx, records), strict=True):
            body = {"id": record.id, **view}
            self.after_create(ctx, record, body)
            bodies.append(body)
        return Reply({"items": bodies, "count": len(bodies)}, 201)

    def _check_batch(self, size: int, field: str) -> None:
        limit = self.services.settings.bulk_max
        if not 1 <= size <= limit:
            raise BadRequest(N_("%(field)s: a batch holds 1 to %(limit)s records (setting "
                                "bulk_max)", field=field, limit=limit),
                             errors={field: N_("1 to %(limit)s records", limit=limit)})

    def get(self, ctx: RequestContext) -> Reply:
        fields = self.selected_fields(ctx)
        embeds = self.selected_embeds(ctx)
        record = self._load(ctx, ctx.params["id"], plain=self.row_columns is not None)
        self._check_selection(ctx, record, fields, embeds)
        body = self.serialize(ctx, record)
        tag = self.tag(ctx, record, self._shape(fields, embeds), body)
        if fields:
            body = {k: body[k] for k in fields if k in body}
        if embeds:
            self.embed(ctx, [record], [body], embeds)
        return Reply(body, 200, {"ETag": tag})

    def update(self, ctx: RequestContext) -> Reply:
        """Update one record, or several (comma-separated ids) with the same changes, all
        or none; ``If-Match`` may then list one ETag per record."""
        ids = self._ids(ctx)
        if len(ids) > 1:
            records = [self._load(ctx, id_, for_update=True) for id_ in ids]
            self._write_many(ctx, records, lambda r: self._change(ctx, r, ctx.body or {}))
            return Reply([self.serialize(ctx, r) for r in records], 200)
        writer = self.row_writer
        record = self._load(ctx, ids[0], for_update=True, plain=writer is not None)
        self.check_precondition(ctx, [record])
        if writer is not None:
            return self._update_row(ctx, writer, record)
        old_owner = self._change(ctx, record, ctx.body or {})
        self._flush(ctx)
        self.roles_changed(ctx, [record], old_owner)
        body = self.serialize(ctx, record)
        return Reply(body, 200, {"ETag": self.tag(ctx, record, body=body)})

    patch = update

    def _update_row(self, ctx: RequestContext, writer: RowWriter, record: Any) -> Reply:
        """A single update with a Core statement (see :attr:`plain_writes`): the checks
        of :meth:`_changes` on the row read, then the versioned UPDATE of what changes."""
        changes, old_owner = self._changes(ctx, record, ctx.body or {})
        rule = ctx.audit_intents.pop(id(record), (None, None, None))[2]
        if not changes.keys() <= writer.attrs:
            # a value for something other than a column (a hook's): the ORM writes it
            target = self._load(ctx, record.id, for_update=True)
            ctx.audit_intent(target, "update", rule)
            for key, value in changes.items():
                setattr(target, key, value)
            self._flush(ctx)
            record = target
        elif changes:
            written, values = self._write_rows(
                ctx, lambda conn: writer.update(conn, record, changes))
            if written is None:
                ctx.rollback()
                raise self._stale()
            self._audit_row(ctx, record.id, "update", rule,
                            {k: getattr(record, k) for k in values}, values)
            record = written
        self.roles_changed(ctx, [record], old_owner)
        body = self.serialize(ctx, record)
        return Reply(body, 200, {"ETag": self.tag(ctx, record, body=body)})

    def _ids(self, ctx: RequestContext) -> list[str]:
        return paging.id_list(ctx.params["id"], self.services.settings.bulk_max)

    def _write_many(self, ctx: RequestContext, records: list[Any],
                    write: Callable[[Any], Any]) -> None:
        """Apply ``write`` to each record as a single request would, all or none: a
        refusal names the record (``errors: {"<id>": ...}``). ``If-Match`` may list the
        ETags the caller read: each record's current one must be among them."""
        self.check_precondition(ctx, records)
        old_owners = []
        for record in records:
            try:
                old_owners.append(write(record))
            except Problem as exc:
                raise _at(exc, record.id) from None
        self._flush(ctx)
        self.roles_changed(ctx, records, *(o for o in old_owners if o))

    def _change(self, ctx: RequestContext, record: Any, body: dict[str, Any]) -> Any:
        """Every check and change of an update of ``record``; returns its old owner."""
        changes, old_owner = self._changes(ctx, record, body)
        for key, value in changes.items():
            setattr(record, key, value)
        return old_owner

    def _changes(self, ctx: RequestContext, record: Any,
                 body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """Every check of an update of ``record`` by ``body``, and ``before_update``;
        returns the changes to make and the record's old owner. Changes nothing."""
        ctx.audit_intent(record, "update", self.authorize(ctx, "u", record))
        current = {n: json_value(getattr(record, n)) for n in self.resource.exposed}
        changes = self._strip_read_only(body, current)
        writable = self.access.write_fields(ctx.principal, "u", self.resource.name, record)
        if writable is not None:
            # a field the caller may not read is refused even with its stored value (else
            # a guess at a hidden value would tell by the answer); one they read may be
            # sent back unchanged (a client saving the whole form)
            readable = self.access.read_fields(ctx.principal, self.resource.name, record)
            fieldrules.check_writes(
                [k for k, v in changes.items() if current.get(k, object()) != v or
                 (readable is not None and k not in readable)], writable, self.resource.name)
        changes = {k: v for k, v in changes.items() if current.get(k, object()) != v}
        self._check_references(ctx, changes)
        if changes.keys() & self.access.scopes.fields(self.resource.name):
            self._check_scope(ctx, {**current, **changes})
        if self.resource.owner in changes:
            self.check_owner(ctx, {**current, **changes}, "u", moved=True)
        moved = {self.resource.owner, self.access.membership_attr(self.resource.name),
                 *self.access.parent_attrs(self.resource.name)}
        if moved & changes.keys():
            # moving a record to another owner or membership is creating it there
            self.authorize(ctx, "c", {**current, **changes})
        if changes and self.access.has_conditions(self.resource.name):
            # an entry's condition holds on what the update leaves too: nobody moves a
            # record out of (or into) what their entries allow
            self.authorize(ctx, "u", {**current, **changes})
        old_owner = getattr(record, self.resource.owner) if self.resource.owner else None
        return self.before_update(ctx, record, changes), old_owner

    def _trash(self, ctx: RequestContext, record: Any) -> None:
        ctx.audit_intent(record, "delete", self.authorize(ctx, "d", record))
        self.before_delete(ctx, record)
        record.status = TRASHED
        record.live = None  # frees its unique values (see RecordMixin.live)

    def _matching(self, ctx: RequestContext) -> list[Any]:
        """The records a bulk write by ``filter`` touches: the live ones the caller may
        read that match it, locked, refused (400) when more than ``max_affected`` (at
        most setting ``bulk_max``) would be touched."""
        params = ctx.params
        if params.get("filter") is None:
            raise BadRequest(N_("filter: a bulk write needs one ({} for every record you may "
                                "read)"), errors={"filter": N_("is required")})
        limit = self.services.settings.bulk_max
        most = params.get("max_affected") or limit
        if not 1 <= most <= limit:
            raise BadRequest(N_("max_affected: must be 1 to %(most)s (setting bulk_max)",
                                most=limit),
                             errors={"max_affected": N_("must be 1 to %(most)s", most=limit)})
        columns, search = self.filter_columns(ctx)
        clauses = q.build_filter(q.parse_filter(params["filter"]), columns, search)
        stmt = select(self.model).where(
            *self.records.visible(ctx.principal, "r"),
            *clauses).order_by(self.model.id).limit(most + 1)
        if ctx.services.db.dialect != "sqlite":
            stmt = stmt.with_for_update()
        records = list(ctx.db.execute(stmt).scalars())
        if len(records) > most:
            raise BadRequest(N_("max_affected: the filter matches more than %(most)s records; "
                                "nothing was written", most=most),
                             errors={"max_affected": N_("more than %(most)s", most=most)})
        return records

    def update_many(self, ctx: RequestContext) -> Reply:
        """``PATCH /{resource}?filter=...``: the same changes to every matching record
        (see :meth:`_matching`), each checked as a single update, all or none."""
        records = self._matching(ctx)
        if records:
            self._write_many(ctx, records, lambda r: self._change(ctx, r, ctx.body or {}))
        self.prefetch(ctx, records)
        return Reply({"items": [self.serialize(ctx, r) for r in records],
                      "count": len(records)}, 200)

    def delete_many(self, ctx: RequestContext) -> Reply:
        """``DELETE /{resource}?filter=...``: every matching record to the trashcan, each
        checked as a single delete, all or none."""
        records = self._matching(ctx)
        if records:
            self._write_many(ctx, records, lambda r: self._trash(ctx, r))
        self.prefetch(ctx, records)
        return Reply({"items": [{"id": r.id, **self.serialize(ctx, r)} for r in records],
                      "count": len(records)}, 200)

    def delete(self, ctx: RequestContext) -> Reply:
        """Move one record, or several (comma-separated ids, all or none), to the
        trashcan; with several, ``If-Match`` may list one ETag per record."""
        ids = self._ids(ctx)
        records = [self._load(ctx, id_, for_update=True) for id_ in ids]
        if len(records) == 1:
            self.check_precondition(ctx, records)
            self._trash(ctx, records[0])
            self._flush(ctx)
            self.roles_changed(ctx, records)
        else:
            self._write_many(ctx, records, lambda r: self._trash(ctx, r))
        body = [{"id": r.id, **self.serialize(ctx, r)} for r in records]
        return Reply(body[0] if len(ids) == 1 else body, 200)

    def find(self, ctx: RequestContext) -> Reply:
        fields = self.selected_fields(ctx)
        embeds = self.selected_embeds(ctx)
        items, count, cursor = self.find_records(ctx, plain=True)
        self.prefetch(ctx, items)
        rows = self.serialize_page(ctx, items)
        if fields:
            rows = [{k: row[k] for k in fields if k in row} for row in rows]
        if embeds:
            self.embed(ctx, items, rows, embeds)
        body: dict[str, Any] = {"items": rows}
        headers = {}
        if count is not None:
            body["count"] = int(count)
            headers["X-Total-Count"] = str(int(count))
            if isinstance(count, Estimate):
                body["count_estimated"] = True
        if cursor:
            body["cursor_next"] = cursor
        return Reply(body, 200, headers)

    def groups(self, ctx: RequestContext) -> Reply:
        """Counts per group of the rows the caller may read (``group_by=a,b``), under the
        same filters as ``find``, with optional ``aggregate=sum:f,min:f,max:f`` over
        numeric (min/max also date-time) fields the caller may read."""
        params = ctx.params
        fields, search = self.filter_columns(ctx)
        readable = frozenset(fields)
        names = [n.strip() for n in str(params.get("group_by") or "").split(",") if n.strip()]
        if not names or len(names) > MAX_GROUP_KEYS or len(set(names)) != len(names):
            raise BadRequest(N_("group_by: name 1 to %(count)s distinct fields",
                                count=MAX_GROUP_KEYS),
                             errors={"group_by": N_("name 1 to %(count)s distinct fields",
                                                    count=MAX_GROUP_KEYS)})
        for name in names:
            if name not in fields or name not in readable:
                raise BadRequest(N_("group_by: unknown field %(name)s", name=repr(name[:64])),
                                 errors={"group_by": N_("unknown field %(name)s",
                                                        name=repr(name[:64]))})
        aggregates = []
        for term in [t.strip() for t in str(params.get("aggregate") or "").split(",") if t.strip()]:
            func_name, _, name = term.partition(":")
            column = fields.get(name) if name in readable else None
            kind = q.column_kind(column) if column is not None else None
            ok = (func_name in ("sum", "min", "max") and kind in ("integer", "number")) or \
                (func_name in ("min", "max") and kind == "datetime")
            if not ok:
                raise BadRequest(N_("aggregate: %(term)s is not sum, min or max of a numeric field",
                                    term=repr(term[:64])),
                                 errors={"aggregate": N_("bad term %(term)s",
                                                         term=repr(term[:64]))})
            aggregates.append((f"{func_name}_{name}", getattr(func, func_name)(column)))
        settings = self.services.settings
        limit = paging.page_size(params.get("limit"), settings, default=settings.per_page_max)
        clauses = q.build_filter(q.parse_filter(params.get("filter")), fields, search)
        where = [*self.records.visible(ctx.principal, "l"), *clauses]
        keys = [fields[n] for n in names]
        stmt = select(*keys, func.count().label("count"),
                      *(expr.label(label) for label, expr in aggregates)) \
            .where(*where).group_by(*keys).order_by(*keys).limit(limit + 1)
        rows = ctx.db.execute(stmt).all()
        out = []
        for row in rows[:limit]:
            # the row holds the count and the aggregates after the group's values
            group = {n: json_value(v) for n, v in zip(names, row, strict=False)}
            group["count"] = row[len(names)]
            for (label, _), value in zip(aggregates, row[len(names) + 1:], strict=True):
                group[label] = json_value(float(value) if isinstance(value, Decimal)
                                           else value)
            out.append(group)
        body: dict[str, Any] = {"groups": out, "count": sum(g["count"] for g in out)}
        if len(rows) > limit:
            body["truncated"] = True  # more groups than limit: count covers those shown
        return Reply(body, 200)

    def count_mode(self, ctx: RequestContext, cursor_mode: str | None = None) -> str:
        """``count`` parameter, else ``Prefer: count=...`` (as PostgREST reads it), else
        the first page's mode a cursor carries, else the resource's default (``count:``
        in x-apicrud-resources, default exact)."""
        mode = ctx.params.get("count")
        if mode is None:
            for pref in (ctx.headers.get("Prefer") or "").split(","):
                key, _, value = pref.partition("=")
                if key.strip().lower() == "count" and value.strip().lower() in COUNT_MODES:
                    mode = value.strip().lower()
        if mode is None and cursor_mode in COUNT_MODES:
            mode = cursor_mode
        return mode or self.resource.count_mode

    def count_rows(self, ctx: RequestContext, where: list[ColumnElement[bool]],
                   mode: str) -> int | None:
        """The number of rows ``where`` selects, as the count mode asks: ``none`` skips
        the query; ``estimated`` takes PostgreSQL's planner estimate when it is at least
        setting ``count_estimate_threshold`` (exact below, and on other backends). A
        resource declaring ``count_cache`` has a GET's exact counts kept in Redis until a
        write could change them (apicrud.db.countcache); ``Cache-Control: no-cache``
        counts anew."""
        if mode == "none":
            return None
        if mode == "estimated" and ctx.services.db.dialect == "postgresql":
            guess = q.planner_rows(ctx.db, select(self.model.id).where(*where))
            if guess is not None and guess >= self.services.settings.count_estimate_threshold:
                return Estimate(guess)
        counts = self.services.counts
        if counts is None or not self.resource.count_cache or ctx.method not in READS:
            return self.records.count(ctx.reads(), where)
        conn = ctx.reads()
        stmt = self.records.count_statement(where)
        fresh = "no-cache" in (ctx.headers.get("Cache-Control") or "").lower()
        return counts.count(conn, stmt, self.resource.count_cache,
                            lambda: conn.execute(stmt).scalar_one(), fresh=fresh)

    def _sort_clause(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """A sort's ORDER BY or keyset clause, built once per sort (the columns a sort
        names are the model's, whoever asks), so the page statement is reused too."""
        found = self._sort_memo.get(key)
        if found is None:
            found = self._sort_memo.put(key, build())
        return found

    def find_records(self, ctx: RequestContext, plain: bool = False,
                     ) -> tuple[list[Any], int | None, str | None]:
        """Filtered, sorted, RBAC-limited page: (records, count or None, cursor_next); with
        ``plain``, records are :class:`RecordRow` where :attr:`row_columns` allows."""
        settings = self.services.settings
        params = ctx.params
        fields, search = self.filter_columns(ctx)
        filters = q.parse_filter(params.get("filter"))
        sort = q.parse_sort(params.get("sort"), fields)
        limit = params.get("limit")
        offset = params.get("offset") or 0
        last = None
        state = None
        if params.get("cursor_next"):
            state = paging.resume(
                self.services.cursor_signer, params["cursor_next"], self.resource.name, offset,
                same_query=lambda s: (
                    "filter" not in params or q.parse_filter(params["filter"]) == s["f"])
                and ("sort" not in params or sort.text() == s["s"]))
            filters = state["f"]
            sort = q.parse_sort(state["s"], fields)
            last = (state["k"], state["i"])
            if limit is None and isinstance(state.get("l"), int):
                limit = state["l"]  # a cursor alone continues with the first page's size
        limit = paging.page_size(limit, settings)
        clauses = q.build_filter(filters, fields, search)  # validates first
        where = [*self.visible(ctx, "l"), *clauses]
        mode = self.count_mode(ctx, state.get("c") if state else None)
        count = self.count_rows(ctx, where, mode)
        after: list[Any] = []
        values: dict[str, Any] = {}
        if last is not None:
            nulls, values = q.after_values(sort, fields, *last)
            after = [self._sort_clause(("after", sort.keys, nulls), lambda: q.after_template(
                sort, fields, self.model.id, nulls))]
        order = self._sort_clause(("order", sort.keys),
                                  lambda: tuple(q.order_by(sort, fields, self.model.id)))
        columns = self.row_columns if plain else None
        rows = self.records.page(ctx.db if columns is None else ctx.reads(), [*where, *after],
                                 order, limit + 1, offset, columns, values)
        cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            tail = rows[-1]
            cursor = paging.next_cursor(self.services.cursor_signer, self.resource.name, sort,
                                        filters, q.sort_key(tail, sort, fields), tail.id, limit,
                                        c=mode)
        return rows, count, cursor


COUNT_MODES = ("exact", "estimated", "none")
MAX_GROUP_KEYS = 3


class Estimate(int):
    """A count that is the query planner's estimate, not an exact number."""


def _at(problem: Problem, where: str) -> Problem:
    """The same problem, naming the record of a batch it is about (``[3]`` or an id)."""
    problem.detail = f"{where}: {problem.detail}"
    problem.errors = {f"{where}.{k}" if not k.startswith("[") else f"{where}{k}": v
                      for k, v in problem.errors.items()} or {where: problem.title.lower()}
    return problem


def _get(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)
