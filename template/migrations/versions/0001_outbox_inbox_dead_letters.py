"""Outbox, inbox, dead letters and the example domain tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")
_ZERO = sa.text("0")
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message_id", sa.Uuid, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("created_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("available_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("published_at", _TZ),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", _TZ),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=_ZERO),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_pending", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL"))
    op.create_index(
        "uq_outbox_pending_message",
        "outbox",
        ["message_id"],
        unique=True,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_pending_key",
        "outbox",
        ["topic", "key", "id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    # Wake the relay at commit time; one notification per inserting statement is enough.
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox_pending', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("message_id", sa.Uuid, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=_ZERO),
        sa.Column("first_seen_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("last_attempt_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("processed_at", _TZ),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("consumer", "message_id", name="pk_inbox"),
    )
    op.create_index(
        "ix_inbox_processed_at",
        "inbox",
        ["processed_at"],
        postgresql_where=sa.text("processed_at IS NOT NULL"),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("message_id", sa.Uuid),
        sa.Column("type", sa.Text),
        sa.Column("schema_version", sa.Integer),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("error_type", sa.Text, nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("source", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("dead_lettered_at", _TZ, nullable=False, server_default=_NOW),
        sa.Column("replayed_at", _TZ),
    )
    op.create_index(
        "uq_dead_letters_pending",
        "dead_letters",
        ["consumer", "message_id"],
        unique=True,
        postgresql_where=sa.text("replayed_at IS NULL AND message_id IS NOT NULL"),
    )

    op.create_table(
        "example_records",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("contract", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("data", postgresql.JSONB, nullable=False),
        sa.Column("created_at", _TZ, nullable=False, server_default=_NOW),
    )
    op.create_table(
        "example_effects",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message_id", sa.Uuid, nullable=False),
        sa.Column("contract", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("data", postgresql.JSONB, nullable=False),
        sa.Column("applied_at", _TZ, nullable=False, server_default=_NOW),
    )


def downgrade() -> None:
    op.drop_table("example_effects")
    op.drop_table("example_records")
    op.drop_table("dead_letters")
    op.drop_table("inbox")
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION outbox_notify()")
    op.drop_table("outbox")
