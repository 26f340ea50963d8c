"""apicrud.commands called as functions, without click: what each returns, what it
refuses (an ApicrudError naming the cause), and the one username rule of ``account add``
and the first start's admin.

Each test has a project of its own: the repository's, on a SQLite file and (where a
command needs Redis) an embedded Redis in ``tmp_path``; the environment is not read.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import select

from apicrud import commands
from apicrud.auth.accounts import AccountError
from apicrud.auth.passwords import verify_password
from apicrud.config import load_settings
from apicrud.errors import ApicrudError
from apicrud.services import open_offline

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, root: Path = ROOT, **values):
    return load_settings(root=root, environ={}, data_dir=str(tmp_path),
                         secret_key="commands-" + secrets.token_hex(16), **values)


@pytest.fixture
def settings(tmp_path):
    s = _settings(tmp_path)
    commands.db_upgrade(s)
    return s


def _stored(settings, username: str):
    offline = open_offline(settings)
    try:
        with offline.db.session() as session:
            model = offline.models.Account
            return session.execute(select(model.name, model.password, model.is_admin)
                                   .where(model.name == username)).one_or_none()
    finally:
        offline.close()


def test_add_account_keeps_the_name_as_written_unique_in_any_case(settings):
    alice = commands.account_add(settings, "Alice", "alice@example.com",
                                 password="alice-Secret-9f3b", admin=True)
    assert (alice.username, alice.admin, alice.password) == ("Alice", True, None)
    _, hashed, is_admin = _stored(settings, "Alice")
    assert is_admin and verify_password(hashed, "alice-Secret-9f3b")
    for taken in ("alice", "ALICE", " Alice "):
        with pytest.raises(AccountError, match="already exists"):
            commands.add_account(settings, taken, "other@example.com")
    # surrounding white space goes, as registration over HTTP has it; the case stays
    bob = commands.add_account(settings, "  BoB ", "bob@example.com")
    assert bob.username == "BoB" and _stored(settings, "BoB") is not None
    assert len(bob.password) >= 12 and verify_password(_stored(settings, "BoB")[1],
                                                       bob.password)
    with pytest.raises(AccountError, match="not an email address"):
        commands.add_account(settings, "carol", "not-an-address")


def test_first_admin_goes_only_into_an_empty_database_by_the_same_rule(tmp_path):
    settings = _settings(tmp_path, admin_username="Root", admin_email="root@example.com")
    commands.db_upgrade(settings)
    admin = commands.first_admin(settings)
    assert admin is not None and (admin.username, admin.admin) == ("Root", True)
    assert verify_password(_stored(settings, "Root")[1], admin.password)
    assert commands.first_admin(settings) is None  # accounts exist: nothing made
    with pytest.raises(AccountError, match="account 'root' already exists"):
        commands.account_add(settings, "root", "other@example.com")

    given = _settings(tmp_path / "second", admin_password="given-Secret-77aa")
    commands.db_upgrade(given)
    admin = commands.first_admin(given)
    assert admin.username == "admin" and admin.password is None  # the setting's, not shown
    assert verify_password(_stored(given, "admin")[1], "given-Secret-77aa")


def test_check_routes_and_revisions_answer_as_data(settings):
    report = commands.check(settings)
    assert report.problems == [] and report.note is None
    assert report.operations > 10 and report.resources > 3
    found = {(r.method, r.url): r for r in commands.routes(settings)}
    one = found[("GET", "/api/v1/list/{id}")]
    assert one.target.endswith(".get") and one.access == "secured"
    assert found[("GET", "/api/v1/health")].access == "public"
    at, head = commands.db_current(settings)
    assert at == head and at
    assert commands.db_downgrade(settings) != head
    assert commands.db_upgrade(settings) == head


def test_commands_outside_a_project_say_what_to_do(tmp_path):
    empty = _settings(tmp_path, root=tmp_path)
    for run, message in ((commands.check, "no apicrud project in"),
                         (commands.routes, "no apicrud project in"),
                         (commands.db_upgrade, "no migrations folder"),
                         (lambda s: commands.account_add(s, "x", "x@example.com"),
                          "no migrations folder")):
        with pytest.raises(commands.CommandError, match=message) as info:
            run(empty)
        assert isinstance(info.value, ApicrudError)  # the one base the CLI catches
        assert "apicrud init ." in str(info.value)


def test_account_state_commands_and_can_i(settings):
    commands.account_add(settings, "dora", "dora@example.com", password="dora-Secret-1234")
    assert commands.disable_account(settings, "dora") is True
    assert commands.disable_account(settings, "dora") is False  # already suspended
    assert ("dora", "suspended") in [row[:2] for row in commands.list_accounts(settings)]
    assert commands.enable_account(settings, "dora") == (True, "active")
    assert commands.enable_account(settings, "dora") == (False, "active")
    status, ended = commands.set_password(settings, "dora", "New-Secret-5678-xq")
    assert (status, ended) == ("active", 0)
    assert verify_password(_stored(settings, "dora")[1], "New-Secret-5678-xq")
    with pytest.raises(commands.CommandError, match="password refused"):
        commands.set_password(settings, "dora", "short")
    with pytest.raises(commands.CommandError, match="no account 'nobody'"):
        commands.disable_account(settings, "nobody")

    answer = commands.can_i(settings, "c", "list", "dora")
    assert answer.allowed is True and answer.reason
    with pytest.raises(commands.CommandError, match="no resource 'nothing'"):
        commands.can_i(settings, "r", "nothing", "dora")
    with pytest.raises(commands.CommandError, match="no account 'nobody'"):
        commands.can_i(settings, "r", "list", "nobody")
