"""``apicrud serve``: gunicorn in front of create_app().

The master process starts the embedded Redis (when no URL is configured), applies
migrations and creates the first admin (:func:`apicrud.commands.first_admin`, the
function ``apicrud account add`` uses too), then forks workers that connect to the same
Redis by URL. Sync workers by default: for this CPU-bound request path they beat an
ASGI server with a thread bridge (README, "Serving stack").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from apicrud.commands import first_admin, require_project
from apicrud.db import migrate
from apicrud.db.schema import schema_problems
from apicrud.errors import StartupError
from apicrud.mutex import Mutex
from apicrud.redis_client import RedisProvider
from apicrud.services import backend_problems, load_declarations

if TYPE_CHECKING:
    from apicrud.config import Settings

log = logging.getLogger("apicrud.server")

#: gunicorn settings that only some supported releases have (pyproject: gunicorn >= 22;
#: the control socket came in 25.1): left out where the installed gunicorn lacks them
OPTIONAL_SETTINGS = frozenset({"control_socket_disable"})


def gunicorn_knows(setting: str) -> bool:
    """Whether the installed gunicorn has ``setting`` (one of :data:`OPTIONAL_SETTINGS`)."""
    from gunicorn.config import Config

    return setting in Config().settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in OPTIONAL_SETTINGS and key not in self.cfg.settings:
                continue
            self.cfg.set(key, value)

    def load(self) -> Any:  # a Flask app: gunicorn's stubs name a narrower WSGI callable
        from apicrud.app import create_app

        return create_app(settings=self.settings, migrate=False)


def ensure_admin(settings: Settings) -> None:
    """On first start with an empty database, create an admin (the same function as
    ``apicrud account add``: :func:`apicrud.commands.add_account`) and print its login
    once."""
    admin = first_admin(settings)
    if admin is None:
        return
    shown = admin.password or "(from setting admin_password)"
    print(f"\nfirst start: created admin account\n  username: {admin.username}\n"
          f"  password: {shown}\n", flush=True)


def run(settings: Settings) -> None:
    """``apicrud serve``: check, migrate, make the first admin, serve until stopped.

    :raises ApicrudError: no project at ``settings.root``, inconsistent declarations, a
        database or Redis that cannot be reached, a schema behind the models
    """
    from apicrud.logs import configure_logging

    require_project(settings)
    configure_logging(settings)  # log_format text|json; workers inherit it at fork
    decl = load_declarations(settings)
    if decl.problems:
        raise StartupError(decl.problems)
    problems = backend_problems(settings)  # a database or Redis that cannot be reached
    if problems:
        raise StartupError(problems)
    redis = RedisProvider(settings.redis_url, settings.path("data_dir"))
    try:
        if redis.embedded:
            settings = settings.replace(redis_url=redis.url)
        # one instance at a time: migrations run once, and only one first admin is made
        with Mutex(redis.client, "apicrud-start", ttl=600, max_wait=600):
            if settings.db_migrate_at_start and migrate.current(settings) != \
                    migrate.head(settings):
                log.info("applying database migrations")
                migrate.upgrade(settings)
            problems = schema_problems(settings)  # after migrating: what is still missing
            if problems:
                raise StartupError(problems)
            ensure_admin(settings)
        url = settings.public_url or f"http://{settings.host}:{settings.port}"
        admin = f", admin UI: {url}/admin/" if settings.admin_ui else ""
        print(f"apicrud serving {url}{settings.base_url}  (Swagger UI: {url}"
              f"{settings.base_url}/ui/{admin})", flush=True)
        options = {
            "bind": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "threads": settings.threads,
            "worker_class": "gthread" if settings.threads > 1 else "sync",
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level,
            "timeout": 60,
            # the longest request line gunicorn takes (its default is 4094); the spec caps
            # filter at 2048 characters, which URL-encoding may triple
            "limit_request_line": 8190,
            "graceful_timeout": 10,
            # a control socket under $HOME would be shared by every instance on the host
            "control_socket_disable": True,
        }
        _Gunicorn(settings, options).run()
    finally:
        redis.close()
