"""The seam between the outbox and a message broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from .envelope import Envelope


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to publish: the envelope's JSON exactly as stored, and what names it.

    The relay publishes the stored text without decoding it, so a row the relay cannot read
    still reaches the consumer, which dead-letters it with a reason instead of the relay
    stopping on it.
    """

    topic: str  # the contract's topic, before the environment's prefix
    key: str
    message_id: UUID
    type: str
    schema_version: int
    correlation_id: str
    body: str
    # Set on a replay: only the consumer of this name handles it, others acknowledge it unhandled.
    addressed_to: str | None = None

    @classmethod
    def of(cls, envelope: Envelope, *, topic: str, key: str) -> OutboundMessage:
        return cls(
            topic=topic,
            key=key,
            message_id=envelope.id,
            type=envelope.type,
            schema_version=envelope.schema_version,
            correlation_id=envelope.correlation_id,
            body=envelope.encode().decode(),
        )


class NotSent(Exception):
    """A message of a batch not handed to the broker: an earlier message of its key failed."""


class Publisher(Protocol):
    async def publish(self, message: OutboundMessage) -> None:
        """Hand the message to the broker; return only once the broker has accepted it."""

    async def publish_batch(
        self, messages: Sequence[OutboundMessage], *, timeout_s: float
    ) -> list[BaseException | None]:
        """Hand the messages to the broker together, in their order, without a round trip each.

        Returns, per message, None once the broker has accepted it, else its error (TimeoutError
        for one not accepted within `timeout_s`). A message after a failed one of the same topic and
        key may have been accepted too: the caller decides what to make of it.
        """

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    async def close(self) -> None: ...
