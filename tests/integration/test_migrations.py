"""The migrations build exactly the schema the models declare, on every backend."""

from __future__ import annotations

import importlib

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from apicrud.db import migrate


def test_database_at_head_matches_the_models(server):
    settings = server.settings
    assert migrate.current(settings) == migrate.head(settings)
    models = importlib.import_module(settings.models_module)
    with server.services.db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, models.Base.metadata)
    assert diff == [], "models and migrations disagree:\n" + "\n".join(map(str, diff))
