"""The relay: moves committed outbox rows to the broker, in order per key, safely with replicas.

A replica claims rows by taking a lease on them. Claims are serialised by an advisory lock and
never include a row whose key is leased by anyone or which waits behind an older row of its key
that is not due yet or held, so one replica at a time publishes a key, oldest row first. A claim
takes keys whole, oldest first, so that keys taking turns in a backlog are shared by replicas. Rows
written behind a row the broker refused are held, out of the claim's way, until it is settled. Only the holder
of a row's lease may mark it published; a replica whose lease ran out and was taken over just
lets the new holder finish (the consumer's inbox absorbs the duplicate). A batch is published
at once, without a round trip per row, and its outcome recorded in one transaction. Progress is the
`published_at` of each row, never a "last id" (ids commit out of order, so a high-water mark
loses rows). A row the broker keeps refusing while it accepts others becomes a dead letter after
RELAY_MAX_ATTEMPTS; an outage never counts toward that, it only delays.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import metrics
from .broker import OutboundMessage, Publisher
from .constants import (
    OUTBOX_CHANNEL,
    REASON_UNPUBLISHABLE,
    RELAY_CLAIM_LOCK_ID,
    RELAY_DEAD_LETTER_CONSUMER,
)
from .errors import describe
from .settings import Settings

log = structlog.get_logger(__name__)

# 2**62 times the base delay is already past any cap; clamping keeps the float finite.
_MAX_EXPONENT = 62

# Rows written behind a failing row of their key are held (outbox.add): out of ix_outbox_ready,
# so the claim never walks them. Once no failing row precedes a key's held rows (it was
# published or dead-lettered), they are released here, before each claim. Held keys are found
# one index probe each, however many rows they hold back.
_RELEASE_HELD = text(
    """
    WITH RECURSIVE held_keys AS (
        (SELECT topic, key, id FROM outbox WHERE held ORDER BY topic, key, id LIMIT 1)
        UNION ALL
        SELECT next.topic, next.key, next.id FROM held_keys, LATERAL (
            SELECT topic, key, id FROM outbox
            WHERE held AND (topic, key) > (held_keys.topic, held_keys.key)
            ORDER BY topic, key, id LIMIT 1) AS next
    ),
    released AS (
        SELECT topic, key FROM held_keys
        WHERE NOT EXISTS (
            SELECT 1 FROM outbox failing
            WHERE failing.topic = held_keys.topic AND failing.key = held_keys.key
              AND failing.lease_expires_at IS NOT NULL AND failing.last_error IS NOT NULL
              AND failing.published_at IS NULL AND failing.id < held_keys.id)
    )
    -- By primary key: a join may be planned as a scan of every held row, released or not.
    UPDATE outbox SET held = false
    WHERE outbox.id = ANY(ARRAY(
        SELECT row.id FROM released, LATERAL (
            SELECT id FROM outbox WHERE held AND topic = released.topic AND key = released.key) AS row))
    """
)
# A batch takes keys whole, oldest first: the claimable rows of a window CLAIM_WINDOW times the
# batch, ordered by their key's oldest row, then their own. Taking the batch's rows in plain id order
# would spread it over every key of a backlog whose keys take turns, and leave another relay no key
# to publish; this way a second relay takes the next keys meanwhile. Each key's rows in the batch
# are a prefix of its claimable rows, so its order holds either way.
_CLAIM = text(
    """
    WITH window_rows AS (
        SELECT o.id, o.topic, o.key FROM outbox o
        WHERE o.published_at IS NULL AND NOT o.held
          AND o.available_at <= clock_timestamp()
          -- Order per key: no row of a key that anyone holds a lease on, and no row behind an
          -- older row of its key that is not due yet. Wall time (clock_timestamp), not the
          -- transaction's start (now()): this statement may have waited on the claim lock.
          -- Each check reads only a partial index of the few rows it is about (migration 0003):
          -- a published row holds no lease and was due, so neither check names published_at,
          -- and neither can be answered by walking every pending row, whatever the statistics.
          AND NOT EXISTS (
              SELECT 1 FROM outbox held
              WHERE held.topic = o.topic AND held.key = o.key
                AND held.lease_expires_at > clock_timestamp())
          AND NOT EXISTS (
              SELECT 1 FROM outbox early
              WHERE early.available_at > early.created_at
                AND early.topic = o.topic AND early.key = o.key AND early.id < o.id
                AND early.available_at > clock_timestamp())
          -- Nor behind a held row of its key: held rows go first, once released.
          AND NOT EXISTS (
              SELECT 1 FROM outbox behind
              WHERE behind.held AND behind.topic = o.topic AND behind.key = o.key AND behind.id < o.id)
        ORDER BY o.id
        LIMIT :window_size
    ),
    by_key AS (
        SELECT id, min(id) OVER (PARTITION BY topic, key) AS key_first FROM window_rows
    ),
    claimable AS (
        SELECT id FROM by_key ORDER BY key_first, id LIMIT :batch_size
    )
    -- By primary key, always: a join may be planned as a scan of the whole table, history and all.
    UPDATE outbox SET lease_owner = :owner,
                      lease_expires_at = clock_timestamp() + make_interval(secs => :lease_ttl_s)
    WHERE outbox.id = ANY(ARRAY(SELECT id FROM claimable))
    RETURNING outbox.id, outbox.topic, outbox.key, outbox.message_id, outbox.type,
              outbox.schema_version, outbox.correlation_id, outbox.envelope, outbox.attempts,
              outbox.addressed_to
    """
)
CLAIM_WINDOW = 2
_COMPLETE = text(
    """
    UPDATE outbox SET published_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                      attempts = attempts + 1, last_error = NULL
    WHERE id = ANY(:ids) AND lease_owner = :owner AND published_at IS NULL
    RETURNING topic, extract(epoch FROM clock_timestamp() - created_at)::float8
    """
)
# The failed row keeps its lease until the retry delay has passed, which holds back its key
# (and only its key). A failure while the broker was unreachable is not the row's: not counted.
_DEFER = text(
    """
    UPDATE outbox SET attempts = attempts + :counted, last_error = :error,
                      lease_expires_at = clock_timestamp() + make_interval(secs => :delay_s)
    WHERE id = :id AND lease_owner = :owner AND published_at IS NULL
    """
)
# A row the broker keeps refusing leaves the outbox for the dead letters, whole, in one statement.
_DEAD_LETTER = text(
    """
    WITH gone AS (
        DELETE FROM outbox WHERE id = :id AND lease_owner = :owner AND published_at IS NULL
        RETURNING id, message_id, type, schema_version, topic, key, envelope, attempts, created_at,
                  correlation_id, addressed_to
    )
    INSERT INTO dead_letters (consumer, message_id, type, schema_version, topic, key, raw, reason,
                              error_type, error_message, attempts, source, replay_count)
    SELECT :consumer, message_id, type, schema_version, topic, key, convert_to(envelope, 'UTF8'),
           :reason, :error_type, :error, attempts + 1,
           jsonb_strip_nulls(jsonb_build_object('outbox_id', id, 'created_at', created_at,
                                                'correlation_id', correlation_id,
                                                'addressed_to', addressed_to)),
           -- A message dead-lettered again after a replay carries how often it was replayed.
           (SELECT coalesce(max(d.replay_count), 0) FROM dead_letters d
            WHERE d.consumer = :consumer AND d.message_id = gone.message_id)
    FROM gone
    ON CONFLICT (consumer, message_id) WHERE replayed_at IS NULL AND message_id IS NOT NULL
    DO UPDATE SET attempts = dead_letters.attempts + excluded.attempts,
                  error_type = excluded.error_type, error_message = excluded.error_message,
                  dead_lettered_at = now()
    """
)
_RELEASE = text(
    """
    UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL
    WHERE id = ANY(:ids) AND lease_owner = :owner AND published_at IS NULL
    """
)
_RELEASE_ALL = text(
    """
    UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL
    WHERE lease_owner = :owner AND published_at IS NULL
      AND (last_error IS NULL OR lease_expires_at <= clock_timestamp())
    """
)
_DEPTH = text(
    """
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM outbox WHERE published_at IS NULL
    """
)
# Closing the listener and handing back leases at shutdown, when the database may not answer.
_CLEANUP_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    attempts: int  # failed attempts that counted, before this one
    message: OutboundMessage


@dataclass(frozen=True, slots=True)
class _Failure:
    row: _Row
    error: BaseException


@dataclass(frozen=True, slots=True)
class _KeyResult:
    published: list[int]
    failed: _Failure | None
    untried: list[int]  # behind the failure: handed back, to be published after it


class Relay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        publisher: Publisher,
        settings: Settings,
        owner: str | None = None,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; wake on NOTIFY, poll as a fallback.

        After `stop`, the batch in flight has SHUTDOWN_TIMEOUT_S to publish and record its
        outcome; then it is cancelled (its leases lapse, nothing is marked that was not done).
        """
        wake = asyncio.Event()
        listener = _Listener(self._settings, wake)
        log.info("relay_started", owner=self.owner)
        work = asyncio.create_task(self._relay_until(stop, listener, wake))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                done, _ = await asyncio.wait({work}, timeout=self._settings.shutdown_timeout_s)
                if not done:
                    log.warning("relay_shutdown_cancelled", owner=self.owner)
                    work.cancel()
                    await asyncio.wait({work}, timeout=_CLEANUP_TIMEOUT_S)
            if work.done() and not work.cancelled():
                work.result()  # a crash of the loop is raised, not hidden
        finally:
            stopped.cancel()
            work.cancel()
            await self._clean_up(listener)
            log.info("relay_stopped", owner=self.owner)

    async def _relay_until(self, stop: asyncio.Event, listener: _Listener, wake: asyncio.Event) -> None:
        poll_s = self._settings.relay_poll_interval_ms / 1000
        next_gauge = 0.0
        while not stop.is_set():
            await listener.ensure()
            wake.clear()  # before claiming: a NOTIFY during the claim must wake the next wait
            claimed = await self._relay_once_guarded()
            if time.monotonic() >= next_gauge:
                await self._update_depth_gauges()
                next_gauge = time.monotonic() + 5
            # A short batch does not mean the outbox is drained: the rest may be keys another
            # replica held a moment ago. Only an empty claim waits for a NOTIFY or the poll.
            if claimed == 0:
                await _wait_first(wake, stop, timeout_s=poll_s)

    async def relay_once(self) -> int:
        """Claim one batch, publish it, record the outcome. Returns how many rows were claimed."""
        # Measured before claiming: the lease starts during the claim, never before this.
        claim_started = time.monotonic()
        rows = await self._claim()
        if not rows:
            return 0
        # The outcome must be recorded while the lease holds: PUBLISH_TIMEOUT_S of it is kept for that.
        publish_timeout_s = self._settings.publish_timeout_s
        lease_left_s = claim_started + self._settings.relay_lease_ttl_s - time.monotonic()
        timeout_s = max(0.0, min(publish_timeout_s, lease_left_s - publish_timeout_s))
        errors = await self._publisher.publish_batch([row.message for row in rows], timeout_s=timeout_s)
        outcome = dict(zip((row.id for row in rows), errors, strict=True))
        results = [_settle(group, outcome) for group in _by_key(rows)]
        failed = any(r.failed is not None for r in results)
        await self._record(results, broker_reachable=failed and await self._broker_reachable())
        return len(rows)

    async def _relay_once_guarded(self) -> int:
        try:
            return await self.relay_once()
        except (OSError, SQLAlchemyError) as exc:
            # The database is unreachable: nothing was marked, leases lapse on their own.
            log.warning("relay_database_error", error=describe(exc))
            return 0

    async def _claim(self) -> list[_Row]:
        async with self._engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": RELAY_CLAIM_LOCK_ID})
            await conn.execute(_RELEASE_HELD)
            result = await conn.execute(
                _CLAIM,
                {
                    "batch_size": self._settings.relay_batch_size,
                    "window_size": self._settings.relay_batch_size * CLAIM_WINDOW,
                    "owner": self.owner,
                    "lease_ttl_s": self._settings.relay_lease_ttl_s,
                },
            )
            rows = sorted(result.all(), key=lambda row: row.id)
        # The stored text goes out as it is: the relay never needs to understand it.
        return [
            _Row(
                row.id,
                row.attempts,
                OutboundMessage(
                    topic=row.topic,
                    key=row.key,
                    message_id=row.message_id,
                    type=row.type,
                    schema_version=row.schema_version,
                    correlation_id=row.correlation_id,
                    body=row.envelope,
                    addressed_to=row.addressed_to,
                ),
            )
            for row in rows
        ]

    async def _broker_reachable(self) -> bool:
        """Whether a failed publish was the row's fault (the broker answers) or an outage."""
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                await self._publisher.ping()
        except Exception:  # noqa: BLE001 - any failure to answer is an outage here
            return False
        return True

    async def _record(self, results: Sequence[_KeyResult], *, broker_reachable: bool) -> None:
        published = [row_id for r in results for row_id in r.published]
        untried = [row_id for r in results for row_id in r.untried]
        async with self._engine.begin() as conn:
            if published:
                done = (await conn.execute(_COMPLETE, {"ids": published, "owner": self.owner})).all()
                for topic, delay_s in done:
                    metrics.OUTBOX_PUBLISHED.labels(topic).inc()
                    metrics.OUTBOX_PUBLISH_DELAY.observe(delay_s)
                if len(done) < len(published):
                    metrics.OUTBOX_LEASES_LOST.inc(len(published) - len(done))
                    log.warning("outbox_lease_lost", owner=self.owner, rows=len(published) - len(done))
            for r in results:
                if r.failed is not None:
                    metrics.OUTBOX_PUBLISH_FAILURES.labels(r.failed.row.message.topic).inc()
                    counted = broker_reachable and _the_rows_fault(r.failed.error)
                    await self._record_failure(conn, r.failed, counted=counted)
            if untried:
                await conn.execute(_RELEASE, {"ids": untried, "owner": self.owner})

    async def _record_failure(self, conn: AsyncConnection, failure: _Failure, *, counted: bool) -> None:
        row, error = failure.row, describe(failure.error)
        attempts = row.attempts + 1 if counted else row.attempts
        log.warning(
            "outbox_publish_failed",
            **_about(row.message),
            attempts=attempts,
            broker_reachable=counted,
            error=error,
        )
        if attempts >= self._settings.relay_max_attempts:
            params = {
                "id": row.id,
                "owner": self.owner,
                "consumer": RELAY_DEAD_LETTER_CONSUMER,
                "reason": REASON_UNPUBLISHABLE,
                "error_type": type(failure.error).__name__,
                "error": error,
            }
            if await _rowcount(conn, _DEAD_LETTER, params):
                metrics.OUTBOX_DEAD_LETTERED.labels(row.message.topic).inc()
                log.error("outbox_dead_lettered", **_about(row.message), attempts=attempts, error=error)
            return
        settings = self._settings
        delay_s = settings.relay_retry_delay_s
        if counted:  # the row's own failures back off; an outage is retried at the base delay
            backoff = 2.0 ** min(row.attempts, _MAX_EXPONENT)
            delay_s = min(delay_s * backoff, settings.relay_retry_max_delay_s)
        params = {
            "id": row.id,
            "owner": self.owner,
            "error": error,
            "delay_s": delay_s,
            "counted": int(counted),
        }
        await conn.execute(_DEFER, params)

    async def _clean_up(self, listener: _Listener) -> None:
        """Close the listener and hand back leases, so another replica need not wait for them."""
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                await listener.close()
                async with self._engine.begin() as conn:
                    await conn.execute(_RELEASE_ALL, {"owner": self.owner})
        # TimeoutError is an OSError; closing the listener may raise asyncpg's own errors.
        except (OSError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("relay_release_failed", error=describe(exc))

    async def _update_depth_gauges(self) -> None:
        try:
            async with self._engine.connect() as conn:
                pending, age_s = (await conn.execute(_DEPTH)).one()
        except (OSError, SQLAlchemyError):
            return
        metrics.OUTBOX_PENDING.set(pending)
        metrics.OUTBOX_OLDEST_AGE.set(float(age_s))


class _Listener:
    """LISTEN on the outbox channel; sets `wake` on every NOTIFY. Polling covers any gap."""

    def __init__(self, settings: Settings, wake: asyncio.Event) -> None:
        self._dsn = settings.database_url.get_secret_value().replace("+asyncpg", "", 1)
        self._wake = wake
        self._timeout_s = settings.db_connect_timeout_s
        self._conn: Any = None

    async def ensure(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            self._conn = await asyncio.wait_for(asyncpg.connect(self._dsn), timeout=self._timeout_s)
            await self._conn.add_listener(OUTBOX_CHANNEL, self._notified)
        # InterfaceError: the server ended the connection before the LISTEN (a shutting-down
        # database does), which asyncpg reports as neither an OSError nor a PostgresError.
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._conn = None
            log.warning("outbox_listen_unavailable", error=describe(exc))

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close(timeout=self._timeout_s)


def _the_rows_fault(error: BaseException) -> bool:
    """Whether a failed publish says something about the row rather than the broker's state.

    A timeout, or an error the client itself calls retriable (aiokafka's `retriable`), says
    only that the broker is slow or busy: the row is tried again and nothing counts.
    """
    return not isinstance(error, TimeoutError) and not getattr(error, "retriable", False)


def _about(message: OutboundMessage) -> dict[str, str]:
    """Log fields naming a message, with the correlation id of the request that caused it."""
    return {
        "message_id": str(message.message_id),
        "correlation_id": message.correlation_id,
        "topic": message.topic,
    }


def _settle(rows: Sequence[_Row], errors: dict[int, BaseException | None]) -> _KeyResult:
    """A key's rows, in id order, are published up to its first failure, which holds back the rest.

    A row behind the failure may have reached the broker too; it is published again after the
    failed row (the consumer's inbox absorbs the copy), so the key's order holds once it settles.
    """
    for index, row in enumerate(rows):
        error = errors[row.id]
        if error is not None:
            ids = [r.id for r in rows]
            return _KeyResult(ids[:index], _Failure(row, error), ids[index + 1 :])
    return _KeyResult([r.id for r in rows], None, [])


def _by_key(rows: Sequence[_Row]) -> list[list[_Row]]:
    groups: dict[tuple[str, str], list[_Row]] = {}
    for row in rows:  # rows arrive in id order, so each group is in id order too
        groups.setdefault((row.message.topic, row.message.key), []).append(row)
    return list(groups.values())


async def _rowcount(conn: AsyncConnection, statement: Any, params: dict[str, Any]) -> int:
    result = await conn.execute(statement, params)
    return int(result.rowcount)


async def _wait_first(*events: asyncio.Event, timeout_s: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
