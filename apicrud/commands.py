"""What the ``apicrud`` command does, as plain functions taking settings (Alembic's
``command`` module next to its CLI).

Each function does one command's work and returns what there is to show; it prints
nothing and knows nothing of click. What stops a command is an
:class:`~apicrud.errors.ApicrudError` (here :class:`CommandError`, or the error of the
module that refused: settings, spec, policy, project, account, start-up) whose message
says what is wrong and what to do. :mod:`apicrud.cli` parses the arguments, calls one
function, prints its answer and turns that one error base into a message and an exit
status; tests and scripts call these functions directly. The long-running commands
have functions of their own modules, taking settings the same way: ``serve`` is
:func:`apicrud.server.run`, ``worker``, ``beat`` and ``dead-letters`` are in
:mod:`apicrud.worker.main`, ``init`` and ``add resource`` in :mod:`apicrud.project`.

Work outside HTTP opens its database and Redis through one builder,
:func:`apicrud.services.open_offline`, as the worker's scheduled tasks and the server's
first start do. :func:`add_account` is the one way an account is made here: ``account
add`` and the first start's admin (:func:`first_admin`) both go through it, so the
username rule is one: kept as written, letter case included, without surrounding white
space (as registration over HTTP has it), and refused when an account holds the same
name in any letter case.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from apicrud.errors import ApicrudError, required

if TYPE_CHECKING:
    from apicrud.auth.sessions import SessionManager

__all__ = ["CheckReport", "CommandError", "NewAccount", "Route", "account_add",
           "add_account", "can_i", "check", "db_current", "db_downgrade", "db_revision",
           "db_upgrade", "disable_account", "enable_account", "first_admin",
           "list_accounts", "require_migrations", "require_project", "routes",
           "set_password"]


class CommandError(ApicrudError):
    """A command cannot do what it was asked; the message says why and what to do."""


# -- the project --------------------------------------------------------------------

def require_project(settings: Any) -> None:
    """Refuse, saying what to do, in a folder that holds no project."""
    spec = settings.path("openapi_dir") / settings.openapi_file
    if not spec.is_file():
        where = os.path.relpath(spec, settings.root)
        raise CommandError(
            f"no apicrud project in {settings.root} (no {where}): run `apicrud init .` to "
            "create one here, or pass --root / set APICRUD_ROOT to a project's folder")


def require_migrations(settings: Any) -> None:
    """Refuse, saying what to do, where the project has no migrations folder."""
    if not (settings.root / "migrations").is_dir():
        raise CommandError(
            f"no migrations folder in {settings.root}: not an apicrud project? run "
            "`apicrud init .` to create one here, or pass --root / set APICRUD_ROOT")


def _declarations(settings: Any) -> Any:
    from apicrud.services import load_declarations

    require_project(settings)
    return load_declarations(settings)


# -- check and routes ---------------------------------------------------------------

@dataclass(frozen=True)
class CheckReport:
    """What ``apicrud check`` found: every problem, or a note on a sound project."""

    problems: list[str]
    note: str | None
    operations: int
    resources: int


def check(settings: Any) -> CheckReport:
    """Check spec, models, rbac.yaml and, when those are sound, the database's schema
    and Redis; collect every problem."""
    decl = _declarations(settings)
    problems, note = list(decl.problems), None
    if not problems:  # the models are sound: compare them with the database
        found, note = _database_problems(settings)
        problems += found
    return CheckReport(problems, note, len(decl.operations), len(decl.resources))


def _database_problems(settings: Any) -> tuple[list[str], str | None]:
    """(problems, a note): can the database and Redis be reached, and has the database
    every table and column of the models? With migrations pending and
    db_migrate_at_start, the comparison waits for the start (which migrates first)."""
    from apicrud.db.schema import pending, schema_problems
    from apicrud.services import backend_problems

    problems = backend_problems(settings)
    if problems:
        return problems, None
    behind = pending(settings)
    if behind and settings.db_migrate_at_start:
        current, head = behind
        return [], (f"database: at revision {current or 'none'}, head {head}; the "
                    "migrations are applied at start (db_migrate_at_start), and the "
                    "schema is compared with the models then")
    return schema_problems(settings), None


@dataclass(frozen=True)
class Route:
    """One operation: method, URL, the controller method it runs, public or secured."""

    method: str
    url: str
    target: str
    access: str


def routes(settings: Any) -> list[Route]:
    """Every operation of the spec, by path and method."""
    from apicrud.services import controller_class

    decl = _declarations(settings)
    base = settings.base_url.rstrip("/")
    rows = []
    for op in sorted(decl.operations, key=lambda o: (o.path, o.method)):
        res = decl.resources.get(op.resource)
        cls = controller_class(res, []) if res else None
        handler = getattr(op.handler, "name", "")  # a connexion-style handler's dotted name
        target = f"{cls.__name__}.{op.action}" if cls else handler or "(unresolved)"
        rows.append(Route(op.method.upper(), base + op.path, target,
                          "public" if op.public else "secured"))
    return rows


# -- database -----------------------------------------------------------------------

def _reachable_database(settings: Any) -> Any:
    """``settings``, once its project has migrations and its database can be reached."""
    from apicrud.db.schema import database_problem

    require_migrations(settings)
    problem = database_problem(settings)
    if problem:
        raise CommandError(problem)
    return settings


def db_upgrade(settings: Any, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision``; return the revision it is at."""
    from apicrud.db import migrate

    migrate.upgrade(_reachable_database(settings), revision)
    return migrate.current(settings)


