"""Correlation ids for HTTP requests, as pure ASGI middleware.

`BaseHTTPMiddleware` runs the endpoint in another task, which breaks contextvars propagation;
a plain ASGI wrapper keeps the bound id visible to the endpoint and to `outbox.add`.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .constants import CORRELATION_HEADER
from .logs import new_correlation_id

log = structlog.get_logger(__name__)
_HEADER = CORRELATION_HEADER.encode()
_MAX_LENGTH = 128


class CorrelationIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = _from_headers(scope) or new_correlation_id()
        started = time.perf_counter()
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                message.setdefault("headers", []).append((_HEADER, correlation_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                log.info(
                    "http_request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status[0] if status else 500,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )


def _from_headers(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            text: str = value.decode("latin-1").strip()
            # Only accept ids that are safe to log and forward.
            if 0 < len(text) <= _MAX_LENGTH and text.isprintable():
                return text
    return None


class StartTracking:
    """Wraps `send`; `started` tells whether the response has begun (then no other may be sent)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)
