"""Rows written behind a failing row of their key are held, out of the index the claim walks.

When the broker refuses a row, the row waits for its retry and its key's later rows wait behind
it. Before this, every claim walked those waiting rows in id order and set them aside one by one:
100,000 rows behind a few failing keys made each claim step over 100,000 rows. Now a row written
while its key has such a failing row is `held`: it is not in ix_outbox_ready, the index the claim
walks, and ix_outbox_held finds it again once the failing row is published or dead-lettered. The
all-pending index ix_outbox_pending is replaced by ix_outbox_ready (held rows are always pending).

The column has a constant default (no table rewrite); the indexes are built CONCURRENTLY, outside
the migration's transaction, so that writers are not blocked while an existing outbox is scanned.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("held", sa.Boolean, nullable=False, server_default=sa.text("false")))
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_ready",
            "outbox",
            ["id"],
            postgresql_where=sa.text("published_at IS NULL AND NOT held"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_outbox_held",
            "outbox",
            ["topic", "key", "id"],
            postgresql_where=sa.text("held"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index("ix_outbox_pending", "outbox", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_pending",
            "outbox",
            ["id"],
            postgresql_where=sa.text("published_at IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index("ix_outbox_held", "outbox", postgresql_concurrently=True, if_exists=True)
        op.drop_index("ix_outbox_ready", "outbox", postgresql_concurrently=True, if_exists=True)
    op.drop_column("outbox", "held")
