"""Per-request context handed to controllers, and the reply they return."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from apicrud.access import conditions
from apicrud.auth.principal import Principal

log = logging.getLogger("apicrud.context")

#: HTTP methods whose request sessions are read-only (see RequestContext.db)
READS = frozenset({"GET", "HEAD"})

if TYPE_CHECKING:  # pragma: no cover
    from apicrud.spec.operations import Operation


class ContextServices(Protocol):
    """What a RequestContext itself uses of the application's services (controllers
    reach the rest through ``ctx.services``): the database, for the request's session,
    and the audit trail, whose entries it writes before committing."""

    db: Any  # apicrud.db.engine.Database
    audit: Any  # apicrud.audit.trail.AuditTrail | None


@dataclass
class Reply:
    """What a controller returns: a JSON-able body, a status and headers."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[dict[str, Any]] = field(default_factory=list)


class RequestContext:
    """The caller, the validated input and a lazily opened database session."""

    def __init__(self, services: ContextServices, operation: Operation, principal: Principal,
                 params: dict[str, Any], body: Any, headers: Any, remote_addr: str | None,
                 scheme: str = "http", request_id: str = "", method: str = "GET") -> None:
        self.services = services
        self.operation = operation
        self.principal = principal
        self.params = params
        self.body = body
        self.headers = headers
        self.remote_addr = remote_addr
        self.scheme = scheme
        self.request_id = request_id
        self.method = method
        self.response_headers: dict[str, str] = {}  # added to the response, even on errors
        self.upload: Any = None  # a multipart body read as it arrives (apicrud.files.upload)
        # decides the language of the caller's messages (set by the request path's
        # choose_language stage); English outside a request
        self.language_of: Callable[[], str] = lambda: "en"
        self._db: Session | None = None
        self._reads: Connection | None = None  # see reads()
        self._conn: Connection | None = None  # see connection()
        self.after_commit: list = []  # callables run once the transaction is committed
        # callables run when the transaction is rolled back or its commit fails: undo
        # what was done outside the database (e.g. delete an object already stored)
        self.on_rollback: list = []
        self.related: dict[tuple[str, Any], Any] = {}  # (resource, id) -> related value
        # what one write of a request learnt for the next write of the same request (a
        # bulk create): payload ids found readable, an owner's record count under a grant
        self.memo: dict[tuple, Any] = {}
        # audit entries waiting for this request's commit, and why writes were allowed
        # (see apicrud.audit.trail)
        self.audit_pending: dict[tuple, dict[str, Any]] = {}
        self.audit_intents: dict[int, tuple[Any, str | None, str | None]] = {}
        # the policy's conditions read records through foreign keys in this session
        conditions.SESSION.set(lambda: self.db)

    @classmethod
    def detached(cls, services: ContextServices, principal: Principal,
                 session: Session) -> RequestContext:
        """A context outside any request, on the caller's session (``can-i`` from the
        command line and the API asks controllers through it, without writing)."""
        ctx = cls(services, None, principal, {}, None, {}, None)  # type: ignore[arg-type]
        ctx._db = session
        conditions.SESSION.set(lambda: session)
        return ctx

    @property
    def language(self) -> str:
        """The language of messages to the caller (problems, mails they asked for)."""
        return self.language_of()

    @property
    def open_session(self) -> Session | None:
        """The request's session if one is open (its transaction may hold locks)."""
        return self._db

    @property
    def db(self) -> Session:
        """The request's session, opened on first use. A GET's or HEAD's is read-only
        (apicrud.db.engine.Database.session): on PostgreSQL it sends no BEGIN/COMMIT
        until it writes, and a write still commits (or rolls back) whole in finish()."""
        if self._db is None:
            conn = self._conn
            self._db = self.services.db.session(read_only=self.method in READS) \
                if conn is None else self.services.db.session_on(conn)
            self._db.info["apicrud_ctx"] = self  # the audit trail's flush listener
        return self._db

    def reads(self) -> Connection:
        """The connection a request's Core reads run on (plain gets and finds, counts,
        related values). A GET or HEAD that has not opened its session gets a connection
        of its own from the read pool (as :attr:`db`'s would be: autocommit on
        PostgreSQL), without an ORM session's bookkeeping, and keeps it for all its reads
        (one snapshot where the database gives one, as MariaDB does); finish() returns
        it. Otherwise the session's connection: a write request reads in its
        transaction, and sees its own writes."""
        conn = self._reads
        if conn is not None:
            return conn
        if self._db is not None or self.method not in READS:
            return self.connection()
        conn = self._reads = self.services.db.read_connection()
        return conn

    def connection(self) -> Connection:
        """The connection of the request's transaction, for Core statements (a plain
        write, the read of the row it changes, a reference check). A write request
        that has not opened its session gets one from the pool without an ORM
        session's bookkeeping; a session opened later is bound to it and joins its
        transaction (one transaction, one connection), and finish() commits or rolls
        back both. Once the session is open, its connection."""
        if self._db is not None:
            return self._db.connection()
        if self.method in READS:
            return self.db.connection()  # a GET that writes: in its session, as before
        conn = self._conn
        if conn is None:
            conn = self._conn = self.services.db.engine.connect()
        return conn

    def rollback(self) -> None:
        """Roll back what the request wrote so far (a refused or conflicting write it
        answers for itself), and give the request's connection back to the pool
        unless its session holds objects (they stay attached and are read again when
        used): the next statement starts a new transaction either way."""
        session, conn = self._db, self._conn
        if session is not None:
            session.rollback()
            if conn is None or session.identity_map:
                return  # (its objects stay attached, to be read again)
            session.close()
            self._db = None
        if conn is not None:
            self._conn = None
            conn.close()  # (returned to the pool, which rolls it back)

    def audit_intent(self, record: Any, action: str | None, rule: str | None) -> None:
        """Say why the write of ``record`` about to be flushed was allowed (the rule the
        evaluator named) and, optionally, which action it is; the audit entry of the
        write carries them."""
        self.audit_intents[id(record)] = (record, action, rule)

    def finish(self, ok: bool) -> None:
        """Commit when the request succeeded, otherwise roll back; always close. When
        the rollback happens, or the commit fails, the ``on_rollback`` steps run (once)."""
        if self._reads is not None:
            self._reads.close()  # (it only read: its pool's reset ends what it began)
            self._reads = None
        conn = self._conn
        # the audit entries are written through the session (its listeners get it)
        session = self.db if ok and self._db is None and self.audit_pending else self._db
        if session is None and conn is None:
            if not ok:
                self._rolled_back()
            return
        committed = False
        try:
            if ok:
                if session is not None:
                    # the audit entries, in the write's transaction, just before commit
                    audit = self.services.audit
                    if audit is not None:
                        audit.flush(self, session)
                    # a read that wrote nothing only closes its session below (a write
                    # request commits without asking: the question costs more than it
                    # saves); on the request's connection its commit flushes, joined
                    if self.method not in READS or \
                            not self.services.db.nothing_to_commit(session):
                        session.commit()
                if conn is not None:
                    conn.commit()
                committed = True
            elif session is not None:
                session.rollback()
        finally:
            if session is not None:
                session.close()
                self._db = None
            if conn is not None:  # (uncommitted: the pool's reset rolls it back)
                conn.close()
                self._conn = None
            conditions.SESSION.set(None)
            if not committed:
                self._rolled_back()
        if ok:
            self._after_commit()

    def _after_commit(self) -> None:
        # the write is committed and its answer stands: a failing follow-up (e.g. a
        # cache drop while Redis is away; caches expire on their own) is logged, not
        # turned into an error that would invite the client to write again
        self.on_rollback.clear()
        for callback in self.after_commit:
            try:
                callback()
            except Exception:
                log.error("after-commit step failed; the write stands",
                          exc_info=True, extra={"event": "after_commit_failed",
                                                "request_id": self.request_id})

    def _rolled_back(self) -> None:
        """Run the ``on_rollback`` steps once; one that fails is logged, the others run."""
        steps, self.on_rollback = self.on_rollback, []
        self.after_commit.clear()
        for callback in steps:
            try:
                callback()
            except Exception:
                log.error("rollback step failed", exc_info=True,
                          extra={"event": "on_rollback_failed",
                                 "request_id": self.request_id})
