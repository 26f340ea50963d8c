"""Message: a covering index for the access filter of find (and its count).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # every column the RBAC filter of a message find reads: the count of readable rows
    # scans this index instead of the table (about a third faster on SQLite at 100,000
    # rows, bench/crud.py)
    op.create_index("ix_message_access", "message", ["list_id", "privacy", "uid", "status"])


def downgrade() -> None:
    op.drop_index("ix_message_access", table_name="message")