def db_downgrade(settings: Any, revision: str = "-1") -> str | None:
    """Downgrade the database to ``revision`` (default one step); return where it is."""
    from apicrud.db import migrate

    migrate.downgrade(_reachable_database(settings), revision)
    return migrate.current(settings)


def db_current(settings: Any) -> tuple[str | None, str | None]:
    """(the database's revision, the head revision)."""
    from apicrud.db import migrate

    _reachable_database(settings)
    return migrate.current(settings), migrate.head(settings)


def db_revision(settings: Any, message: str, autogenerate: bool = True) -> None:
    """Write a revision into migrations/versions (from the models unless not
    ``autogenerate``)."""
    from apicrud.db import migrate

    migrate.revision(_reachable_database(settings), message, autogenerate=autogenerate)


# -- accounts -----------------------------------------------------------------------

@dataclass(frozen=True)
class NewAccount:
    """An account just made; ``password`` is the generated one (None when given)."""

    username: str
    uid: str
    admin: bool
    password: str | None


def add_account(settings: Any, username: str, email: str, *, name: str | None = None,
                password: str | None = None, admin: bool = False,
                only_first: bool = False) -> NewAccount | None:
    """Create an active account and its person, ready to log in.

    The database must be migrated. The username is kept as written, without surrounding
    white space; an account holding it in any letter case refuses it.

    :param password: the initial password; None generates one (returned)
    :param only_first: make it only into a database without accounts (the first start's
        admin); None when there are some
    :raises AccountError: a bad or taken username or address
    """
    from apicrud.auth.accounts import count_accounts, create_account
    from apicrud.services import open_offline

    offline = open_offline(settings)
    try:
        with offline.db.session() as session, session.begin():
            if only_first and count_accounts(session, offline.models):
                return None
            account: Any
            account, made = create_account(
                session, offline.models, username=username.strip(), email=email,
                name=name, password=password, is_admin=admin,
                id_prefix=settings.id_prefix)
            new = NewAccount(account.name, account.uid, admin,
                             None if password else made)
    finally:
        offline.close()
    return new


def account_add(settings: Any, username: str, email: str, *, name: str | None = None,
                password: str | None = None, admin: bool = False) -> NewAccount:
    """``apicrud account add``: migrate the database, then :func:`add_account`."""
    from apicrud.db import migrate

    require_migrations(settings)
    migrate.upgrade(settings)
    # only_first is off: there is always a new account
    return required(add_account(settings, username, email, name=name, password=password,
                                admin=admin), "the new account")


def first_admin(settings: Any) -> NewAccount | None:
    """On first start, into a database without accounts, the administrator of settings
    ``admin_username``, ``admin_email`` and ``admin_password`` (generated when empty);
    None when the database has accounts."""
    return add_account(settings, settings.admin_username, settings.admin_email,
                       name="Administrator", password=settings.admin_password or None,
                       admin=True, only_first=True)


