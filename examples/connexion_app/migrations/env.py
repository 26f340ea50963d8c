"""Alembic environment: the database URL and the models come from apicrud settings."""

from __future__ import annotations

import importlib
import sys

from alembic import context
from sqlalchemy import engine_from_config, pool

from apicrud.config import load_settings

config = context.config
settings = config.attributes.get("settings") or load_settings()
if not config.get_main_option("sqlalchemy.url"):
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
if str(settings.root) not in sys.path:  # the models module lives in the project
    sys.path.insert(0, str(settings.root))
target_metadata = importlib.import_module(settings.models_module).Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # batch mode lets ALTER TABLE work on SQLite too
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
