"""The inbox: per-consumer record of each message's delivery attempts and whether it is settled.

`record_attempt` commits on its own, before the handler runs, so an attempt that kills the
worker is still counted. `settle` runs inside the handler's transaction: the effect and the
inbox row commit together or not at all, which is what makes redelivery harmless.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Text, Uuid, bindparam, case, delete, func, literal, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .tables import inbox


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    settled: bool
    last_error: str | None
    # When the attempt before this one began, and how long ago (None for the first attempt).
    previous_at: datetime | None = None
    since_previous_s: float | None = None


# Built once: building and keying an upsert per message cost more than the database's work.
# One statement counts the attempts of several messages; in id order, so that two workers with
# some of the same messages lock their rows in the same order and never deadlock.
_messages = (
    func.unnest(bindparam("message_ids", type_=ARRAY(Uuid)))
    .table_valued("message_id")
    .render_derived(name="m")
)
_before = inbox.alias("before")
# Read in the statement's snapshot, so before this attempt overwrites it. The returned row is
# named by hand: SQLAlchemy does not correlate a subquery in RETURNING with the inserted table.
_previous_at = (
    select(_before.c.last_attempt_at)
    .where(
        _before.c.consumer == literal_column("inbox.consumer"),
        _before.c.message_id == literal_column("inbox.message_id"),
    )
    .scalar_subquery()
)
_RECORD_ATTEMPTS = (
    insert(inbox)
    .from_select(
        ["consumer", "message_id", "attempts"],
        select(bindparam("consumer", type_=Text), _messages.c.message_id, literal(1)).order_by(
            _messages.c.message_id
        ),
    )
    .on_conflict_do_update(
        constraint="pk_inbox",
        set_={
            "attempts": case((inbox.c.processed_at.is_(None), inbox.c.attempts + 1), else_=inbox.c.attempts),
            "last_attempt_at": func.now(),
        },
    )
    .returning(
        inbox.c.message_id,
        inbox.c.attempts,
        inbox.c.processed_at,
        inbox.c.last_error,
        _previous_at.label("previous_at"),
        func.extract("epoch", func.clock_timestamp() - _previous_at).label("since_previous_s"),
    )
)
# Settles messages, several at once in id order (locking their rows as `_RECORD_ATTEMPTS` does).
_SETTLE = (
    insert(inbox)
    .from_select(
        ["consumer", "message_id", "processed_at"],
        select(bindparam("consumer", type_=Text), _messages.c.message_id, func.now()).order_by(
            _messages.c.message_id
        ),
    )
    .on_conflict_do_update(
        constraint="pk_inbox",
        set_={"processed_at": func.now()},
        where=inbox.c.processed_at.is_(None),
    )
    .returning(inbox.c.message_id)
)


async def record_attempts(
    session: AsyncSession | AsyncConnection, consumer: str, message_ids: Collection[UUID]
) -> dict[UUID, Attempt]:
    """Count an attempt of each message (distinct ids): what each attempt is, by message."""
    params = {"consumer": consumer, "message_ids": list(message_ids)}
    rows = (await session.execute(_RECORD_ATTEMPTS, params)).all()
    return {
        row.message_id: Attempt(
            number=row.attempts,
            settled=row.processed_at is not None,
            last_error=row.last_error,
            previous_at=row.previous_at,
            since_previous_s=None if row.since_previous_s is None else float(row.since_previous_s),
        )
        for row in rows
    }


async def record_attempt(session: AsyncSession | AsyncConnection, consumer: str, message_id: UUID) -> Attempt:
    return (await record_attempts(session, consumer, [message_id]))[message_id]


async def settle(session: AsyncSession, consumer: str, message_id: UUID) -> bool:
    """Mark the message settled; False if it already was (by a duplicate delivery).

    The row lock this takes makes a concurrent delivery of the same message wait for our
    commit and then find the message settled; if we roll back, it may settle it instead.
    """
    return message_id in await settle_all(session, consumer, [message_id])


async def settle_all(session: AsyncSession, consumer: str, message_ids: Collection[UUID]) -> set[UUID]:
    """Mark the messages settled (distinct ids); the ids of those that were not settled yet."""
    params = {"consumer": consumer, "message_ids": list(message_ids)}
    return set((await session.execute(_SETTLE, params)).scalars())


async def record_failure(session: AsyncSession, consumer: str, message_id: UUID, error: str) -> None:
    await session.execute(
        update(inbox)
        .where(inbox.c.consumer == consumer, inbox.c.message_id == message_id)
        .values(last_error=error)
    )


async def forget(session: AsyncSession, consumer: str, message_id: UUID) -> None:
    """Drop the message's record so that a replay starts with fresh attempts."""
    await session.execute(delete(inbox).where(inbox.c.consumer == consumer, inbox.c.message_id == message_id))


async def give_back(
    session: AsyncSession, consumer: str, message_ids: Collection[UUID], *, began_at: datetime | None = None
) -> None:
    """Uncount each message's latest attempt: it was cancelled (shutdown, rebalance), not failed.

    With `began_at`, the latest attempt is again the one that began then: this one never ran.
    """
    values: dict[str, Any] = {"attempts": inbox.c.attempts - 1}
    if began_at is not None:
        values["last_attempt_at"] = began_at
    await session.execute(
        update(inbox)
        .where(
            inbox.c.consumer == consumer,
            inbox.c.message_id.in_(message_ids),
            inbox.c.processed_at.is_(None),
            inbox.c.attempts > 0,
        )
        .values(**values)
    )
