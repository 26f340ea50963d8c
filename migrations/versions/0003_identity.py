"""Identity: TOTP and password columns on account; apikey, scope and settings tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.String(length=32)


def _record_columns(table: str) -> list:
    return [
        sa.Column("id", ID, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def _owner(table: str) -> list:
    return [
        sa.Column("uid", ID, nullable=False),
        sa.ForeignKeyConstraint(["uid"], ["person.id"], name=op.f(f"fk_{table}_uid_person"),
                                ondelete="CASCADE"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("password_changed", TS, nullable=True))
        batch.add_column(sa.Column("totp_secret", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("totp_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("backup_codes", sa.Text(), nullable=True))

    op.create_table(
        "scope",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        *_record_columns("scope"),
        sa.UniqueConstraint("name", "live", name=op.f("uq_scope_name_live")),
    )
    op.create_index(op.f("ix_scope_status"), "scope", ["status"], unique=False)

    op.create_table(
        "apikey",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("expires", TS, nullable=True),
        sa.Column("last_used", TS, nullable=True),
        *_owner("apikey"),
        *_record_columns("apikey"),
        sa.UniqueConstraint("prefix", name=op.f("uq_apikey_prefix")),
        sa.UniqueConstraint("uid", "name", "live", name=op.f("uq_apikey_uid_name_live")),
    )
    for column in ("status", "uid"):
        op.create_index(op.f(f"ix_apikey_{column}"), "apikey", [column], unique=False)

    op.create_table(
        "settings",
        sa.Column("account_id", ID, nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("timezone", sa.String(length=48), nullable=False),
        sa.Column("default_category_id", ID, nullable=True),
        sa.Column("default_privacy", sa.String(length=8), nullable=False),
        *_owner("settings"),
        *_record_columns("settings"),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"],
                                name=op.f("fk_settings_account_id_account"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["default_category_id"], ["category.id"],
                                name=op.f("fk_settings_default_category_id_category"),
                                ondelete="SET NULL"),
        sa.UniqueConstraint("account_id", "live", name=op.f("uq_settings_account_id_live")),
    )
    for column in ("status", "uid"):
        op.create_index(op.f(f"ix_settings_{column}"), "settings", [column], unique=False)


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("apikey")
    op.drop_table("scope")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("backup_codes")
        batch.drop_column("totp_enabled")
        batch.drop_column("totp_secret")
        batch.drop_column("password_changed")
