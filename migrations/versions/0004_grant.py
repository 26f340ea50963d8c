"""Grants: per-user overrides of default_grants.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "grant",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("expires", TS, nullable=True),
        sa.Column("uid", ID, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grant")),
        sa.ForeignKeyConstraint(["uid"], ["person.id"], name=op.f("fk_grant_uid_person"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("uid", "name", "live", name=op.f("uq_grant_uid_name_live")),
    )
    for column in ("status", "uid"):
        op.create_index(op.f(f"ix_grant_{column}"), "grant", [column], unique=False)


def downgrade() -> None:
    op.drop_table("grant")
