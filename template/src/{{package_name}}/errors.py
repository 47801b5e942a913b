"""Errors decide behaviour: `retriable` tells the consumer whether to retry or dead-letter."""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLSTATE class 22 (data exception): the database refuses these values (NUL in text or JSONB,
# numbers out of range, bad encodings), and it will refuse them again however often we retry.
_DATA_EXCEPTION_CLASS = "22"
# The server cannot serve us now, whatever we send: connection exceptions (class 08), too many
# connections, and a server shutting down or starting up.
_UNAVAILABLE_CLASS = "08"
_UNAVAILABLE_CODES = frozenset({"53300", "57P01", "57P02", "57P03"})
# hide_parameters keeps values out of SQLAlchemy's text, not out of the driver's: asyncpg quotes
# the start of a value it could not encode ("invalid input for query argument $1: 'v…' (why)").
_ARGUMENT_VALUE = re.compile(r"(invalid input for query argument \$\d+): ([^\n]*)")


class ServiceError(Exception):
    """Base of this service's errors."""

    retriable: bool = True


class PermanentError(ServiceError):
    """Raise from a handler when retrying cannot help (bad data, a violated rule).

    The message is dead-lettered at once, without further attempts.
    """

    retriable = False


class RetriableError(ServiceError):
    """Raise from a handler for a failure that may pass (a dependency is down, a lock timed out)."""


class RejectedMessage(PermanentError):
    """A message that is not a valid envelope of a known contract; carries the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class ConfigurationError(Exception):
    """Settings or wiring that cannot work; raised at start-up, never at run time."""


def describe(exc: BaseException, *, max_chars: int = 2000) -> str:
    """`Type: message`, capped, for logs and for error columns; without SQL parameter values."""
    text = _ARGUMENT_VALUE.sub(_hide_value, f"{type(exc).__name__}: {exc}")
    # NUL cannot be stored in PostgreSQL text; error messages may quote arbitrary input.
    return text.replace("\x00", "\\x00")[:max_chars]


def _hide_value(match: re.Match[str]) -> str:
    rest = match.group(2)
    reason = rest[_opening_of_last_group(rest) :] if rest.endswith(")") else ""
    return f"{match.group(1)}: (value hidden){' ' + reason if reason else ''}"


def _opening_of_last_group(text: str) -> int:
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return len(text)


def is_retriable(exc: BaseException) -> bool:
    """Whether another attempt could succeed: the error's `retriable`, else what the database says."""
    if is_data_refused(exc):
        return False
    return bool(getattr(exc, "retriable", True))


def is_data_refused(exc: BaseException) -> bool:
    """Whether the database refused a value itself (SQLSTATE class 22), not the statement or the link."""
    return sqlstate(exc)[:2] == _DATA_EXCEPTION_CLASS


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "the database cannot be reached now" rather than "this request is wrong"."""
    if isinstance(exc, PoolTimeoutError | OSError):
        # No pooled connection came free in time; or connecting failed (refused, unreachable,
        # timed out: asyncpg raises these as they are, unwrapped).
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    return code[:2] == _UNAVAILABLE_CLASS or code in _UNAVAILABLE_CODES


def sqlstate(exc: BaseException) -> str:
    """The PostgreSQL SQLSTATE code of a database error, or "" when there is none."""
    # SQLAlchemy wraps the driver's error in `orig`; errors raised while connecting come unwrapped.
    source = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(source, "sqlstate", None)
    return code if isinstance(code, str) else ""
