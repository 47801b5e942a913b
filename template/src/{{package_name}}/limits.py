"""A request body limit, as pure ASGI middleware: 413 before a byte too many is read."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .middleware import StartTracking


class BodyTooLarge(HTTPException):
    # An HTTPException, so that FastAPI's body parsing lets it through to its handler (a JSON 413)
    # instead of turning it into "400: There was an error parsing the body".
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes`: at once by their Content-Length, else (chunked) mid-stream."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        tracked = StartTracking(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLarge:
            # Raised where no handler turned it into a response (a route that reads the body itself).
            if tracked.started:
                raise
            await _too_large(self.max_bytes)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    # The same body as FastAPI's handler gives the exception.
    return JSONResponse({"detail": BodyTooLarge(limit).detail}, status_code=413)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see the request
    return None
