"""Liveness and readiness.

The API only needs the database to accept writes (events wait in the outbox), so readiness
fails on the database alone; the broker's state is reported but does not take the API out of
service. The relay and the worker check the broker themselves when they start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .deps import PublisherDep
from .errors import describe

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, publisher: PublisherDep, response: Response) -> dict[str, str]:
    timeout_s: float = request.app.state.ready_timeout_s
    checks = {
        "database": await _check(_select_one(request.app.state.probe_engine), timeout_s),
        "broker": await _check(publisher.ping(), timeout_s),
    }
    if checks["database"] != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ok" if checks["database"] == "ok" else "unavailable", **checks}


async def _select_one(engine: AsyncEngine) -> None:
    # The probe engine, not the request pool (see db.create_probe_engine).
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check(probe: Awaitable[object], timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await probe
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return describe(exc, max_chars=200)
    return "ok"
