"""Retention: the sweep's indexes on dead letters, and autovacuum sized for queue tables.

The retention sweep (retention.py) deletes replayed and discarded dead letters oldest first; these
partial indexes hold only those. Published outbox rows and settled inbox rows already have theirs.

The outbox and the inbox are queues: every row is inserted, updated once or twice and, later,
deleted. PostgreSQL's default autovacuum waits for a fifth of a table to be dead, which on a table
of millions is hundreds of thousands of dead rows that every claim steps over, and statistics
that still say nothing is pending. These vacuum and analyze every 5,000 changed rows, whatever
the table's size. Settings, not data: cheap to apply and to take back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_TABLES = ("outbox", "inbox")
# The sweep's indexes: a dead letter dealt with, by when.
DEALT_WITH = ("replayed_at", "discarded_at")
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "5000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "5000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "5000",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for column in DEALT_WITH:
            op.create_index(
                f"ix_dead_letters_{column}",
                "dead_letters",
                [column],
                postgresql_where=sa.text(f"{column} IS NOT NULL"),
                postgresql_concurrently=True,
                if_not_exists=True,
            )
    settings = ", ".join(f"{name} = {value}" for name, value in AUTOVACUUM.items())
    for table in QUEUE_TABLES:
        op.execute(f"ALTER TABLE {table} SET ({settings})")


def downgrade() -> None:
    for table in QUEUE_TABLES:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(AUTOVACUUM)})")
    with op.get_context().autocommit_block():
        for column in DEALT_WITH:
            op.drop_index(
                f"ix_dead_letters_{column}", "dead_letters", postgresql_concurrently=True, if_exists=True
            )
