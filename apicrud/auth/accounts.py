"""Creating accounts (and the person each belongs to) outside of HTTP: CLI and first start."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from apicrud.auth.passwords import hash_password
from apicrud.db.base import new_id


class AccountError(ValueError):
    """The account cannot be created (name taken, bad input)."""


def create_account(db_session, models, *, username: str, email: str, name: str | None = None,
                   password: str | None = None, is_admin: bool = False,
                   id_prefix: str = "x-") -> tuple[object, str]:
    """Create an active account and its person; return (account, password).

    A random password is generated when none is given.
    """
    account_model, person_model = models.Account, models.Person
    if not username or len(username) > 32:
        raise AccountError("username must be 1 to 32 characters")
    if db_session.execute(select(account_model.id).where(account_model.name == username)) \
            .first():
        raise AccountError(f"account {username!r} already exists")
    if db_session.execute(select(person_model.id).where(person_model.identity == email)).first():
        raise AccountError(f"a person with email {email!r} already exists")
    password = password or secrets.token_urlsafe(16)
    person = person_model(id=new_id(id_prefix), name=name or username, identity=email,
                          privacy="member")
    db_session.add(person)
    db_session.flush()
    account = account_model(id=new_id(id_prefix), name=username, uid=person.id,
                            password=hash_password(password), is_admin=is_admin,
                            status="active")
    db_session.add(account)
    db_session.flush()
    return account, password


def count_accounts(db_session, models) -> int:
    return db_session.execute(select(func.count()).select_from(models.Account)).scalar_one()
