"""The example domain — REPLACE THIS with your own model and logic.

It shows the two halves of the pattern with a real database write each:
- `create_record`: a change and the event describing it, in one transaction (via the outbox);
- `record_effect`: what a handler does with a consumed event, in the inbox's transaction.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import outbox
from .envelope import Contract, Envelope
from .tables import example_effects, example_records


async def create_record(session: AsyncSession, event: Contract) -> tuple[UUID, Envelope]:
    """Store a record and queue its event; the caller commits both or neither."""
    record_id = uuid4()
    values = {
        "id": record_id,
        "contract": event.EVENT_TYPE,
        "key": event.ordering_key(),
        "data": event.model_dump(mode="json"),
    }
    await session.execute(_INSERT_RECORD, values)
    envelope = await outbox.add(session, event)
    return record_id, envelope


async def record_effect(session: AsyncSession, event: Contract, envelope: Envelope) -> None:
    """Apply a consumed event. Runs inside the transaction that settles the inbox row."""
    values = {
        "message_id": envelope.id,
        "contract": event.EVENT_TYPE,
        "key": event.ordering_key(),
        "data": event.model_dump(mode="json"),
    }
    await session.execute(_INSERT_EFFECT, values)


# Statements built once and given their values at execution, as outbox.py does: building and
# keying a statement on every call is a large share of a write's CPU in a busy worker or API.
_INSERT_RECORD = insert(example_records)
_INSERT_EFFECT = insert(example_effects)
