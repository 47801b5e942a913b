"""Error responses of the API: capped 422 echoes, 422 for data the database refuses, 503 when it is away."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import describe, is_data_refused, is_database_unavailable
from .middleware import StartTracking

log = structlog.get_logger(__name__)

# A 422 says what was wrong and where; it does not hand a huge body back to the client.
ECHO_MAX_CHARS = 200
ECHO_MAX_DEPTH = 4
MAX_ERRORS = 20


async def validation_failed(_: Request, exc: Exception) -> Response:
    """The 422 for a request that does not validate, with every echoed value made JSON-safe."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    content: dict[str, Any] = {"detail": [_error(error) for error in errors[:MAX_ERRORS]]}
    if len(errors) > MAX_ERRORS:
        content["more_errors"] = len(errors) - MAX_ERRORS
    return JSONResponse(content, status_code=422)


def _error(error: Mapping[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "type": error["type"],
        "loc": [_echo(part) for part in error["loc"]],
        "msg": _echo(error["msg"]),
    }
    if "input" in error:
        shown["input"] = _echo(error["input"])
    if error.get("ctx"):
        shown["ctx"] = {key: _echo(value) for key, value in error["ctx"].items()}
    return shown


def _echo(value: Any) -> Any:
    """`value` as JSON can carry it, and at most ECHO_MAX_CHARS long (else cut, as JSON text)."""
    safe = _json_safe(value, ECHO_MAX_DEPTH)
    text = json.dumps(safe, ensure_ascii=False)
    if len(text) <= ECHO_MAX_CHARS:
        return safe
    return f"{text[:ECHO_MAX_CHARS]}... ({len(text)} characters)"


def _json_safe(value: Any, depth: int) -> Any:
    # Python's json module reads NaN and Infinity, and lone surrogates in strings; none of them
    # can be written back into a strict JSON response, so the echo names them instead.
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth == 0:
        return "..."
    if isinstance(value, Mapping):
        return {_json_safe(str(k), depth): _json_safe(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item, depth - 1) for item in value]
    return _json_safe(str(value), depth)


class DatabaseErrorMiddleware:
    """Answers database errors that are not the server's fault with a 4xx/503, not a 500.

    An exception that escapes the app makes uvicorn answer 500 and close the connection, so
    the client's next request on that keep-alive connection gets no answer at all. A response
    sent from here ends the request normally, and the connection stays open.
    """

    def __init__(self, app: ASGIApp, *, retry_after_s: int) -> None:
        self.app = app
        self._retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = StartTracking(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            response = None if tracked.started else self._answer(exc, scope["path"])
            if response is None:
                raise
            await response(scope, receive, send)

    def _answer(self, exc: Exception, path: str) -> Response | None:
        if is_database_unavailable(exc):
            log.warning("database_unavailable", path=path, error=describe(exc, max_chars=500))
            return JSONResponse(
                {"detail": "the database is unavailable; retry later"},
                status_code=503,
                headers={"Retry-After": self._retry_after},
            )
        if is_data_refused(exc):
            # A value of the request that the database will not store (NUL in JSONB, a number
            # out of range): the client's to fix. The message names the problem, never the SQL.
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            log.info("database_refused_value", path=path, error=describe(exc, max_chars=500))
            refused = {"type": "database_refused_value", "loc": ["body"], "msg": _echo(reason)}
            return JSONResponse({"detail": [refused]}, status_code=422)
        return None
