"""Errors decide behaviour: `retriable` tells the consumer whether to retry or dead-letter."""


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
    """`Type: message`, capped, for logs and for error columns."""
    # NUL cannot be stored in PostgreSQL text; error messages may quote arbitrary input.
    return f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")[:max_chars]
