"""Add tables event, eventrole, session, speaker, eventsettings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
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


def upgrade() -> None:
    op.create_table(
        "eventsettings",
        sa.Column("app_name", sa.String(length=255), nullable=True),
        sa.Column("tagline", sa.String(length=255), nullable=True),
        sa.Column("support_url", sa.String(length=255), nullable=True),
        sa.Column("analytics_key", sa.String(length=255), nullable=True),
        sa.Column("admin_email", sa.String(length=255), nullable=True),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eventsettings")),
    )
    with op.batch_alter_table("eventsettings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eventsettings_status"), ["status"], unique=False)

    op.create_table(
        "event",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
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
            ["uid"], ["person.id"], name=op.f("fk_event_uid_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_uid"), ["uid"], unique=False)

    op.create_table(
        "eventrole",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
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
            ["event_id"], ["event.id"], name=op.f("fk_eventrole_event_id_event"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["uid"], ["person.id"], name=op.f("fk_eventrole_uid_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eventrole")),
    )
    with op.batch_alter_table("eventrole", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eventrole_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_eventrole_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_eventrole_uid"), ["uid"], unique=False)

    op.create_table(
        "session",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
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
            ["event_id"], ["event.id"], name=op.f("fk_session_event_id_event"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["uid"], ["person.id"], name=op.f("fk_session_uid_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session")),
    )
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_session_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_uid"), ["uid"], unique=False)

    op.create_table(
        "speaker",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
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
            ["event_id"], ["event.id"], name=op.f("fk_speaker_event_id_event"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["session.id"],
            name=op.f("fk_speaker_session_id_session"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uid"], ["person.id"], name=op.f("fk_speaker_uid_person"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_speaker")),
    )
    with op.batch_alter_table("speaker", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_speaker_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_speaker_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_speaker_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_speaker_uid"), ["uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("speaker", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_speaker_uid"))
        batch_op.drop_index(batch_op.f("ix_speaker_status"))
        batch_op.drop_index(batch_op.f("ix_speaker_session_id"))
        batch_op.drop_index(batch_op.f("ix_speaker_event_id"))

    op.drop_table("speaker")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_uid"))
        batch_op.drop_index(batch_op.f("ix_session_status"))
        batch_op.drop_index(batch_op.f("ix_session_event_id"))

    op.drop_table("session")
    with op.batch_alter_table("eventrole", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eventrole_uid"))
        batch_op.drop_index(batch_op.f("ix_eventrole_status"))
        batch_op.drop_index(batch_op.f("ix_eventrole_event_id"))

    op.drop_table("eventrole")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_uid"))
        batch_op.drop_index(batch_op.f("ix_event_status"))

    op.drop_table("event")
    with op.batch_alter_table("eventsettings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eventsettings_status"))

    op.drop_table("eventsettings")
