"""Dead letters: messages that will not be retried again, kept whole for inspection and replay.

Every operation here runs in the caller's transaction and never commits. A replay never publishes:
it writes the stored message back into the outbox (same id, topic, key and text), addressed to the
consumer that dead-lettered it, so the relay delivers it like any event and no other consumer of
the topic handles it again.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Row, and_, func, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from . import inbox, outbox
from .constants import RELAY_DEAD_LETTER_CONSUMER
from .envelope import Envelope
from .tables import dead_letters

State = Literal["pending", "replayed", "discarded", "all"]

# The most dead letters one replay or discard by filter acts on; run it again for more.
MAX_BATCH = 1000


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


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters: every given field must match; `since`/`until` bound `dead_lettered_at`."""

    consumer: str | None = None
    type: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: State = "pending"

    def is_empty(self) -> bool:
        return all(value is None for value in (self.consumer, self.type, self.reason, self.since, self.until))


@dataclass(frozen=True, slots=True)
class Replayed:
    id: int
    message_id: UUID
    replay_count: int


@dataclass(frozen=True, slots=True)
class Refused:
    id: int
    error: str


class DeadLetterError(Exception):
    """An operation on a dead letter that cannot be done."""


class UnknownDeadLetter(DeadLetterError):
    """No dead letter has that id."""


class AlreadySettled(DeadLetterError):
    """The dead letter was replayed or discarded already."""


class CannotReplay(DeadLetterError):
    """The dead letter's message cannot be queued as it stands."""


async def add(session: AsyncSession, letter: DeadLetter) -> bool:
    """Insert the dead letter; False if this message is already dead-lettered (a redelivery).

    A message dead-lettered again after a replay gets a new row, which carries the replay count
    of this consumer's earlier rows of it: the count says how often the message was replayed.
    """
    replays = (
        select(func.coalesce(func.max(dead_letters.c.replay_count), 0))
        .where(dead_letters.c.consumer == letter.consumer, dead_letters.c.message_id == letter.message_id)
        .scalar_subquery()
    )
    statement = (
        insert(dead_letters)
        .values(**asdict(letter), replay_count=replays)
        .on_conflict_do_nothing(
            index_elements=["consumer", "message_id"],
            index_where=dead_letters.c.replayed_at.is_(None) & dead_letters.c.message_id.is_not(None),
        )
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def find(session: AsyncSession, where: Filter, *, limit: int = 50, after_id: int = 0) -> list[Row[Any]]:
    """Dead letters matching `where`, oldest first, from the first id past `after_id`."""
    statement = (
        select(dead_letters)
        .where(_matching(where), dead_letters.c.id > after_id)
        .order_by(dead_letters.c.id)
        .limit(limit)
    )
    return list((await session.execute(statement)).all())


async def pending(session: AsyncSession, *, limit: int = 50) -> list[Row[Any]]:
    """Dead letters neither replayed nor discarded, oldest first."""
    return await find(session, Filter(), limit=limit)


async def get(session: AsyncSession, letter_id: int) -> Row[Any]:
    row = (await session.execute(select(dead_letters).where(dead_letters.c.id == letter_id))).one_or_none()
    if row is None:
        raise UnknownDeadLetter(f"dead letter {letter_id} does not exist")
    return row


async def replay(session: AsyncSession, letter_id: int, *, by: str) -> Replayed:
    """Queue a dead letter's message in the outbox again, with fresh attempts for its consumer.

    In the caller's transaction: the message goes back into the outbox unchanged (same message
    id, topic, key and envelope text), addressed to the consumer that dead-lettered it; that
    consumer's inbox row is dropped, so the message starts again at attempt 1; the dead letter
    records who replayed it, when, and how often. The relay's own dead letters never reached any
    consumer: they go back unaddressed, as they were.
    """
    row = await _locked(session, letter_id)
    if row.consumer == RELAY_DEAD_LETTER_CONSUMER:
        text = _text(row)
        addressed_to = row.source.get("addressed_to")
        correlation_id = str(row.source.get("correlation_id", ""))
    else:
        envelope = _envelope(row)
        text, addressed_to, correlation_id = _text(row), row.consumer, envelope.correlation_id
    queued = await outbox.requeue(
        session,
        message_id=row.message_id,
        topic=row.topic,
        key=row.key or str(row.message_id),  # no key when the contract was unknown
        type=row.type,
        schema_version=row.schema_version,
        correlation_id=correlation_id,
        envelope=text,
        addressed_to=addressed_to,
    )
    if not queued:
        raise CannotReplay(
            f"dead letter {letter_id}: message {row.message_id} already waits in the outbox "
            "(an earlier replay not yet published); replay it once that has gone out"
        )
    if row.consumer != RELAY_DEAD_LETTER_CONSUMER:
        await inbox.forget(session, row.consumer, row.message_id)
    count = (
        await session.execute(
            update(dead_letters)
            .where(dead_letters.c.id == letter_id)
            .values(replayed_at=func.now(), replayed_by=by, replay_count=dead_letters.c.replay_count + 1)
            .returning(dead_letters.c.replay_count)
        )
    ).scalar_one()
    return Replayed(id=letter_id, message_id=row.message_id, replay_count=count)


async def discard(session: AsyncSession, letter_id: int, *, by: str) -> None:
    """Mark a dead letter as dealt with, without replaying it; its message stays unhandled."""
    await _locked(session, letter_id)
    await session.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter_id)
        .values(discarded_at=func.now(), discarded_by=by)
    )


