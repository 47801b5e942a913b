"""Database engine and sessions. Sessions never commit on their own: the caller owns the transaction."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .settings import Settings

log = structlog.get_logger(__name__)


def create_engine(settings: Settings, *, pre_ping: bool = True) -> AsyncEngine:
    """With `pre_ping`, the pool tests a connection before lending it: on asyncpg that is three
    round trips (BEGIN, an empty query, ROLLBACK) per checkout. Without it, a connection the
    database dropped fails on its first statement and the pool reconnects from then on: for
    callers whose first statement may fail harmlessly (the worker's: the message is redelivered)."""
    return create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=settings.db_pool_size,
        pool_pre_ping=pre_ping,
        pool_timeout=settings.db_connect_timeout_s + settings.db_command_timeout_s,
        # asyncpg's own bounds: `timeout` on connecting, `command_timeout` on every statement
        # (the pre-ping included). Without them a silent database stalls a caller for minutes.
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.db_command_timeout_s,
        },
        # Error text goes to logs and to inbox/dead-letter rows: never with the statement's values.
        hide_parameters=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def dispose(engine: AsyncEngine, *, timeout_s: float) -> None:
    """Close the pool's connections, but give up after `timeout_s`.

    Closing is a polite goodbye that waits for the server's answer; a database that accepts
    connections but never answers would hold a shutdown forever. Past the bound the pool is just
    dropped, and the connections end with the process.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await engine.dispose()
    except TimeoutError:
        log.warning("database_close_timed_out", after_s=timeout_s)
        await engine.dispose(close=False)


def create_probe_engine(settings: Settings) -> AsyncEngine:
    """A small engine of its own for readiness probes.

    Probes must not queue behind requests: a busy request pool means load, not a database down,
    and a probe waiting for it would take a healthy API out of service.
    """
    timeout_s = settings.api_ready_timeout_s
    return create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=1,
        max_overflow=1,
        pool_timeout=timeout_s,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
    )
