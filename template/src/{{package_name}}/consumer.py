"""Broker-independent message processing: decode, dedupe, handle, retry or dead-letter.

A broker adapter hands each delivery to `Consumer.process` and acknowledges it only when that
returns None; a `RetryLater` asks for redelivery after a delay. Anything else (an exception, a
cancelled task) means "not done": the adapter must leave the message to be delivered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
        with structlog.contextvars.bound_contextvars(
            correlation_id=envelope.correlation_id,
            message_id=str(envelope.id),
            event_type=envelope.type,
        ):
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
        # One connection for the attempt and the handler: a message costs one checkout (and its
        # ping), not two. The handler's errors are dealt with once the connection is back.
        async with self._engine.connect() as conn:
            attempt = await self._record_attempt(conn, envelope)
            due = not attempt.settled and attempt.number <= self._policy.max_attempts
            outcome = await self._try(conn, envelope, event) if due else None
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
        if isinstance(outcome, Exception):
            return await self._failed(delivery, envelope, attempt.number, outcome)
        if not outcome:
            self._duplicate(envelope)
            return None
        metrics.MESSAGES_CONSUMED.labels(envelope.type, "processed").inc()
        log.info("message_processed", attempt=attempt.number)
        return None

    async def _record_attempt(self, conn: AsyncConnection, envelope: Envelope) -> inbox.Attempt:
        """Count the attempt in a statement that commits on its own (no BEGIN and COMMIT round
        trips), before the handler runs: an attempt that kills the worker still counts."""
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        attempt = await inbox.record_attempt(conn, self.name, envelope.id)
        await conn.commit()  # ends SQLAlchemy's own autobegun transaction; the row is in already
        await conn.execution_options(isolation_level=conn.default_isolation_level)
        return attempt

    async def _try(self, conn: AsyncConnection, envelope: Envelope, event: Contract) -> bool | Exception:
        """Run the handler; its error is returned, not raised."""
        try:
            return await self._handle(conn, envelope, event)
        except asyncio.CancelledError:
            # A shutdown or a rebalance stopped the handler: not the message's fault, so the
            # attempt must not count (a crash, which cannot get here, still counts).
            await self._give_back(envelope)
            raise
        except Exception as exc:  # noqa: BLE001 - the error's `retriable` decides, in _failed
            return exc

    async def _handle(self, conn: AsyncConnection, envelope: Envelope, event: Contract) -> bool:
        """Run the handler and settle the inbox in one transaction; False for a duplicate."""
        async with asyncio.timeout(self._handler_timeout_s):
            async with self._sessionmaker(bind=conn) as session, session.begin():
                if not await inbox.settle(session, self.name, envelope.id):
                    return False
                with metrics.HANDLER_DURATION.labels(envelope.type).time():
                    await self._handlers[type(event)](session, event, envelope)
        return True

    async def _wait_for_previous(self, envelope: Envelope, attempt: inbox.Attempt) -> RetryLater:
        """Past the attempts, but the previous attempt may still be running: a duplicate delivery
        handled side by side with it, not a worker that died. This one does not count, and looks
        again shortly: a duplicate once that attempt settles, a dead letter only once that attempt
        must have ended (HANDLER_TIMEOUT_S after it began)."""
        await self._give_back(envelope, began_at=attempt.previous_at)
        running_at_most_s = self._handler_timeout_s - (attempt.since_previous_s or 0.0)
        delay_s = min(running_at_most_s, _IN_PROGRESS_POLL_S)
        log.info("message_attempt_in_progress", attempt=attempt.number, retry_in_s=round(delay_s, 3))
        return RetryLater(delay_s)

    async def _give_back(self, envelope: Envelope, *, began_at: datetime | None = None) -> None:
        try:
            async with asyncio.timeout(_GIVE_BACK_TIMEOUT_S):
                async with self._sessionmaker.begin() as session:
                    await inbox.give_back(session, self.name, envelope.id, began_at=began_at)
        except Exception as exc:  # noqa: BLE001 - the attempt then counts: safe, only stricter
            log.warning("inbox_give_back_failed", error=describe(exc))
            return
        log.info("message_attempt_given_back")

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
