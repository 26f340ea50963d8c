"""Audit trail: one append-only entry per write.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("uid", sa.String(32)),
        sa.Column("auth_method", sa.String(16)),
        sa.Column("apikey_id", sa.String(32)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("client_addr", sa.String(64)),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(32)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(64)),
        sa.Column("changes", sa.Text()),
        sa.Column("rule", sa.String(255)),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_record", "audit", ["resource", "record_id", "created"])
    op.create_index("ix_audit_created", "audit", ["created", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_created", table_name="audit")
    op.drop_index("ix_audit_record", table_name="audit")
    op.drop_table("audit")
