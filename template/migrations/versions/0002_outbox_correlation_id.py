"""The outbox keeps each event's correlation id beside its envelope.

The relay publishes the stored envelope text without decoding it; the correlation id it logs
and sends as message metadata comes from this column instead.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox", sa.Column("correlation_id", sa.Text, nullable=False, server_default=sa.text("''"))
    )


def downgrade() -> None:
    op.drop_column("outbox", "correlation_id")