@contextlib.contextmanager
def _account_store(settings: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(models, a database session in a transaction, the session store), the database
    migrated, with the identity component's cut-off installed: suspending here ends
    sessions (Redis) and API keys."""
    from apicrud.auth import cutoff
    from apicrud.auth.sessions import SessionManager
    from apicrud.db import migrate
    from apicrud.services import open_offline

    require_migrations(settings)
    migrate.upgrade(settings)
    offline = open_offline(settings, redis=True)
    try:
        sessions = SessionManager(offline.redis.client, settings.secret_key,
                                  ttl=settings.session_ttl)
        cutoff.install(offline.db, offline.models, sessions)
        with offline.db.session() as session, session.begin():
            yield offline.models, session, sessions
    finally:
        offline.close()


def _named_account(session: Any, models: Any, username: str) -> Any:
    from sqlalchemy import select

    from apicrud.db.query import TRASHED

    model = models.Account
    account = session.execute(select(model).where(
        model.name == username, model.status != TRASHED)).scalar_one_or_none()
    if account is None:
        raise CommandError(f"no account {username!r}")
    return account


def disable_account(settings: Any, username: str) -> bool:
    """Suspend an account (no login; its sessions and API keys end at once); False when
    it was suspended already."""
    with _account_store(settings) as (models, session, _sessions):
        account = _named_account(session, models, username)
        if account.status == "suspended":
            return False
        account.status = "suspended"
        session.flush()
    return True


def enable_account(settings: Any, username: str) -> tuple[bool, str]:
    """Enable a suspended account again: (whether it was suspended, its status now)."""
    with _account_store(settings) as (models, session, _sessions):
        account = _named_account(session, models, username)
        if account.status != "suspended":
            return False, account.status
        account.status = "active" if account.password else "pending"
        status = account.status
    return True, status


def set_password(settings: Any, username: str, password: str) -> tuple[str, int]:
    """Give an account a new password (its rules checked): (its status, how many of
    its sessions ended: all of them)."""
    from apicrud.auth.password_rules import PasswordRules
    from apicrud.auth.passwords import hash_password
    from apicrud.db.base import utcnow
    from apicrud.errors import Problem

    with _account_store(settings) as (models, session, sessions):
        account = _named_account(session, models, username)
        person = session.get(models.Person, account.uid)
        try:
            PasswordRules.from_settings(settings).check(
                password, account.name, person.identity if person else None)
        except Problem as exc:
            raise CommandError(f"password refused: {exc.detail}") from None
        account.password = hash_password(password)
        account.password_changed = utcnow()
        if account.status == "pending":
            account.status = "active"
        status = account.status
        session.flush()
        ended = sessions.delete_all(account.uid)
    return status, ended


def list_accounts(settings: Any) -> list[tuple[Any, ...]]:
    """Every account by name: (name, status, is_admin, uid, last_login)."""
    from sqlalchemy import select

    with _account_store(settings) as (models, session, _sessions):
        model = models.Account
        return [tuple(row) for row in session.execute(
            select(model.name, model.status, model.is_admin, model.uid, model.last_login)
            .order_by(model.name)).all()]


# -- rbac ---------------------------------------------------------------------------

def can_i(settings: Any, action: str, target: str, username: str,
          field: str | None = None) -> Any:
    """May ``username`` do ``action`` to ``target`` (``RESOURCE[:ID]``), to one field?
    The answer (``allowed``, ``reason``) of :func:`apicrud.access.explain.can_i`."""
    from sqlalchemy import select

    from apicrud.access.explain import can_i as explain
    from apicrud.auth.principal import Principal
    from apicrud.services import Services, open_offline

    resource, _, id_ = target.partition(":")
    offline = open_offline(settings, declarations=True, redis=True)
    try:
        # no login sessions: the explanation reads none (hence the cast of None)
        services = Services(settings, required(offline.decl, "declarations"), offline.db,
                            offline.redis, sessions=cast("SessionManager", None))
        model = offline.models.Account
        with offline.db.session() as session:
            account = session.execute(select(model).where(
                model.name == username, model.status.in_(("active", "pending")))) \
                .scalar_one_or_none()
            if account is None:
                raise CommandError(f"no account {username!r}")
            levels, kinds, via = services.roles.load_via(account.uid)
            principal = Principal(uid=account.uid, account_id=account.id, username=username,
                                  is_admin=account.is_admin, status=account.status,
                                  method="cli", memberships=levels, membership_kinds=kinds,
                                  membership_via=via)
            try:
                return explain(services, session, principal, action, resource, id_ or None,
                               field=field)
            except KeyError:
                raise CommandError(f"no resource {resource!r}") from None
            except LookupError:
                raise CommandError(f"no field {field!r} in {resource}") from None
            except ValueError as exc:
                raise CommandError(str(exc)) from None
    finally:
        offline.close()

