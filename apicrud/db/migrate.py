"""Programmatic alembic: upgrade, downgrade, current, revision, with URL from settings.

Several instances starting together take a Redis mutex, so migrations run once.
"""

from __future__ import annotations

import io
import logging
import os
from typing import TYPE_CHECKING, TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from apicrud.db.engine import ensure_sqlite_dir
from apicrud.mutex import Mutex

if TYPE_CHECKING:
    from redis import Redis

    from apicrud.config import Settings

log = logging.getLogger("apicrud.migrate")


def alembic_config(settings: Settings, stdout: TextIO | None = None) -> Config:
    ensure_sqlite_dir(settings.sqlalchemy_url)
    cfg = Config(stdout=stdout or io.StringIO())
    cfg.set_main_option("script_location", os.path.join(settings.root, "migrations"))
    # Percent signs in a URL would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str = "-1") -> None:
    command.downgrade(alembic_config(settings), revision)


def current(settings: Settings) -> str | None:
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head(settings: Settings) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


def revision(settings: Settings, message: str, autogenerate: bool = True) -> None:
    command.revision(alembic_config(settings), message=message, autogenerate=autogenerate)


def upgrade_with_lock(settings: Settings, redis_client: Redis, wait: float = 300.0) -> None:
    """Apply pending migrations, once across every instance sharing this Redis."""
    if current(settings) == head(settings):
        return
    with Mutex(redis_client, "apicrud-migrate", ttl=600, max_wait=wait):
        if current(settings) != head(settings):
            log.info("applying database migrations")
            upgrade(settings)
