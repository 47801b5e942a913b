"""The relay: moves committed outbox rows to the broker, in order per key, safely with replicas.

A replica claims rows by taking a lease on them. Claims are serialised by an advisory lock and
never include a key whose earlier rows are leased by anyone, so one replica at a time publishes
a key, oldest row first. Only the holder of a row's lease may mark it published; a replica whose
lease ran out and was taken over just lets the new holder finish (the consumer's inbox absorbs
the duplicate). Progress is the `published_at` of each row, never a "last id" (ids commit out of
order, so a high-water mark loses rows).
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
from .constants import OUTBOX_CHANNEL, RELAY_CLAIM_LOCK_ID
from .envelope import Envelope
from .errors import describe
from .settings import Settings

log = structlog.get_logger(__name__)

_CLAIM = text(
    """
    WITH claimable AS (
        SELECT o.id FROM outbox o
        WHERE o.published_at IS NULL
          AND o.available_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM outbox held
              WHERE held.published_at IS NULL
                AND held.topic = o.topic AND held.key = o.key
                AND held.lease_expires_at > now())
        ORDER BY o.id
        LIMIT :batch_size
    )
    UPDATE outbox SET lease_owner = :owner,
                      lease_expires_at = now() + make_interval(secs => :lease_ttl_s)
    FROM claimable WHERE outbox.id = claimable.id
    RETURNING outbox.id, outbox.topic, outbox.key, outbox.envelope
    """
)
_COMPLETE = text(
    """
    UPDATE outbox SET published_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                      attempts = attempts + 1, last_error = NULL
    WHERE id = ANY(:ids) AND lease_owner = :owner AND published_at IS NULL
    """
)
# The failed row keeps its lease until the retry delay has passed, which holds back its whole key.
_DEFER = text(
    """
    UPDATE outbox SET attempts = attempts + 1, last_error = :error,
                      lease_expires_at = now() + make_interval(secs => :delay_s)
    WHERE id = :id AND lease_owner = :owner AND published_at IS NULL
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
      AND (last_error IS NULL OR lease_expires_at <= now())
    """
)
_DEPTH = text(
    """
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM outbox WHERE published_at IS NULL
    """
)


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    message: OutboundMessage


@dataclass(slots=True)
class _KeyResult:
    published: list[int]
    failed: tuple[int, str] | None
    untried: list[int]


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
        """Relay until `stop` is set; wake on NOTIFY, poll as a fallback."""
        wake = asyncio.Event()
        listener = _Listener(self._settings, wake)
        poll_s = self._settings.relay_poll_interval_ms / 1000
        next_gauge = 0.0
        log.info("relay_started", owner=self.owner)
        try:
            while not stop.is_set():
                await listener.ensure()
                wake.clear()  # before claiming: a NOTIFY during the claim must wake the next wait
                claimed = await self._relay_once_guarded()
                if time.monotonic() >= next_gauge:
                    await self._update_depth_gauges()
                    next_gauge = time.monotonic() + 5
                if claimed < self._settings.relay_batch_size:
                    await _wait_first(wake, stop, timeout_s=poll_s)
        finally:
            await listener.close()
            await self._release_all()
            log.info("relay_stopped", owner=self.owner)

    async def relay_once(self) -> int:
        """Claim one batch, publish it, record the outcome. Returns how many rows were claimed."""
        rows = await self._claim()
        if not rows:
            return 0
        # Stop starting publishes while there is still time to finish one inside the lease.
        deadline = time.monotonic() + self._settings.relay_lease_ttl_s - self._settings.publish_timeout_s
        results = await asyncio.gather(*(self._publish_key(group, deadline) for group in _by_key(rows)))
        await self._record(results)
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
            result = await conn.execute(
                _CLAIM,
                {
                    "batch_size": self._settings.relay_batch_size,
                    "owner": self.owner,
                    "lease_ttl_s": self._settings.relay_lease_ttl_s,
                },
            )
            rows = sorted(result.all(), key=lambda row: row.id)
        return [
            _Row(row.id, OutboundMessage(row.topic, row.key, Envelope.decode(row.envelope))) for row in rows
        ]

    async def _publish_key(self, rows: Sequence[_Row], deadline: float) -> _KeyResult:
        result = _KeyResult(published=[], failed=None, untried=[])
        for index, row in enumerate(rows):
            if time.monotonic() > deadline:
                result.untried = [r.id for r in rows[index:]]
                break
            try:
                async with asyncio.timeout(self._settings.publish_timeout_s):
                    await self._publisher.publish(row.message)
            except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row pending
                metrics.OUTBOX_PUBLISH_FAILURES.labels(row.message.topic).inc()
                log.warning("outbox_publish_failed", **_about(row.message), error=describe(exc))
                # Later rows of this key must wait for this one: order per key.
                result.failed = (row.id, describe(exc))
                result.untried = [r.id for r in rows[index + 1 :]]
                break
            metrics.OUTBOX_PUBLISHED.labels(row.message.topic).inc()
            log.debug("outbox_published", **_about(row.message))
            result.published.append(row.id)
        return result

    async def _record(self, results: Sequence[_KeyResult]) -> None:
        published = [row_id for r in results for row_id in r.published]
        untried = [row_id for r in results for row_id in r.untried]
        async with self._engine.begin() as conn:
            if published:
                done = await _rowcount(conn, _COMPLETE, {"ids": published, "owner": self.owner})
                if done < len(published):
                    metrics.OUTBOX_LEASES_LOST.inc(len(published) - done)
                    log.warning("outbox_lease_lost", owner=self.owner, rows=len(published) - done)
            for r in results:
                if r.failed is not None:
                    row_id, error = r.failed
                    await conn.execute(
                        _DEFER,
                        {
                            "id": row_id,
                            "owner": self.owner,
                            "error": error,
                            "delay_s": self._settings.relay_retry_delay_s,
                        },
                    )
            if untried:
                await conn.execute(_RELEASE, {"ids": untried, "owner": self.owner})

    async def _release_all(self) -> None:
        """On shutdown, hand back leases at once so another replica need not wait for them."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_RELEASE_ALL, {"owner": self.owner})
        except (OSError, SQLAlchemyError) as exc:
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
        self._conn: Any = None

    async def ensure(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        try:
            self._conn = await asyncio.wait_for(asyncpg.connect(self._dsn), timeout=5)
            await self._conn.add_listener(OUTBOX_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self._conn = None
            log.warning("outbox_listen_unavailable", error=describe(exc))

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def _about(message: OutboundMessage) -> dict[str, str]:
    """Log fields naming a message, with the correlation id of the request that caused it."""
    envelope = message.envelope
    return {"message_id": str(envelope.id), "correlation_id": envelope.correlation_id, "topic": message.topic}


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
