"""Creating accounts (and the person each belongs to) outside of HTTP: CLI and first start."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from apicrud.auth.passwords import hash_password
from apicrud.db.base import new_id
from apicrud.errors import ApicrudError

#: an address an SMTP relay will take without SMTPUTF8 (the same pattern is in the spec)
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL_PATTERN = (r"^[A-Za-z0-9_%+'-]+(\.[A-Za-z0-9_%+'-]+)*@"
                 rf"{_LABEL}(\.{_LABEL})*\.[A-Za-z]{{2,63}}$")
_EMAIL = re.compile(EMAIL_PATTERN)
ACCOUNT_STATES = ("active", "pending")
SUSPENDED = "suspended"
#: states that keep a username taken
NAME_HOLDING = ACCOUNT_STATES + (SUSPENDED,)


class AccountError(ApicrudError, ValueError):
    """The account cannot be created (name taken, bad input)."""


def valid_email(address: str) -> bool:
    """EMAIL_PATTERN plus the lengths of RFC 5321: local part 64, domain labels 63."""
    local, _, domain = address.rpartition("@")
    return bool(_EMAIL.match(address)) and len(local) <= 64 and \
        all(len(label) <= 63 for label in domain.split("."))


def username_taken(db_session: Session, account_model: Any, username: str) -> bool:
    """Whether an account holds this name, in any letter case (registration, the command
    line and the first start agree: ``Alice`` is taken once ``alice`` is)."""
    return db_session.execute(select(account_model.id).where(
        func.lower(account_model.name) == username.lower(),
        account_model.status.in_(NAME_HOLDING))).first() is not None


def address_holder(db_session: Session, person_model: Any, email: str) -> Any:
    """The live person registered with this address, in any letter case (or None)."""
    return db_session.execute(select(person_model).where(
        func.lower(person_model.identity) == email.lower(),
        person_model.status == "active").limit(1)).scalar_one_or_none()


def create_account(db_session: Session, models: Any, *, username: str, email: str,
                   name: str | None = None,
                   password: str | None = None, is_admin: bool = False,
                   id_prefix: str = "x-") -> tuple[Any, str]:
    """Create an active account and its person; return (account, password).

    A random password is generated when none is given.
    """
    account_model, person_model = models.Account, models.Person
    if not username or len(username) > 32:
        raise AccountError("username must be 1 to 32 characters")
    if not valid_email(email):
        raise AccountError(f"email {email!r} is not an email address")
    if username_taken(db_session, account_model, username):
        raise AccountError(f"account {username!r} already exists")
    if address_holder(db_session, person_model, email) is not None:
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


def count_accounts(db_session: Session, models: Any) -> int:
    return db_session.execute(select(func.count()).select_from(models.Account)).scalar_one()
