"""Broker-independent message processing: decode, dedupe, handle, retry or dead-letter.

A broker adapter hands each delivery to `Consumer.process` and acknowledges it only when that
returns None; a `RetryLater` asks for redelivery after a delay. Anything else (an exception, a
cancelled task) means "not done": the adapter must leave the message to be delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from . import dlq, inbox, metrics
from .constants import (
    REASON_ATTEMPTS_EXHAUSTED,
    REASON_INVALID_PAYLOAD,
    REASON_MALFORMED,
    REASON_PERMANENT_ERROR,
    REASON_UNKNOWN_CONTRACT,
)
from .contracts import CONSUMED
from .envelope import Contract, Envelope
from .errors import ConfigurationError, RejectedMessage, describe, is_retriable
from .retry import RetryPolicy
from .settings import Settings

log = structlog.get_logger(__name__)

# Handing back a cancelled attempt must not hold up a shutdown when the database is slow.
_GIVE_BACK_TIMEOUT_S = 2.0
# How often a delivery past the attempts looks again while another may still be handling it
# (within Kafka's default inline retry, so the worker waits rather than queueing a retry).
_IN_PROGRESS_POLL_S = 1.0
# A batch's handler running longer than this is slow: the messages whose handlers have not begun
# run on their own at once, side by side, so that it holds up no other. Per handler, not per
# batch: a busy worker's batch of quick handlers takes longer than this, and must not break up.
_SLOW_HANDLER_S = 0.01
# Batches running at once, each on a connection of its own: while one waits on the database,
# the next counts its attempts or runs its handlers.
_BATCHES_AT_ONCE = 2

# The event parameter is typed per handler; the registry can only say "some contract".
Handler = Callable[[AsyncSession, Any, Envelope], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    raw: bytes | str
    topic: str  # the contract topic it arrived on, before the environment's prefix
    source: dict[str, Any] = field(default_factory=dict)  # broker coordinates, kept with dead letters
    addressed_to: str | None = None  # a replay's consumer: no other consumer handles it


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float


class Consumer:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        handlers: Mapping[type[Contract], Handler],
        settings: Settings,
    ) -> None:
        _check_handlers(handlers)
        self.name = settings.service_name
        self._sessionmaker = sessionmaker
        self._engine = _engine_of(sessionmaker)
        self._handlers = dict(handlers)
        self._policy = RetryPolicy.from_settings(settings)
        self._handler_timeout_s = settings.handler_timeout_s
        self._contracts = {(c.EVENT_TYPE, c.SCHEMA_VERSION): c for c in handlers}
        self._waiting: list[_Waiting] = []  # for the next batch to take (`_attempt`)
        self._running: set[_Batch] = set()
        self._alone = asyncio.Semaphore(settings.db_pool_size)  # see `_connection_of_its_own`

    async def process(self, delivery: Delivery) -> RetryLater | None:
        if delivery.addressed_to is not None and delivery.addressed_to != self.name:
            # A replay of another consumer's dead letter (on Kafka every group of the topic gets
            # it): this consumer handled the message already, or chose not to. Not ours to touch.
            metrics.MESSAGES_NOT_ADDRESSED.inc()
            log.info("message_not_addressed", addressed_to=delivery.addressed_to, **delivery.source)
            return None
        try:
            envelope, event = self._decode(delivery.raw)
        except RejectedMessage as exc:
            await self._dead_letter(delivery, exc, reason=exc.reason, attempts=1, envelope=_maybe(delivery))
            return None
        with _context(envelope):
            return await self._process_event(delivery, envelope, event)

    def _decode(self, raw: bytes | str) -> tuple[Envelope, Contract]:
        try:
            envelope = Envelope.decode(raw)
        except ValidationError as exc:
            raise RejectedMessage(REASON_MALFORMED, _summary(exc)) from None
        contract = self._contracts.get((envelope.type, envelope.schema_version))
        if contract is None:
            known = ", ".join(f"{t} v{v}" for t, v in sorted(self._contracts)) or "none"
            raise RejectedMessage(
                REASON_UNKNOWN_CONTRACT,
                f"{envelope.type} v{envelope.schema_version} is not consumed here (consumed: {known})",
            )
        try:
            return envelope, contract.model_validate(envelope.payload)
        except ValidationError as exc:
            raise RejectedMessage(REASON_INVALID_PAYLOAD, _summary(exc)) from None

    async def _process_event(
        self, delivery: Delivery, envelope: Envelope, event: Contract
    ) -> RetryLater | None:
        attempt, outcome = await self._attempt(envelope, event)
        if attempt.settled:
            self._duplicate(envelope)
            return None
        if attempt.number > self._policy.max_attempts:
            if attempt.since_previous_s is not None and attempt.since_previous_s < self._handler_timeout_s:
                return await self._wait_for_previous(envelope, attempt)
            # The previous attempt never reported back: the worker died or was stopped mid-handler.
            error = RuntimeError(attempt.last_error or "the worker stopped during the previous attempt")
            await self._dead_letter(
                delivery,
                error,
                reason=REASON_ATTEMPTS_EXHAUSTED,
                attempts=attempt.number - 1,
                envelope=envelope,
            )
            return None
        if outcome is None:  # not tried with others: on its own, in this task
            async with self._connection_of_its_own(envelope) as conn:
                outcome = await self._try(conn, envelope, event)
        if isinstance(outcome, Exception):
            return await self._failed(delivery, envelope, attempt.number, outcome)
        if not outcome:
            self._duplicate(envelope)
            return None
        metrics.MESSAGES_CONSUMED.labels(envelope.type, "processed").inc()
        log.info("message_processed", attempt=attempt.number)
        return None

    async def _attempt(
        self, envelope: Envelope, event: Contract
    ) -> tuple[inbox.Attempt, bool | Exception | None]:
        """Count the attempt, together with those of the messages arriving at the same moment.

        Up to `_BATCHES_AT_ONCE` batches at a time: whoever comes while fewer run leads the
        next. It counts the attempts of all in one statement and, for two or more, runs their
        handlers in one transaction (see `_Batch`). Those who come while the batches are all
        running wait for a batch after, so batches grow with the load. A message that comes alone
        is a batch of one, with the statements it would have on its own.
        """
        while True:
            waiting = _Waiting(envelope, event, asyncio.get_running_loop().create_future())
            self._waiting.append(waiting)
            if len(self._running) < _BATCHES_AT_ONCE:
                await self._lead(waiting)
            try:
                return await waiting.result
            except _CountAgain:
                continue

    async def _lead(self, own: _Waiting) -> None:
        batch = _Batch(self)
        self._running.add(batch)
        try:
            await asyncio.sleep(0)  # the deliveries ready to run now join this batch
            self._waiting = batch.take(self._take_waiting(), busy=self._busy(but=batch))
            if batch.members:
                await batch.run()
        except BaseException:
            own.result.cancel()  # the leader's message stops here, as a cancelled delivery would
            raise
        finally:
            self._running.discard(batch)
            self._wake_waiting()
            await batch.finish()

    def _wake_waiting(self) -> None:
        """The deliveries waiting go again, one of them to lead the next batch; except those
        whose message is in a batch still running: that batch wakes them when it ends, and each
        finds out then whether it is a duplicate."""
        busy = self._busy()
        left: list[_Waiting] = []
        for waiting in self._take_waiting():
            if waiting.envelope.id in busy:
                left.append(waiting)
            elif not waiting.result.done():
                waiting.result.set_exception(_CountAgain())
        self._waiting = left

    def _busy(self, *, but: _Batch | None = None) -> set[UUID]:
        """The messages in the batches running, but `but`."""
        return {m.envelope.id for batch in self._running if batch is not but for m in batch.members}

    def _take_waiting(self) -> list[_Waiting]:
        waiting, self._waiting = self._waiting, []
        return waiting

    @asynccontextmanager
    async def _connection_of_its_own(self, envelope: Envelope) -> AsyncIterator[AsyncConnection]:
        """A handler on its own holds a connection throughout. More of them than the pool lends
        would wait for one until the pool's timeout, which fails the attempt: they wait here, at
        most DB_POOL_SIZE at once. Cancelled meanwhile (a shutdown, a broker's job timeout), the
        attempt is given back, as in the handler: it never began."""
        try:
            await self._alone.acquire()
        except asyncio.CancelledError:
            await self._give_back([envelope.id])
            raise
        try:
            async with self._engine.connect() as conn:
                yield conn
        finally:
            self._alone.release()

    async def _try(self, conn: AsyncConnection, envelope: Envelope, event: Contract) -> bool | Exception:
        """Run the handler; its error is returned, not raised."""
        try:
            return await self._handle(conn, envelope, event)
        except asyncio.CancelledError:
            # A shutdown or a rebalance stopped the handler: not the message's fault, so the
            # attempt must not count (a crash, which cannot get here, still counts).
            await self._give_back([envelope.id])
            raise
        except Exception as exc:  # noqa: BLE001 - the error's `retriable` decides, in _failed
            return exc

    async def _handle(self, conn: AsyncConnection, envelope: Envelope, event: Contract) -> bool:
        """Run the handler and settle the inbox in one transaction; False for a duplicate."""
        async with asyncio.timeout(self._handler_timeout_s):
            async with self._sessionmaker(bind=conn) as session, session.begin():
                return await self._settle_and_handle(session, envelope, event)

    async def _settle_and_handle(self, session: AsyncSession, envelope: Envelope, event: Contract) -> bool:
        """Settle the inbox row, then run the handler, in the caller's transaction; False for a
        duplicate (settled already: the handler does not run)."""
        if not await inbox.settle(session, self.name, envelope.id):
            return False
        await self._run_handler(session, envelope, event)
        return True

    async def _run_handler(self, session: AsyncSession, envelope: Envelope, event: Contract) -> None:
        with metrics.HANDLER_DURATION.labels(envelope.type).time():
            await self._handlers[type(event)](session, event, envelope)

    async def _record_attempts(
        self, conn: AsyncConnection, message_ids: list[UUID]
    ) -> dict[UUID, inbox.Attempt]:
        """Count the attempts in a statement that commits on its own (no BEGIN and COMMIT round
        trips), before any handler runs: an attempt that kills the worker still counts."""
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        attempts = await inbox.record_attempts(conn, self.name, message_ids)
        await conn.commit()  # ends SQLAlchemy's own autobegun transaction; the rows are in already
        await conn.execution_options(isolation_level=conn.default_isolation_level)
        return attempts

    async def _wait_for_previous(self, envelope: Envelope, attempt: inbox.Attempt) -> RetryLater:
        """Past the attempts, but the previous attempt may still be running: a duplicate delivery
        handled side by side with it, not a worker that died. This one does not count, and looks
        again shortly: a duplicate once that attempt settles, a dead letter only once that attempt
        must have ended (HANDLER_TIMEOUT_S after it began)."""
        await self._give_back([envelope.id], began_at=attempt.previous_at)
        running_at_most_s = self._handler_timeout_s - (attempt.since_previous_s or 0.0)
        delay_s = min(running_at_most_s, _IN_PROGRESS_POLL_S)
        log.info("message_attempt_in_progress", attempt=attempt.number, retry_in_s=round(delay_s, 3))
        return RetryLater(delay_s)

    async def _give_back(self, message_ids: Collection[UUID], *, began_at: datetime | None = None) -> None:
        try:
            async with asyncio.timeout(_GIVE_BACK_TIMEOUT_S):
                async with self._sessionmaker.begin() as session:
                    await inbox.give_back(session, self.name, message_ids, began_at=began_at)
        except Exception as exc:  # noqa: BLE001 - the attempt then counts: safe, only stricter
            log.warning("inbox_give_back_failed", error=describe(exc), message_ids=_ids(message_ids))
            return
        log.info("message_attempt_given_back", message_ids=_ids(message_ids))

    async def _failed(
        self, delivery: Delivery, envelope: Envelope, attempt: int, exc: Exception
    ) -> RetryLater | None:
        if not is_retriable(exc):
            await self._dead_letter(
                delivery, exc, reason=REASON_PERMANENT_ERROR, attempts=attempt, envelope=envelope
            )
            return None
        if attempt >= self._policy.max_attempts:
            await self._dead_letter(
                delivery, exc, reason=REASON_ATTEMPTS_EXHAUSTED, attempts=attempt, envelope=envelope
            )
            return None
        async with self._sessionmaker.begin() as session:
            await inbox.record_failure(session, self.name, envelope.id, describe(exc))
        delay_s = self._policy.delay_s(attempt)
        metrics.MESSAGES_RETRIED.labels(envelope.type).inc()
        log.warning(
            "message_retry_scheduled", attempt=attempt, delay_s=round(delay_s, 3), error=describe(exc)
        )
        return RetryLater(delay_s)

    def _duplicate(self, envelope: Envelope) -> None:
        metrics.MESSAGES_CONSUMED.labels(envelope.type, "duplicate").inc()
        log.info("inbox_duplicate")

    async def _dead_letter(
        self,
        delivery: Delivery,
        exc: BaseException,
        *,
        reason: str,
        attempts: int,
        envelope: Envelope | None,
    ) -> None:
        raw = delivery.raw if isinstance(delivery.raw, bytes) else delivery.raw.encode()
        contract = self._contracts.get((envelope.type, envelope.schema_version)) if envelope else None
        letter = dlq.DeadLetter(
            consumer=self.name,
            topic=delivery.topic,
            raw=raw,
            reason=reason,
            error_type=type(exc).__name__,
            error_message=describe(exc),
            attempts=attempts,
            message_id=envelope.id if envelope else None,
            type=envelope.type if envelope else None,
            schema_version=envelope.schema_version if envelope else None,
            key=_key(contract, envelope),
            source=delivery.source,
        )
        async with self._sessionmaker.begin() as session:
            # Settling first waits out a concurrent delivery of the same message: if that one
            # had its effect, this is a duplicate, not a dead letter. Once settled, redeliveries
            # of a dead-lettered message are duplicates until an operator replays it.
            if envelope is not None and not await inbox.settle(session, self.name, envelope.id):
                self._duplicate(envelope)
                return
            added = await dlq.add(session, letter)
        if added:
            metrics.MESSAGES_DEAD_LETTERED.labels(reason).inc()
        log.error(
            "message_dead_lettered",
            reason=reason,
            attempts=attempts,
            error=letter.error_message,
            already_dead_lettered=not added,
        )


@dataclass(eq=False, slots=True)
class _Waiting:
    """A message waiting for its attempt to be counted, and perhaps handled, with others."""

    envelope: Envelope
    event: Contract
    result: asyncio.Future[tuple[inbox.Attempt, bool | Exception | None]]


class _CountAgain(Exception):
    """The batch stopped before its attempts were counted: the message joins the next one."""


class _SettledMeanwhile(Exception):
    """Another delivery settled a message of the batch while its handler ran here."""


class _Batch:
    """Messages whose attempts are counted in one statement, and whose handlers run one after
    another in one transaction, which then settles their inbox rows in one statement.

    A batch costs a message's round trips to count the attempts, begin, settle and commit,
    shared. Whatever it cannot decide for a message, the message's own delivery does on its own,
    in its own task and transaction:
    - a message on its last attempt, so that the attempt still ends within HANDLER_TIMEOUT_S of
      its start (`_wait_for_previous`);
    - the messages whose handlers have not begun when a handler has run for `_SLOW_HANDLER_S`:
      they go at once, so a slow handler holds up no other (different keys run side by side);
    - after a handler fails: its error is its message's outcome (the handler ran once for that
      attempt), the transaction rolls back, and the others go, those before it to run again;
    - when another delivery settled one of the messages meanwhile: the transaction rolls back
      and all go, each to find out on its own whether it is a duplicate.
    """

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.members: list[_Waiting] = []
        self.attempts: dict[UUID, inbox.Attempt] | None = None
        self._tried: dict[UUID, bool | Exception] = {}
        self._begun: set[UUID] = set()

    def take(self, waiting: list[_Waiting], *, busy: set[UUID]) -> list[_Waiting]:
        """One delivery of each message not in a batch running already (`busy`); the others are
        left to wait, so that no two deliveries of a message run side by side."""
        left: list[_Waiting] = []
        for member in waiting:
            if member.result.done():
                continue  # its delivery was cancelled meanwhile
            if member.envelope.id in busy:
                left.append(member)
            else:
                busy.add(member.envelope.id)
                self.members.append(member)
        return left

    async def run(self) -> None:
        consumer = self._consumer
        async with consumer._engine.connect() as conn:
            self.attempts = await consumer._record_attempts(conn, [m.envelope.id for m in self.members])
            together = [m for m in self.members if self._due(m) and not self._last(m)]
            if len(together) >= 2:
                self._tried = await self._try_together(conn, together)

    async def _try_together(
        self, conn: AsyncConnection, together: list[_Waiting]
    ) -> dict[UUID, bool | Exception]:
        """True for each message handled and settled here; or the failed handler's error, and
        nothing for the rest.

        The rows are settled after the handlers, in one statement: settling each first would
        lock a row that a released message, running on its own, must wait for. A message found
        settled by then had its effect elsewhere, so this transaction must not commit.
        """
        consumer = self._consumer
        handled: list[UUID] = []
        running: UUID | None = None
        try:
            async with asyncio.timeout(consumer._handler_timeout_s):
                async with consumer._sessionmaker(bind=conn) as session, session.begin():
                    for member in together:
                        if member.result.done():
                            continue  # released to run on its own, or its delivery was cancelled
                        running = member.envelope.id
                        self._begun.add(running)
                        with self._others_go_if_slow(together), _context(member.envelope):
                            await consumer._run_handler(session, member.envelope, member.event)
                        handled.append(running)
                        running = None
                    if len(await inbox.settle_all(session, consumer.name, handled)) < len(handled):
                        raise _SettledMeanwhile("another delivery settled a message of the batch")
        except Exception as exc:  # noqa: BLE001 - the failed handler's outcome; the rest go alone
            log.info("messages_tried_alone", message_ids=_ids(handled), error=describe(exc))
            return {} if running is None else {running: exc}
        return dict.fromkeys(handled, True)

    @contextmanager
    def _others_go_if_slow(self, together: list[_Waiting]) -> Iterator[None]:
        """While a handler runs: once it has run for `_SLOW_HANDLER_S`, the members whose
        handlers have not begun go on their own."""
        release = asyncio.get_running_loop().call_later(_SLOW_HANDLER_S, self._release, together)
        try:
            yield
        finally:
            release.cancel()

    def _release(self, together: list[_Waiting]) -> None:
        assert self.attempts is not None
        for member in together:
            if member.envelope.id not in self._begun and not member.result.done():
                member.result.set_result((self.attempts[member.envelope.id], None))

    async def finish(self) -> None:
        """Hand each member its attempt and its outcome if it was tried; a member that stopped
        waiting (its delivery was cancelled) and was not tried gets its attempt back."""
        attempts = self.attempts
        if attempts is None:
            for member in self.members:
                if not member.result.done():
                    member.result.set_exception(_CountAgain())
            return
        cut_off = [m.envelope.id for m in self.members if m.result.cancelled() and self._due(m)]
        for member in self.members:
            if not member.result.done():
                message_id = member.envelope.id
                member.result.set_result((attempts[message_id], self._tried.get(message_id)))
        if cut_off:
            await self._consumer._give_back(cut_off)

    def _due(self, member: _Waiting) -> bool:
        """Whether the member's handler is still to run."""
        assert self.attempts is not None
        attempt = self.attempts[member.envelope.id]
        untried = not attempt.settled and member.envelope.id not in self._tried
        return untried and attempt.number <= self._consumer._policy.max_attempts

    def _last(self, member: _Waiting) -> bool:
        assert self.attempts is not None
        return self.attempts[member.envelope.id].number == self._consumer._policy.max_attempts


