"""Dead letters record who replayed or discarded them and how often; the outbox can address a replay.

`replayed_by`, `replay_count`, `discarded_at` and `discarded_by` say what an operator did to a dead
letter. `outbox.addressed_to` names the one consumer a replayed message is meant for (NULL for an
ordinary event, which every consumer of its topic handles): the relay carries it into the message,
and any other consumer acknowledges the message without running its handler.

Only nullable columns and a column with a constant default: no table is rewritten or scanned, so
this is cheap on a large table, and it is reversible.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("replayed_by", sa.Text))
    op.add_column(
        "dead_letters",
        sa.Column("replay_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.add_column("dead_letters", sa.Column("discarded_at", sa.DateTime(timezone=True)))
    op.add_column("dead_letters", sa.Column("discarded_by", sa.Text))
    op.add_column("outbox", sa.Column("addressed_to", sa.Text))


def downgrade() -> None:
    op.drop_column("outbox", "addressed_to")
    op.drop_column("dead_letters", "discarded_by")
    op.drop_column("dead_letters", "discarded_at")
    op.drop_column("dead_letters", "replay_count")
    op.drop_column("dead_letters", "replayed_by")
