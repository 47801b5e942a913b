"""Where is my message: its outbox rows, its inbox row per consumer, and its dead letters."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import dlq
from .tables import inbox, outbox

# The outbox row without the envelope text (`dlq show` has a dead letter's body).
_OUTBOX_COLUMNS = [column for column in outbox.c if column.name != "envelope"]


async def trace(session: AsyncSession, message_id: UUID) -> dict[str, Any]:
    """Everything this service's database knows about one message, oldest first in each part.

    `outbox`: one row per time it was queued here (the event itself, a Kafka retry, a replay),
    with `attempts` and `published_at`. `inbox`: one row per consumer that received it, with
    `attempts` and whether it is settled (`processed_at`: handled, or dead-lettered). `dead_letters`:
    one row per time a consumer (or the relay) gave up on it.
    """
    sent = await session.execute(
        select(*_OUTBOX_COLUMNS).where(outbox.c.message_id == message_id).order_by(outbox.c.id)
    )
    received = await session.execute(
        select(inbox)
        .where(inbox.c.message_id == message_id)
        .order_by(inbox.c.first_seen_at, inbox.c.consumer)
    )
    return {
        "message_id": message_id,
        "outbox": [dict(row._mapping) for row in sent],
        "inbox": [{**row._mapping, "settled": row.processed_at is not None} for row in received],
        "dead_letters": [dlq.as_dict(row) for row in await dlq.of_message(session, message_id)],
    }