def _ids(message_ids: Collection[UUID]) -> list[str]:
    return [str(message_id) for message_id in message_ids]


@contextmanager
def _context(envelope: Envelope) -> Iterator[None]:
    """What each log line about the message carries. Restored by the bindings' tokens: structlog's
    `bound_contextvars` reads the whole context to restore it, a cost on every message."""
    tokens = structlog.contextvars.bind_contextvars(
        correlation_id=envelope.correlation_id,
        message_id=str(envelope.id),
        event_type=envelope.type,
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def _check_handlers(handlers: Mapping[type[Contract], Handler]) -> None:
    missing = [c.__name__ for c in CONSUMED if c not in handlers]
    extra = [c.__name__ for c in handlers if c not in CONSUMED]
    if missing or extra:
        raise ConfigurationError(
            "handlers must cover exactly the consumed contracts: "
            f"missing {missing or 'none'}, not consumed {extra or 'none'}"
        )


def _engine_of(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    bind = sessionmaker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise ConfigurationError("the consumer's sessionmaker must be bound to an AsyncEngine")
    return bind


def _maybe(delivery: Delivery) -> Envelope | None:
    """The envelope, when only its payload or contract was at fault."""
    try:
        return Envelope.decode(delivery.raw)
    except ValidationError:
        return None


def _key(contract: type[Contract] | None, envelope: Envelope | None) -> str | None:
    if contract is None or envelope is None:
        return None
    value = envelope.payload.get(contract.KEY_FIELD)
    return None if value is None else str(value)


def _summary(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