async def replay_matching(
    session: AsyncSession, where: Filter, *, by: str, limit: int = MAX_BATCH
) -> tuple[list[Replayed], list[Refused]]:
    """Replay up to `limit` pending dead letters matching `where`, oldest first.

    Those that cannot be replayed (not an envelope, already waiting in the outbox) are refused
    and left pending; nothing is written for them.
    """
    replayed: list[Replayed] = []
    refused: list[Refused] = []
    for letter_id in await _pending_ids(session, where, limit=limit):
        try:
            replayed.append(await replay(session, letter_id, by=by))
        except CannotReplay as exc:
            refused.append(Refused(id=letter_id, error=str(exc)))
    return replayed, refused


async def discard_matching(
    session: AsyncSession, where: Filter, *, by: str, limit: int = MAX_BATCH
) -> list[int]:
    """Discard up to `limit` pending dead letters matching `where`, oldest first; their ids."""
    ids = await _pending_ids(session, where, limit=limit)
    if ids:
        await session.execute(
            update(dead_letters)
            .where(dead_letters.c.id.in_(ids))
            .values(discarded_at=func.now(), discarded_by=by)
        )
    return ids


async def of_message(session: AsyncSession, message_id: UUID) -> list[Row[Any]]:
    """Every dead letter of a message, by any consumer, oldest first."""
    statement = (
        select(dead_letters).where(dead_letters.c.message_id == message_id).order_by(dead_letters.c.id)
    )
    return list((await session.execute(statement)).all())


def as_dict(row: Row[Any]) -> dict[str, Any]:
    """A dead letter for people and JSON: `raw` as text (U+FFFD for bytes that are not UTF-8),
    and `raw_base64`, exact, when it is not UTF-8."""
    letter = dict(row._mapping)
    raw: bytes = letter.pop("raw")
    try:
        letter["raw"], letter["raw_base64"] = raw.decode(), None
    except UnicodeDecodeError:
        letter["raw"] = raw.decode(errors="replace")
        letter["raw_base64"] = base64.b64encode(raw).decode()
    letter["state"] = _state(row)
    return letter


def _state(row: Row[Any]) -> State:
    if row.discarded_at is not None:
        return "discarded"
    return "pending" if row.replayed_at is None else "replayed"


def _matching(where: Filter) -> ColumnElement[bool]:
    columns = dead_letters.c
    conditions: list[ColumnElement[bool]] = []
    if where.state == "pending":
        conditions += [columns.replayed_at.is_(None), columns.discarded_at.is_(None)]
    elif where.state == "replayed":
        conditions.append(columns.replayed_at.is_not(None))
    elif where.state == "discarded":
        conditions.append(columns.discarded_at.is_not(None))
    for column, value in (
        (columns.consumer, where.consumer),
        (columns.type, where.type),
        (columns.reason, where.reason),
    ):
        if value is not None:
            conditions.append(column == value)
    if where.since is not None:
        conditions.append(columns.dead_lettered_at >= where.since)
    if where.until is not None:
        conditions.append(columns.dead_lettered_at < where.until)
    return and_(true(), *conditions)


async def _pending_ids(session: AsyncSession, where: Filter, *, limit: int) -> list[int]:
    pending_only = dataclasses.replace(where, state="pending")
    statement = (
        select(dead_letters.c.id)
        .where(_matching(pending_only))
        .order_by(dead_letters.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # another operator's batch keeps its own
    )
    return list((await session.execute(statement)).scalars())


async def _locked(session: AsyncSession, letter_id: int) -> Row[Any]:
    """The dead letter, locked until commit, if it is still pending."""
    row = (
        await session.execute(select(dead_letters).where(dead_letters.c.id == letter_id).with_for_update())
    ).one_or_none()
    if row is None:
        raise UnknownDeadLetter(f"dead letter {letter_id} does not exist")
    if row.replayed_at is not None:
        raise AlreadySettled(
            f"dead letter {letter_id} was already replayed at {row.replayed_at:%Y-%m-%d %H:%M:%S}"
            f" by {row.replayed_by or 'unknown'}"
        )
    if row.discarded_at is not None:
        raise AlreadySettled(
            f"dead letter {letter_id} was discarded at {row.discarded_at:%Y-%m-%d %H:%M:%S}"
            f" by {row.discarded_by or 'unknown'}"
        )
    return row


def _envelope(row: Row[Any]) -> Envelope:
    try:
        return Envelope.decode(row.raw)
    except ValidationError as exc:
        raise CannotReplay(
            f"dead letter {row.id} is not a valid envelope ({exc.error_count()} errors); "
            "it cannot be replayed as it is"
        ) from None


def _text(row: Row[Any]) -> str:
    # A valid envelope is JSON, so UTF-8; the relay's rows were text in the outbox to begin with.
    raw: bytes = row.raw
    return raw.decode()
