"""The transactional outbox: events are written in the caller's transaction and published later."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Insert, Text, bindparam, exists, func, insert, select
from sqlalchemy.dialects.postgresql import insert as upsert
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
    params = {**_row(envelope, topic=event.TOPIC, key=key), "lock_name": _lock_name(event.TOPIC, key)}
    await session.execute(_ADD, params)
    return envelope


async def requeue(
    session: AsyncSession,
    *,
    message_id: UUID,
    topic: str,
    key: str,
    type: str,
    schema_version: int,
    correlation_id: str,
    envelope: str,
    addressed_to: str | None,
) -> bool:
    """Queue a stored message again, text unchanged, in the caller's transaction (a replay).

    False, and nothing written, if the message already waits in the outbox (one pending row per
    message id): an earlier replay, or a retry, that the relay has not published yet.
    """
    await _lock_key(session, topic, key)
    return await _insert_unless_pending(
        session,
        message_id=message_id,
        topic=topic,
        key=key,
        type=type,
        schema_version=schema_version,
        correlation_id=correlation_id,
        envelope=envelope,
        addressed_to=addressed_to,
    )


async def redeliver_later(
    session: AsyncSession, envelope: Envelope, *, topic: str, key: str, delay_s: float
) -> bool:
    """Queue an already-published message to be published again to `topic` after `delay_s`.

    For retries that must not hold up the rest of a stream; runs in the caller's transaction.
    False, and nothing written, if the message already has a pending row (see `in_flight`).
    """
    due = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay_s)
    return await _insert_unless_pending(session, **_row(envelope, topic=topic, key=key), available_at=due)


async def _insert_unless_pending(session: AsyncSession, **values: Any) -> bool:
    """Insert an outbox row; False, and nothing written, if its message id has a pending row."""
    statement = (
        upsert(outbox)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["message_id"], index_where=outbox.c.published_at.is_(None))
        .returning(outbox.c.id)
    )
    return (await session.execute(statement)).first() is not None


async def in_flight(session: AsyncSession, message_id: UUID) -> bool:
    """Whether a relay holds the message's pending row: it may be on the broker already, unrecorded.

    A pending row nobody holds is a copy still to come; a held one may be the very copy being
    handled now, and counts as published once the relay records it.
    """
    held = select(outbox.c.id).where(
        outbox.c.message_id == message_id,
        outbox.c.published_at.is_(None),
        outbox.c.lease_expires_at > func.clock_timestamp(),
    )
    return (await session.execute(held)).first() is not None


async def _lock_key(session: AsyncSession, topic: str, key: str) -> None:
    await session.execute(_KEY_LOCK, {"lock_name": _lock_name(topic, key)})


# Serialises the writers of one key until commit, so that its ids follow commit order.
_KEY_LOCK = select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("lock_name", type_=Text), 0)))


def _lock_name(topic: str, key: str) -> str:
    return f"{topic}\x1f{key}"


_COLUMNS = ("message_id", "topic", "key", "type", "schema_version", "correlation_id", "envelope")


def _add_statement() -> Insert:
    """The key's lock and the row in one statement: a write pays one round trip for the outbox.

    The row is held if the key has a row the broker refused that waits to be tried again
    (relay.py): the relay's claim does not walk it until that row is published or dead-lettered.
    That check reads the index of leased rows, which are few.
    """
    values = {name: bindparam(name, type_=outbox.c[name].type) for name in _COLUMNS}
    serialised = _KEY_LOCK.subquery("serialised")
    failing = outbox.alias("failing")
    held = exists().where(
        failing.c.topic == values["topic"],
        failing.c.key == values["key"],
        failing.c.lease_expires_at.is_not(None),
        failing.c.last_error.is_not(None),
        failing.c.published_at.is_(None),
    )
    row = select(*(value.label(name) for name, value in values.items()), held.label("held"))
    return insert(outbox).from_select([*_COLUMNS, "held"], row.select_from(serialised))


# Built once and given its values at execution: `add` runs in every request that publishes, and
# building and keying this statement on each call more than doubled its CPU (1.1 ms against 0.5).
_ADD = _add_statement()


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
