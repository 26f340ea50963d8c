"""Memberships: the listmember table (who belongs to which list, at which level).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "listmember",
        sa.Column("list_id", ID, nullable=False),
        sa.Column("uid", ID, nullable=False),
        sa.Column("authorization", sa.String(length=8), nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listmember")),
        sa.ForeignKeyConstraint(["list_id"], ["list.id"], name=op.f("fk_listmember_list_id_list"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["uid"], ["person.id"], name=op.f("fk_listmember_uid_person"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("list_id", "uid", "live", name=op.f("uq_listmember_list_id_uid_live")),
    )
    for column in ("status", "list_id", "uid"):
        op.create_index(op.f(f"ix_listmember_{column}"), "listmember", [column], unique=False)


def downgrade() -> None:
    op.drop_table("listmember")
