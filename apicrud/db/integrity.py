"""What a database's integrity error means, told by the driver's error code.

One place turns an ``IntegrityError`` into a problem document, on every backend, without
reading the driver's English message:

- PostgreSQL (psycopg): SQLSTATE ``23505`` unique, ``23503`` foreign key, ``23502`` not null;
- MariaDB/MySQL (pymysql): error numbers 1062/1586 duplicate key, 1216/1217/1451/1452
  foreign key, 1048/1364 missing value;
- SQLite (Python 3.11+): ``sqlite_errorname`` ``SQLITE_CONSTRAINT_UNIQUE`` or ``_PRIMARYKEY``,
  ``_FOREIGNKEY``, ``_NOTNULL``.

Anything else (a CHECK constraint, an unknown driver) counts as a conflict.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from apicrud.errors import BadRequest, Conflict, Problem
from apicrud.i18n import N_


class Violation(StrEnum):
    UNIQUE = "unique"
    FOREIGN_KEY = "foreign key"
    NOT_NULL = "not null"
    OTHER = "other"


_SQLSTATE = {"23505": Violation.UNIQUE, "23503": Violation.FOREIGN_KEY,
             "23502": Violation.NOT_NULL}
_MYSQL = {1062: Violation.UNIQUE, 1586: Violation.UNIQUE,
          1216: Violation.FOREIGN_KEY, 1217: Violation.FOREIGN_KEY,
          1451: Violation.FOREIGN_KEY, 1452: Violation.FOREIGN_KEY,
          1048: Violation.NOT_NULL, 1364: Violation.NOT_NULL}
_SQLITE = {"SQLITE_CONSTRAINT_UNIQUE": Violation.UNIQUE,
           "SQLITE_CONSTRAINT_PRIMARYKEY": Violation.UNIQUE,
           "SQLITE_CONSTRAINT_FOREIGNKEY": Violation.FOREIGN_KEY,
           "SQLITE_CONSTRAINT_NOTNULL": Violation.NOT_NULL}


def violation(exc: IntegrityError) -> Violation:
    """Which kind of constraint the statement broke."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate in _SQLSTATE:
        return _SQLSTATE[sqlstate]
    name = getattr(orig, "sqlite_errorname", None)  # sqlite3
    if name in _SQLITE:
        return _SQLITE[name]
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL:  # pymysql
        return _MYSQL[args[0]]
    return Violation.OTHER


def integrity_problem(exc: IntegrityError, subject: str | None = None) -> Problem:
    """409 for unique and foreign-key conflicts; 400 for a missing required value.

    :param subject: what was written (a resource name), to start the detail with
    """
    kind = violation(exc)
    prefix = f"{subject}: " if subject else ""
    if kind is Violation.NOT_NULL:
        return BadRequest(N_("%(prefix)sa required value is missing", prefix=prefix))
    if kind is Violation.FOREIGN_KEY:
        return Conflict(N_("%(prefix)sa referenced record does not exist or is still in use",
                           prefix=prefix))
    if kind is Violation.UNIQUE:
        return Conflict(N_("%(prefix)sa record with these values already exists",
                           prefix=prefix))
    return Conflict(N_("%(prefix)sconflicts with an existing record", prefix=prefix))
