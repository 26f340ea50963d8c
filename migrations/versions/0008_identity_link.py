"""identity_link: accounts' identities at OpenID providers (issuer + subject).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "identity_link",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("last_login", TS, nullable=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("uid", ID, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_link")),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"],
                                name=op.f("fk_identity_link_account_id_account"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["uid"], ["person.id"],
                                name=op.f("fk_identity_link_uid_person"), ondelete="CASCADE"),
        sa.UniqueConstraint("issuer", "subject", "live",
                            name=op.f("uq_identity_link_issuer_subject_live")),
    )
    for column in ("status", "uid", "account_id"):
        op.create_index(op.f(f"ix_identity_link_{column}"), "identity_link", [column],
                        unique=False)


def downgrade() -> None:
    for column in ("status", "uid", "account_id"):
        op.drop_index(op.f(f"ix_identity_link_{column}"), table_name="identity_link")
    op.drop_table("identity_link")
