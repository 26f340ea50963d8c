"""File: uploaded files' metadata (apicrud.files keeps the bytes).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "file",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("storage_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("keep_location", sa.Boolean(), nullable=False),
        sa.Column("thumbnail_key", sa.String(length=64), nullable=True),
        sa.Column("list_id", ID, nullable=True),
        sa.Column("privacy", sa.String(length=8), nullable=False),
        sa.Column("uid", ID, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file")),
        sa.ForeignKeyConstraint(["list_id"], ["list.id"], name=op.f("fk_file_list_id_list"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["uid"], ["person.id"], name=op.f("fk_file_uid_person"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("storage_key", name=op.f("uq_file_storage_key")),
    )
    for column in ("status", "uid", "list_id"):
        op.create_index(op.f(f"ix_file_{column}"), "file", [column], unique=False)
    op.create_index("ix_file_list_id_id", "file", ["list_id", "id"])
    op.create_index("ix_file_uid_id", "file", ["uid", "id"])


def downgrade() -> None:
    op.drop_table("file")
