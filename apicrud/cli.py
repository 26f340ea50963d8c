"""The ``apicrud`` command: init, add, serve, db, account, rbac, check, routes, worker.

Argument parsing and printing only: each command loads the settings, calls one function
of :mod:`apicrud.commands` (or of the worker, :mod:`apicrud.worker.main`) and prints
what it returns. Every :class:`~apicrud.errors.ApicrudError` a command lets through is
one message and an exit status (``exit_code`` of the error, else 1), without a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from apicrud import commands
from apicrud.config import load_settings
from apicrud.errors import ApicrudError

if TYPE_CHECKING:
    from apicrud.config import Settings


class _BadRequest(click.ClickException):
    """A bad request of the generators: one line, exit status 2 (as a usage error)."""

    exit_code = 2


class Commands(click.Group):
    """Reports the one error base, :class:`ApicrudError`, as ``Error: <message>`` and
    its exit status (2 for a bad request of the generators, else 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApicrudError as exc:
            refused = _BadRequest if getattr(exc, "exit_code", 1) == 2 else \
                click.ClickException
            raise refused(str(exc)) from None


def _settings(ctx: click.Context, **changes: Any) -> Settings:
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

@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check spec, models, rbac.yaml, the database's schema and Redis; list every problem
    (exit 1 if any)."""
    report = commands.check(_settings(ctx))
    if report.problems:
        click.echo(f"{len(report.problems)} problem(s):", err=True)
        for problem in report.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    click.echo(f"ok: {report.operations} operations, {report.resources} resources")
    if report.note:
        click.echo(report.note)


@main.command()
@click.pass_context
def routes(ctx: click.Context) -> None:
    """Print every URL, method, controller and whether it is public."""
    rows = [(r.method, r.url, r.target, r.access) for r in commands.routes(_settings(ctx))]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")


# -- database ---------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database migrations (alembic, URL from settings)."""


@db.command()
@click.argument("revision", default="head")
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Upgrade the database to REVISION (default head)."""
    click.echo(f"at revision {commands.db_upgrade(_settings(ctx.find_root()), revision)}")


@db.command()
@click.argument("revision", default="-1")
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Downgrade the database to REVISION (default: one step)."""
    click.echo(f"at revision {commands.db_downgrade(_settings(ctx.find_root()), revision)}")


@db.command()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the database's revision and the head."""
    at, head = commands.db_current(_settings(ctx.find_root()))
    click.echo(f"current: {at}  head: {head}")


@db.command()
@click.option("-m", "--message", required=True, help="what the revision changes")
@click.option("--empty", is_flag=True, help="do not autogenerate from the models")
@click.pass_context
def revision(ctx: click.Context, message: str, empty: bool) -> None:
    """Create a revision in migrations/versions (review it before committing)."""
    commands.db_revision(_settings(ctx.find_root()), message, autogenerate=not empty)


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
    new = commands.account_add(_settings(ctx.find_root()), username, email, name=name,
                               password=password, admin=admin)
    click.echo(f"created account {new.username} (uid {new.uid}{', admin' if admin else ''})")
    if new.password:
        click.echo(f"password: {new.password}")


@account.command("disable")
@click.argument("username")
@click.pass_context
def account_disable(ctx: click.Context, username: str) -> None:
    """Suspend an account: no login; its sessions and API keys end at once."""
    if commands.disable_account(_settings(ctx.find_root()), username):
        click.echo(f"suspended account {username}: its sessions and API keys ended")
    else:
        click.echo(f"account {username} is already suspended")


@account.command("enable")
@click.argument("username")
@click.pass_context
def account_enable(ctx: click.Context, username: str) -> None:
    """Enable a suspended account again (API keys ended by the suspension stay ended)."""
    enabled, status = commands.enable_account(_settings(ctx.find_root()), username)
    click.echo(f"account {username} is {status}" if enabled else
               f"account {username} is {status}, not suspended")


@account.command("password")
@click.argument("username")
@click.option("--password", default=None,
              help="the new password (default: asked for, not echoed)")
@click.pass_context
def account_password(ctx: click.Context, username: str, password: str | None) -> None:
    """Set a new password (e.g. a lost one); every session of the account ends."""
    if password is None:
        password = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    status, ended = commands.set_password(_settings(ctx.find_root()), username, password)
    click.echo(f"password of {username} changed ({status}); {ended} session(s) ended")


@account.command("list")
@click.pass_context
def account_list(ctx: click.Context) -> None:
    """Every account: name, status, admin, uid, last login."""
    rows = commands.list_accounts(_settings(ctx.find_root()))
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
    answer = commands.can_i(_settings(ctx.find_root()), action, target, username, field)
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
    from apicrud.server import run

    changes = {k: v for k, v in (("host", host), ("port", port), ("workers", workers))
               if v is not None}
    run(_settings(ctx, **changes))


# -- a project of your own --------------------------------------------------------

@main.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--force", is_flag=True, help="write into a folder that is not empty "
              "(files of the same name are replaced)")
def init(directory: str, force: bool) -> None:
    """Write a new project into DIRECTORY: spec, models, rbac.yaml, service_config.yaml,
    migrations, a test and a README, with one example resource (note)."""
    from apicrud.project import init_project

    written = init_project(directory, force=force)  # ProjectError: exit status 2
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
    from apicrud.project import add_resource as generate

    root = ctx.find_root().obj.get("root") or os.environ.get("APICRUD_ROOT") or os.getcwd()
    written = generate(root, name, list(fields), plural=plural,  # ProjectError: status 2
                       settings=_settings(ctx.find_root()))
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
