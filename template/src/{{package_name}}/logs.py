"""structlog set-up: JSON lines in production, readable console output in development.

Everything goes through the same renderer: structlog's own events, and the standard library's
records (uvicorn, aiokafka, asyncio, SQLAlchemy, `warnings`) and uncaught tracebacks, so that
a production log is one JSON object per line.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from uuid import uuid4

import structlog

from .settings import Settings

log = structlog.get_logger(__name__)


def configure_logging(settings: Settings) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.environment == "prod"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(settings.log_level, shared, renderer)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


class _StructlogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler this module installs; a second `configure_logging` replaces it."""


def _route_standard_logging(
    level: str, shared: list[structlog.types.Processor], renderer: structlog.types.Processor
) -> None:
    handler = _StructlogHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    # Only our own earlier handler goes: others (a test runner's capture) stay.
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    log.critical("unhandled_exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    log.critical(
        "unhandled_exception",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def new_correlation_id() -> str:
    return uuid4().hex


def current_correlation_id() -> str:
    """The correlation id bound to this task (by the HTTP middleware or the consumer), or a new one."""
    bound = structlog.contextvars.get_contextvars().get("correlation_id")
    return bound if isinstance(bound, str) else new_correlation_id()
