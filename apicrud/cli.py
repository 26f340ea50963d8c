"""The ``apicrud`` command: init, add, serve, db, account, check, routes."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import click

from apicrud.config import load_settings
from apicrud.errors import ApicrudError, StartupError


class Commands(click.Group):
    """Every apicrud error a command lets through (settings, spec, policy, project,
    account, start-up) is reported as one message and exit status 1, without a
    traceback; anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ApicrudError as exc:
            raise click.ClickException(str(exc)) from None


def _settings(ctx: click.Context, **changes):
    settings = load_settings(root=ctx.obj.get("root"), config_file=ctx.obj.get("config"))
    return settings.replace(**changes) if changes else settings


@click.group(cls=Commands)
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="project root (default: APICRUD_ROOT or the current folder)")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="YAML file of setting values (default: APICRUD_CONFIG)")
@click.pass_context
def main(ctx: click.Context, root: str | None, config: str | None) -> None:
    """apicrud: a REST service from an OpenAPI spec, SQLAlchemy models and rbac.yaml."""
    ctx.ensure_object(dict)
    ctx.obj.update(root=root, config=config)
    # a project's models module lives in the project folder (models_module: models)
    project_root = os.path.abspath(root or os.environ.get("APICRUD_ROOT") or os.getcwd())
    if project_root not in sys.path:
        sys.path.insert(0, project_root)
    logging.basicConfig(level=os.environ.get("APICRUD_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


# -- check and routes -------------------------------------------------------------

def _require_project(settings) -> None:
    """Refuse, saying what to do, in a folder that holds no project."""
    spec = settings.path("openapi_dir") / settings.openapi_file
    if not spec.is_file():
        where = os.path.relpath(spec, settings.root)
        raise click.ClickException(
            f"no apicrud project in {settings.root} (no {where}): run `apicrud init .` to "
            "create one here, or pass --root / set APICRUD_ROOT to a project's folder")


def _require_migrations(settings) -> None:
    """Refuse, saying what to do, where the project has no migrations folder."""
    if not (settings.root / "migrations").is_dir():
        raise click.ClickException(
            f"no migrations folder in {settings.root}: not an apicrud project? run "
            "`apicrud init .` to create one here, or pass --root / set APICRUD_ROOT")


def _declarations(ctx):
    from apicrud.services import load_declarations

    settings = _settings(ctx)
    _require_project(settings)
    return settings, load_declarations(settings)


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check spec, models, rbac.yaml, the database's schema and Redis; list every problem
    (exit 1 if any)."""
    settings, decl = _declarations(ctx)
    problems, note = list(decl.problems), None
    if not problems:  # the models are sound: compare them with the database
        found, note = _database_problems(settings)
        problems += found
    if problems:
        click.echo(f"{len(problems)} problem(s):", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(decl.operations)} operations, {len(decl.resources)} resources")
    if note:
        click.echo(note)


def _database_problems(settings) -> tuple[list[str], str | None]:
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


@main.command()
@click.pass_context
def routes(ctx: click.Context) -> None:
    """Print every URL, method, controller and whether it is public."""
    from apicrud.services import controller_class

    settings, decl = _declarations(ctx)
    base = settings.base_url.rstrip("/")
    rows = []
    for op in sorted(decl.operations, key=lambda o: (o.path, o.method)):
        res = decl.resources.get(op.resource)
        cls = controller_class(res, []) if res else None
        target = f"{cls.__name__}.{op.action}" if cls else "(unresolved)"
        rows.append((op.method.upper(), base + op.path, target,
                     "public" if op.public else "secured"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")


# -- database ---------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database migrations (alembic, URL from settings)."""


def _db_settings(ctx: click.Context):
    """Settings whose database can be reached (else one line naming database_url)."""
    from apicrud.db.schema import database_problem

    settings = _settings(ctx.find_root())
    _require_migrations(settings)
    problem = database_problem(settings)
    if problem:
        raise click.ClickException(problem)
    return settings


@db.command()
@click.argument("revision", default="head")
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Upgrade the database to REVISION (default head)."""
    from apicrud.db import migrate

    settings = _db_settings(ctx)
    migrate.upgrade(settings, revision)
    click.echo(f"at revision {migrate.current(settings)}")


@db.command()
@click.argument("revision", default="-1")
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Downgrade the database to REVISION (default: one step)."""
    from apicrud.db import migrate

    settings = _db_settings(ctx)
    migrate.downgrade(settings, revision)
    click.echo(f"at revision {migrate.current(settings)}")


@db.command()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the database's revision and the head."""
    from apicrud.db import migrate

    settings = _db_settings(ctx)
    click.echo(f"current: {migrate.current(settings)}  head: {migrate.head(settings)}")


@db.command()
@click.option("-m", "--message", required=True, help="what the revision changes")
@click.option("--empty", is_flag=True, help="do not autogenerate from the models")
@click.pass_context
def revision(ctx: click.Context, message: str, empty: bool) -> None:
    """Create a revision in migrations/versions (review it before committing)."""
    from apicrud.db import migrate

    migrate.revision(_db_settings(ctx), message, autogenerate=not empty)


# -- accounts ---------------------------------------------------------------------

@main.group()
def account() -> None:
    """Accounts."""


@account.command("add")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--name", default=None, help="display name (default: the username)")
@click.option("--password", default=None,
              help="initial password (default: generated and printed once)")
@click.option("--admin", is_flag=True, help="give the account the admin role")
@click.pass_context
def account_add(ctx: click.Context, username: str, email: str, name: str | None,
                password: str | None, admin: bool) -> None:
    """Create an active account and its person, ready to log in."""
    from apicrud.auth.accounts import create_account
    from apicrud.db import migrate
    from apicrud.services import open_offline

    settings = _settings(ctx.find_root())
    _require_migrations(settings)
    migrate.upgrade(settings)
    offline = open_offline(settings)
    try:
        with offline.db.session() as session, session.begin():
            acct, pw = create_account(session, offline.models, username=username,
                                      email=email, name=name, password=password,
                                      is_admin=admin, id_prefix=settings.id_prefix)
    finally:
        offline.close()
    click.echo(f"created account {username} (uid {acct.uid}{', admin' if admin else ''})")
    if not password:
        click.echo(f"password: {pw}")


@contextlib.contextmanager
def _account_store(ctx: click.Context):
    """(settings, models, a database session in a transaction) with the identity
    component's cut-off installed: suspending here ends sessions (Redis) and API keys."""
    from apicrud.auth import cutoff
    from apicrud.auth.sessions import SessionManager
    from apicrud.db import migrate
    from apicrud.services import open_offline

    settings = _settings(ctx.find_root())
    _require_migrations(settings)
    migrate.upgrade(settings)
    offline = open_offline(settings, redis=True)
    try:
        sessions = SessionManager(offline.redis.client, settings.secret_key,
                                  ttl=settings.session_ttl)
        cutoff.install(offline.db, offline.models, sessions)
        with offline.db.session() as session, session.begin():
            yield settings, offline.models, session, sessions
    finally:
        offline.close()


def _named_account(session, models, username: str):
    from sqlalchemy import select

    from apicrud.db.query import TRASHED

    model = models.Account
    account = session.execute(select(model).where(
        model.name == username, model.status != TRASHED)).scalar_one_or_none()
    if account is None:
        raise click.ClickException(f"no account {username!r}")
    return account


@account.command("disable")
@click.argument("username")
@click.pass_context
def account_disable(ctx: click.Context, username: str) -> None:
    """Suspend an account: no login; its sessions and API keys end at once."""
    with _account_store(ctx) as (_, models, session, _sessions):
        acct = _named_account(session, models, username)
        if acct.status == "suspended":
            click.echo(f"account {username} is already suspended")
            return
        acct.status = "suspended"
        session.flush()
    click.echo(f"suspended account {username}: its sessions and API keys ended")


@account.command("enable")
@click.argument("username")
@click.pass_context
def account_enable(ctx: click.Context, username: str) -> None:
    """Enable a suspended account again (API keys ended by the suspension stay ended)."""
    with _account_store(ctx) as (_, models, session, _sessions):
        acct = _named_account(session, models, username)
        if acct.status != "suspended":
            click.echo(f"account {username} is {acct.status}, not suspended")
            return
        acct.status = "active" if acct.password else "pending"
        status = acct.status
    click.echo(f"account {username} is {status}")


@account.command("password")
@click.argument("username")
@click.option("--password", default=None,
              help="the new password (default: asked for, not echoed)")
@click.pass_context
def account_password(ctx: click.Context, username: str, password: str | None) -> None:
    """Set a new password (e.g. a lost one); every session of the account ends."""
    from apicrud.auth.password_rules import PasswordRules
    from apicrud.auth.passwords import hash_password
    from apicrud.db.base import utcnow
    from apicrud.errors import Problem

    if password is None:
        password = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    with _account_store(ctx) as (settings, models, session, sessions):
        acct = _named_account(session, models, username)
        person = session.get(models.Person, acct.uid)
        try:
            PasswordRules.from_settings(settings).check(
                password, acct.name, person.identity if person else None)
        except Problem as exc:
            raise click.ClickException(f"password refused: {exc.detail}") from None
        acct.password = hash_password(password)
        acct.password_changed = utcnow()
        if acct.status == "pending":
            acct.status = "active"
        status = acct.status
        session.flush()
        ended = sessions.delete_all(acct.uid)
    click.echo(f"password of {username} changed ({status}); {ended} session(s) ended")


@account.command("list")
@click.pass_context
def account_list(ctx: click.Context) -> None:
    """Every account: name, status, admin, uid, last login."""
    from sqlalchemy import select

    with _account_store(ctx) as (_, models, session, _sessions):
        model = models.Account
        rows = session.execute(select(model.name, model.status, model.is_admin, model.uid,
                                      model.last_login).order_by(model.name)).all()
    for name, status, is_admin, uid, last_login in rows:
        click.echo(f"{name:<32}  {status:<9}  {'admin' if is_admin else '-':<5}  {uid}  "
                   f"{last_login.isoformat(timespec='seconds') if last_login else '-'}")
    click.echo(f"{len(rows)} account(s)")


# -- rbac -------------------------------------------------------------------------

@main.group()
def rbac() -> None:
    """Access policies."""


@rbac.command("can-i")
@click.argument("action")
@click.argument("target", metavar="RESOURCE[:ID]")
@click.option("--as", "username", required=True, help="the account to ask for")
@click.option("--field", default=None, help="ask about one field (read: r, l; write: c, u)")
@click.pass_context
def rbac_can_i(ctx: click.Context, action: str, target: str, username: str,
               field: str | None) -> None:
    """May USERNAME do ACTION to RESOURCE[:ID] (to one --field)? Prints yes/no and the
    deciding rule.

    Exit status 0 for yes, 1 for no (like kubectl auth can-i).
    """
    from sqlalchemy import select

    from apicrud.access.explain import can_i
    from apicrud.auth.principal import Principal
    from apicrud.db.engine import Database
    from apicrud.redis_client import RedisProvider
    from apicrud.services import Services, load_declarations

    settings = _settings(ctx.find_root())
    decl = load_declarations(settings)
    if decl.problems:
        raise click.ClickException(str(StartupError(decl.problems)))
    resource, _, id_ = target.partition(":")
    database = Database(settings.sqlalchemy_url)
    redis = RedisProvider(settings.redis_url, settings.path("data_dir"))
    try:
        try:
            services = Services(settings, decl, database, redis, sessions=None)
        except StartupError as exc:
            raise click.ClickException(str(exc)) from None
        model = decl.models.Account
        with database.session() as session:
            account = session.execute(select(model).where(
                model.name == username, model.status.in_(("active", "pending")))) \
                .scalar_one_or_none()
            if account is None:
                raise click.ClickException(f"no account {username!r}")
            levels, kinds, via = services.roles.load_via(account.uid)
            principal = Principal(uid=account.uid, account_id=account.id, username=username,
                                  is_admin=account.is_admin, status=account.status,
                                  method="cli", memberships=levels, membership_kinds=kinds,
                                  membership_via=via)
            try:
                answer = can_i(services, session, principal, action, resource, id_ or None,
                               field=field)
            except KeyError:
                raise click.ClickException(f"no resource {resource!r}") from None
            except LookupError:
                raise click.ClickException(f"no field {field!r} in {resource}") from None
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
    finally:
        database.dispose()
        redis.close()
    click.echo(f"{'yes' if answer.allowed else 'no'}: {answer.reason}")
    sys.exit(0 if answer.allowed else 1)


# -- serve ------------------------------------------------------------------------

@main.command()
@click.option("--host", default=None, help="listen address (setting host)")
@click.option("--port", type=int, default=None, help="listen port (setting port)")
@click.option("--workers", type=int, default=None, help="worker processes (setting workers)")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None,
          workers: int | None) -> None:
    """Run the service under gunicorn (embedded Redis and SQLite unless configured)."""
    from apicrud.logs import configure_logging
    from apicrud.server import run

    changes = {k: v for k, v in (("host", host), ("port", port), ("workers", workers))
               if v is not None}
    try:
        settings = _settings(ctx, **changes)
        _require_project(settings)
        configure_logging(settings)  # log_format text|json; workers inherit it at fork
        run(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


# -- a project of your own --------------------------------------------------------

class _UsageError(click.UsageError):
    """A bad request of the generators: one line, exit status 2."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--force", is_flag=True, help="write into a folder that is not empty "
              "(files of the same name are replaced)")
def init(directory: str, force: bool) -> None:
    """Write a new project into DIRECTORY: spec, models, rbac.yaml, service_config.yaml,
    migrations, a test and a README, with one example resource (note)."""
    from apicrud.project import ProjectError, init_project

    try:
        written = init_project(directory, force=force)
    except ProjectError as exc:
        raise _UsageError(str(exc)) from None
    target = os.path.abspath(directory)
    for path in written:
        click.echo(f"  wrote {os.path.relpath(path, target)}")
    cd = "" if target == os.getcwd() else f"cd {os.path.relpath(target)} && "
    click.echo(f"created a project in {target}; next:\n"
               f"  {cd}apicrud db upgrade && apicrud serve\n"
               "  apicrud add resource book --field title:string:required "
               "--field year:integer")


@main.group()
def add() -> None:
    """Add to the project in the current folder (or --root)."""


@add.command("resource")
@click.argument("name")
@click.option("--field", "fields", multiple=True, metavar="NAME:TYPE[:required][:unique]",
              help="a field (repeat it); TYPE: string, text, integer, number, boolean, "
              "date-time")
@click.option("--plural", default=None, help="plural of NAME in summaries (default: "
              "category -> categories, box -> boxes, book -> books)")
@click.pass_context
def add_resource(ctx: click.Context, name: str, fields: tuple[str, ...],
                 plural: str | None) -> None:
    """Add resource NAME: its path and schema YAML, its entries in the spec, its model,
    its policy (admins all, owners their own) and a migration creating its table."""
    from apicrud.project import ProjectError, add_resource as generate

    root = ctx.find_root().obj.get("root") or os.environ.get("APICRUD_ROOT") or os.getcwd()
    try:
        written = generate(root, name, list(fields), plural=plural,
                           settings=_settings(ctx.find_root()))
    except ProjectError as exc:
        raise _UsageError(str(exc)) from None
    for path in written:
        click.echo(f"  wrote {os.path.relpath(path, os.path.abspath(root))}")
    click.echo(f"added resource {name}; next: apicrud check && apicrud db upgrade")


# -- messaging worker -------------------------------------------------------------

@main.command()
@click.option("--concurrency", type=int, default=2, show_default=True,
              help="messages sent at the same time")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]),
              default="prefork", show_default=True, help="Celery execution pool")
@click.option("--loglevel", default="INFO", show_default=True)
@click.pass_context
def worker(ctx: click.Context, concurrency: int, pool: str, loglevel: str) -> None:
    """Run the messaging worker (Celery; broker from setting broker_url or Redis)."""
    from apicrud.worker.main import run_worker

    run_worker(_settings(ctx), concurrency=concurrency, pool=pool, loglevel=loglevel)


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.pass_context
def beat(ctx: click.Context, loglevel: str) -> None:
    """Run Celery beat, which queues scheduled tasks (the trashcan's retention purge);
    run exactly one beside the workers."""
    from apicrud.worker.main import run_beat

    run_beat(_settings(ctx), loglevel=loglevel)


@main.command("dead-letters")
@click.option("--requeue", is_flag=True, help="queue every dead letter again")
@click.pass_context
def dead_letters(ctx: click.Context, requeue: bool) -> None:
    """List messages that could not be delivered (and optionally queue them again)."""
    from apicrud.worker.main import dead_letters as listing

    records, count = listing(_settings(ctx), requeue=requeue)
    for r in records:
        click.echo(f"{r.get('failed_at')}  {r.get('id')}  {r.get('template')}  "
                   f"{r.get('to')}  attempts={r.get('attempts')}  {r.get('error')}")
    click.echo(f"{len(records)} dead letter(s)" + (f", {count} requeued" if requeue else ""))


if __name__ == "__main__":  # pragma: no cover
    main()
