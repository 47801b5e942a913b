"""The inbox: per-consumer record of each message's delivery attempts and whether it is settled.

`record_attempt` commits on its own, before the handler runs, so an attempt that kills the
worker is still counted. `settle` runs inside the handler's transaction: the effect and the
inbox row commit together or not at all, which is what makes redelivery harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import case, delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import inbox


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    settled: bool
    last_error: str | None


async def record_attempt(session: AsyncSession, consumer: str, message_id: UUID) -> Attempt:
    statement = (
        insert(inbox)
        .values(consumer=consumer, message_id=message_id, attempts=1)
        .on_conflict_do_update(
            constraint="pk_inbox",
            set_={
                "attempts": case(
                    (inbox.c.processed_at.is_(None), inbox.c.attempts + 1), else_=inbox.c.attempts
                ),
                "last_attempt_at": func.now(),
            },
        )
        .returning(inbox.c.attempts, inbox.c.processed_at, inbox.c.last_error)
    )
    row = (await session.execute(statement)).one()
    return Attempt(number=row.attempts, settled=row.processed_at is not None, last_error=row.last_error)


async def settle(session: AsyncSession, consumer: str, message_id: UUID) -> bool:
    """Mark the message settled; False if it already was (by a duplicate delivery).

    The row lock this takes makes a concurrent delivery of the same message wait for our
    commit and then find the message settled; if we roll back, it may settle it instead.
    """
    statement = (
        insert(inbox)
        .values(consumer=consumer, message_id=message_id, processed_at=func.now())
        .on_conflict_do_update(
            constraint="pk_inbox",
            set_={"processed_at": func.now()},
            where=inbox.c.processed_at.is_(None),
        )
        .returning(inbox.c.message_id)
    )
    return (await session.execute(statement)).first() is not None


async def record_failure(session: AsyncSession, consumer: str, message_id: UUID, error: str) -> None:
    await session.execute(
        update(inbox)
        .where(inbox.c.consumer == consumer, inbox.c.message_id == message_id)
        .values(last_error=error)
    )


async def forget(session: AsyncSession, consumer: str, message_id: UUID) -> None:
    """Drop the message's record so that a replay starts with fresh attempts."""
    await session.execute(delete(inbox).where(inbox.c.consumer == consumer, inbox.c.message_id == message_id))


async def give_back(session: AsyncSession, consumer: str, message_id: UUID) -> None:
    """Uncount the latest attempt: it was cancelled (shutdown, rebalance), not failed."""
    await session.execute(
        update(inbox)
        .where(
            inbox.c.consumer == consumer,
            inbox.c.message_id == message_id,
            inbox.c.processed_at.is_(None),
            inbox.c.attempts > 0,
        )
        .values(attempts=inbox.c.attempts - 1)
    )
