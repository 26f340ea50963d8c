"""Add table project.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
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


def upgrade() -> None:
    op.create_table(
        "project",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "created",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "modified",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["uid"], ["person.id"], name=op.f("fk_project_uid_person"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["org_id"], ["org.id"], name=op.f("fk_project_org_id_org")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
    )
    op.create_index(op.f("ix_project_status"), "project", ["status"], unique=False)
    op.create_index(op.f("ix_project_uid"), "project", ["uid"], unique=False)
    op.create_index(op.f("ix_project_org_id"), "project", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_project_uid"), table_name="project")
    op.drop_index(op.f("ix_project_status"), table_name="project")
    op.drop_table("project")
