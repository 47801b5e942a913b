"""The transactional outbox: events are written in the caller's transaction and published later."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from .contracts import PUBLISHED
from .envelope import Contract, Envelope
from .logs import current_correlation_id
from .tables import outbox


class NotPublished(TypeError):
    """The event's contract is not one this service publishes."""


async def add(session: AsyncSession, event: Contract) -> Envelope:
    """Write `event` to the outbox inside the session's current transaction; never commits.

    The event reaches the broker only if the caller's transaction commits. Writers of the same
    key are serialised until commit, so the relay sees each key's events in commit order.
    """
    if type(event) not in PUBLISHED:
        raise NotPublished(
            f"{type(event).__name__} is not a published contract of this service "
            f"(published: {', '.join(c.__name__ for c in PUBLISHED) or 'none'})"
        )
    envelope = Envelope.wrap(event, correlation_id=current_correlation_id())
    key = event.ordering_key()
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"{event.TOPIC}\x1f{key}", 0)))
    )
    await session.execute(insert(outbox).values(**_row(envelope, topic=event.TOPIC, key=key)))
    return envelope


async def redeliver_later(
    session: AsyncSession, envelope: Envelope, *, topic: str, key: str, delay_s: float
) -> None:
    """Queue an already-published message to be published again to `topic` after `delay_s`.

    For retries that must not hold up the rest of a stream; runs in the caller's transaction.
    """
    due = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay_s)
    await session.execute(insert(outbox).values(**_row(envelope, topic=topic, key=key), available_at=due))


def _row(envelope: Envelope, *, topic: str, key: str) -> dict[str, Any]:
    return {
        "message_id": envelope.id,
        "topic": topic,
        "key": key,
        "type": envelope.type,
        "schema_version": envelope.schema_version,
        "correlation_id": envelope.correlation_id,
        "envelope": envelope.encode().decode(),
    }
