"""The outbox keeps each event's correlation id beside its envelope.

The relay publishes the stored envelope text without decoding it; the correlation id it logs
and sends as message metadata comes from this column instead.

The first revision of the messaging history (alembic.ini's `messaging` section): it follows
0001 of the service's history, which created the tables (docs/explanation/decisions.md, 11).

Revision ID: 0002
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox", sa.Column("correlation_id", sa.Text, nullable=False, server_default=sa.text("''"))
    )


def downgrade() -> None:
    op.drop_column("outbox", "correlation_id")
