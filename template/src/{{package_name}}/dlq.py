"""Dead letters: messages that will not be retried again, kept whole for inspection and replay."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import inbox
from .broker import OutboundMessage, Publisher
from .constants import RELAY_DEAD_LETTER_CONSUMER
from .envelope import Envelope
from .tables import dead_letters, outbox


@dataclass(frozen=True, slots=True)
class DeadLetter:
    consumer: str
    topic: str
    raw: bytes
    reason: str
    error_type: str
    error_message: str
    attempts: int
    message_id: UUID | None = None
    type: str | None = None
    schema_version: int | None = None
    key: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


class ReplayError(Exception):
    """A dead letter that cannot be replayed as it stands."""


async def add(session: AsyncSession, letter: DeadLetter) -> bool:
    """Insert the dead letter; False if this message is already dead-lettered (a redelivery)."""
    statement = (
        insert(dead_letters)
        .values(**asdict(letter))
        .on_conflict_do_nothing(
            index_elements=["consumer", "message_id"],
            index_where=dead_letters.c.replayed_at.is_(None) & dead_letters.c.message_id.is_not(None),
        )
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def pending(session: AsyncSession, *, limit: int = 50) -> list[Row[Any]]:
    """Dead letters not yet replayed, oldest first."""
    statement = (
        select(dead_letters)
        .where(dead_letters.c.replayed_at.is_(None))
        .order_by(dead_letters.c.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).all())


async def replay(
    sessionmaker: async_sessionmaker[AsyncSession], publisher: Publisher, letter_id: int
) -> UUID:
    """Send a dead letter's message again, with fresh attempts; returns its message id.

    A consumer's dead letter is published again to its topic: the row stays locked until the
    broker has the message; if publishing fails nothing changes, and if the commit fails after
    publishing, a second replay is absorbed by the inbox. The relay's dead letters never reached
    the broker: they go back into the outbox, in this transaction.
    """
    async with sessionmaker.begin() as session:
        row = (
            await session.execute(
                select(dead_letters).where(dead_letters.c.id == letter_id).with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise ReplayError(f"dead letter {letter_id} does not exist")
        if row.replayed_at is not None:
            raise ReplayError(
                f"dead letter {letter_id} was already replayed at {row.replayed_at:%Y-%m-%d %H:%M:%S}"
            )
        if row.consumer == RELAY_DEAD_LETTER_CONSUMER:
            return await _requeue(session, row)
        try:
            envelope = Envelope.decode(row.raw)
        except ValidationError as exc:
            raise ReplayError(
                f"dead letter {letter_id} is not a valid envelope ({exc.error_count()} errors); "
                "it cannot be replayed as it is"
            ) from None
        await inbox.forget(session, row.consumer, envelope.id)
        message = OutboundMessage.of(envelope, topic=row.topic, key=row.key or str(envelope.id))
        await publisher.publish(message)
        await _mark_replayed(session, letter_id)
    return envelope.id


async def _requeue(session: AsyncSession, row: Row[Any]) -> UUID:
    """A dead letter of the relay's goes back into the outbox, text unchanged, for a fresh start."""
    await session.execute(
        insert(outbox).values(
            message_id=row.message_id,
            topic=row.topic,
            key=row.key,
            type=row.type,
            schema_version=row.schema_version,
            correlation_id=row.source.get("correlation_id", ""),
            envelope=row.raw.decode(),
        )
    )
    await _mark_replayed(session, row.id)
    return UUID(str(row.message_id))


async def _mark_replayed(session: AsyncSession, letter_id: int) -> None:
    await session.execute(
        update(dead_letters).where(dead_letters.c.id == letter_id).values(replayed_at=func.now())
    )
