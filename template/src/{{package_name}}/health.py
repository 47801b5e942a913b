"""Liveness and readiness.

The API only needs the database to accept writes (events wait in the outbox), so readiness
fails on the database alone; the broker's state is reported but does not take the API out of
service. The relay and the worker check the broker themselves when they start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from .deps import PublisherDep, SessionDep
from .errors import describe

router = APIRouter(prefix="/health", tags=["health"])

_CHECK_TIMEOUT_S = 2.0


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(session: SessionDep, publisher: PublisherDep, response: Response) -> dict[str, str]:
    checks = {
        "database": await _check(session.execute(text("SELECT 1"))),
        "broker": await _check(publisher.ping()),
    }
    if checks["database"] != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ok" if checks["database"] == "ok" else "unavailable", **checks}


async def _check(probe: Awaitable[object]) -> str:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            await probe
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return describe(exc, max_chars=200)
    return "ok"
