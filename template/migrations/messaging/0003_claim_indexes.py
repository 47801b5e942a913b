"""The claim's per-key checks read two small partial indexes instead of every pending row of a key.

The relay skips a row when its key has a leased row, or an older row not due yet. Both kinds of
row are few (leases are at most a batch per relay; delayed redeliveries are rare), so indexing
only them keeps a claim's cost flat however many rows wait behind a key. The index over all
pending rows of a key is read by nothing else, and is dropped: one index less for every write.

Neither predicate mentions published_at: a published row holds no lease, and was due when it was
published. So the claim's checks need not say `published_at IS NULL` either, and the planner
cannot answer them through ix_outbox_pending, which it did (a scan of every pending row per
candidate) whenever its statistics said that nearly nothing was pending.

Built CONCURRENTLY, outside the migration's transaction, so that writers are not blocked while
an existing outbox is scanned.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEASED = "lease_expires_at IS NOT NULL"
# A row not due yet has available_at in the future, so later than its created_at.
DEFERRED = "available_at > created_at"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_leased",
            "outbox",
            ["topic", "key"],
            postgresql_where=sa.text(LEASED),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_outbox_deferred",
            "outbox",
            ["topic", "key", "id"],
            postgresql_where=sa.text(DEFERRED),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index("ix_outbox_pending_key", "outbox", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_outbox_pending_key",
            "outbox",
            ["topic", "key", "id"],
            postgresql_where=sa.text("published_at IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index("ix_outbox_deferred", "outbox", postgresql_concurrently=True, if_exists=True)
        op.drop_index("ix_outbox_leased", "outbox", postgresql_concurrently=True, if_exists=True)
