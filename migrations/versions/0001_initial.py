"""Initial tables: person, account, category, list, message, contact.

Reviewed by hand from autogenerate output: common record columns come from one
helper, timestamps keep microseconds on MariaDB (keyset paging and ETags rely on
them), unique constraints include ``live`` (NULL once trashed) so that they bind live
records only, and every constraint is named by the metadata naming convention.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.String(length=32)


def _record_columns(table: str) -> list:
    """id, created, modified, status, version, live: the columns of RecordMixin."""
    return [
        sa.Column("id", ID, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        # NULL once trashed: unique constraints include it and bind live rows only
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def _owner(table: str) -> list:
    return [
        sa.Column("uid", ID, nullable=False),
        sa.ForeignKeyConstraint(["uid"], ["person.id"], name=op.f(f"fk_{table}_uid_person"),
                                ondelete="CASCADE"),
    ]


def _indexes(table: str, *columns: str) -> None:
    for column in ("status",) + columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=254), nullable=True),
        sa.Column("privacy", sa.String(length=8), nullable=False),
        *_record_columns("person"),
        sa.UniqueConstraint("identity", "live", name=op.f("uq_person_identity_live")),
    )
    _indexes("person")

    op.create_table(
        "account",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("password", sa.String(length=256), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("last_login", TS, nullable=True),
        *_owner("account"),
        *_record_columns("account"),
        sa.UniqueConstraint("name", "live", name=op.f("uq_account_name_live")),
    )
    _indexes("account", "uid")

    op.create_table(
        "category",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        *_owner("category"),
        *_record_columns("category"),
        sa.UniqueConstraint("uid", "name", "live", name=op.f("uq_category_uid_name_live")),
    )
    _indexes("category", "uid")

    op.create_table(
        "contact",
        sa.Column("info", sa.String(length=254), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("privacy", sa.String(length=8), nullable=False),
        *_owner("contact"),
        *_record_columns("contact"),
        sa.UniqueConstraint("uid", "type", "info", "live",
                            name=op.f("uq_contact_uid_type_info_live")),
    )
    _indexes("contact", "uid")

    op.create_table(
        "list",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("privacy", sa.String(length=8), nullable=False),
        sa.Column("category_id", ID, nullable=True),
        *_owner("list"),
        *_record_columns("list"),
        sa.ForeignKeyConstraint(["category_id"], ["category.id"],
                                name=op.f("fk_list_category_id_category"), ondelete="SET NULL"),
        sa.UniqueConstraint("uid", "name", "live", name=op.f("uq_list_uid_name_live")),
    )
    _indexes("list", "uid", "category_id")

    op.create_table(
        "message",
        sa.Column("list_id", ID, nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("privacy", sa.String(length=8), nullable=False),
        *_owner("message"),
        *_record_columns("message"),
        sa.ForeignKeyConstraint(["list_id"], ["list.id"], name=op.f("fk_message_list_id_list"),
                                ondelete="CASCADE"),
    )
    _indexes("message", "uid", "list_id")
    # keyset pages of a list or an author in id order come straight from these
    op.create_index("ix_message_list_id_id", "message", ["list_id", "id"], unique=False)
    op.create_index("ix_message_uid_id", "message", ["uid", "id"], unique=False)


def downgrade() -> None:
    for table in ("message", "list", "contact", "category", "account", "person"):
        op.drop_table(table)
