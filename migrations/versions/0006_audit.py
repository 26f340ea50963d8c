"""Audit trail: one append-only entry per write; webhooks and their deliveries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
    op.create_table(
        "webhook",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("modified", TIMESTAMP),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean()),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("filter", sa.Text()),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["uid"], ["person.id"], name="fk_webhook_uid_person",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook"),
    )
    op.create_index("ix_webhook_status", "webhook", ["status"])
    op.create_index("ix_webhook_uid", "webhook", ["uid"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("modified", TIMESTAMP),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_status", sa.Integer()),
        sa.Column("error", sa.String(255)),
        sa.Column("webhook_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhook.id"],
                                name="fk_webhook_delivery_webhook_id_webhook",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
    )
    op.create_index("ix_webhook_delivery_webhook", "webhook_delivery",
                    ["webhook_id", "created"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_webhook", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_index("ix_webhook_uid", table_name="webhook")
    op.drop_index("ix_webhook_status", table_name="webhook")
    op.drop_table("webhook")
    op.drop_index("ix_audit_created", table_name="audit")
    op.drop_index("ix_audit_record", table_name="audit")
    op.drop_table("audit")
