"""Retention: deleting what no longer serves, so that tables hold days of history, not years.

Published outbox rows, settled inbox rows (the dedupe window: a duplicate that arrives later than
INBOX_RETENTION_S after the first delivery settled is processed again) and dead letters an
operator replayed or discarded are deleted once older than their retention. In batches, each its
own short transaction that skips rows another transaction holds and gives up on a table lock it
cannot get at once, so that sweeping never makes a writer, the relay or a migration wait. One
process sweeps at a time, across replicas: whoever holds the advisory lock; the others skip that
round.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import metrics
from .constants import SWEEP_LOCK_ID
from .errors import describe
from .settings import Settings

log = structlog.get_logger(__name__)

# A batch's statements may not wait this long for a lock (a migration's, say): skip the round.
_LOCK_TIMEOUT = "1s"


@dataclass(frozen=True, slots=True)
class _Rule:
    table: str
    # Selects up to :batch deletable rows older than :keep_s seconds, oldest first, skipping
    # locked ones; its `ctid`s are deleted. Each reads the partial index of its timestamp.
    doomed: str


_RULES = (
    _Rule(
        "outbox",
        "SELECT ctid FROM outbox WHERE published_at < now() - make_interval(secs => :keep_s) "
        "ORDER BY published_at LIMIT :batch FOR UPDATE SKIP LOCKED",
    ),
    _Rule(
        "inbox",
        "SELECT ctid FROM inbox WHERE processed_at < now() - make_interval(secs => :keep_s) "
        "ORDER BY processed_at LIMIT :batch FOR UPDATE SKIP LOCKED",
    ),
    *(
        _Rule(
            "dead_letters",
            f"SELECT ctid FROM dead_letters WHERE {dealt_with} < now() - make_interval(secs => :keep_s) "
            f"ORDER BY {dealt_with} LIMIT :batch FOR UPDATE SKIP LOCKED",
        )
        for dealt_with in ("replayed_at", "discarded_at")
    ),
)


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one pass did: rows deleted per table, in how many batches; None if another swept."""

    deleted: dict[str, int]
    batches: dict[str, int]


class Sweeper:
    def __init__(self, *, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._keep_s = {
            "outbox": settings.outbox_retention_s,
            "inbox": settings.inbox_retention_s,
            "dead_letters": settings.dead_letter_retention_s,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every SWEEP_INTERVAL_S until `stop` is set; a failed pass is retried next time."""
        while not stop.is_set():
            try:
                await self.sweep(stop)
            except (OSError, SQLAlchemyError) as exc:
                log.warning("retention_sweep_failed", error=describe(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.sweep_interval_s)

    async def sweep(self, stop: asyncio.Event | None = None) -> Sweep | None:
        """One pass over every table, unless another process is sweeping (then None)."""
        async with self._engine.connect() as conn:
            if not await _try_lock(conn):
                return None
            result = Sweep(deleted={}, batches={})
            try:
                for rule in _RULES:
                    deleted, batches = await self._sweep_table(conn, rule, stop)
                    result.deleted[rule.table] = result.deleted.get(rule.table, 0) + deleted
                    result.batches[rule.table] = result.batches.get(rule.table, 0) + batches
                await self._measure(conn)
                await conn.execute(text("SELECT pg_advisory_unlock(:lock)"), {"lock": SWEEP_LOCK_ID})
                await conn.commit()
            except BaseException:
                # Whatever state the session was left in (a cancelled statement, a lost server),
                # closing it releases the lock; back in the pool it would keep it.
                await conn.invalidate()
                raise
        metrics.RETENTION_LAST_SWEEP.set(time.time())
        if any(result.deleted.values()):
            log.info("retention_swept", deleted=result.deleted, batches=result.batches)
        return result

    async def _sweep_table(
        self, conn: AsyncConnection, rule: _Rule, stop: asyncio.Event | None
    ) -> tuple[int, int]:
        statement = text(f"DELETE FROM {rule.table} WHERE ctid = ANY(ARRAY({rule.doomed}))")
        batch = self._settings.sweep_batch_size
        params = {"keep_s": self._keep_s[rule.table], "batch": batch}
        deleted = batches = 0
        while stop is None or not stop.is_set():
            async with conn.begin():
                await conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
                count = (await conn.execute(statement, params)).rowcount
            deleted += count
            batches += 1
            metrics.RETENTION_DELETED.labels(rule.table).inc(count)
            if count < batch:
                break
        return deleted, batches

    async def _measure(self, conn: AsyncConnection) -> None:
        for table in self._keep_s:
            size = await conn.scalar(text("SELECT pg_total_relation_size(:table)"), {"table": table})
            metrics.TABLE_SIZE.labels(table).set(size or 0)
        await conn.commit()


async def _try_lock(conn: AsyncConnection) -> bool:
    """The session lock that makes one process the sweeper for this pass."""
    got = await conn.scalar(text("SELECT pg_try_advisory_lock(:lock)"), {"lock": SWEEP_LOCK_ID})
    await conn.commit()
    return bool(got)
