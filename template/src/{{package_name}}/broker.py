"""The seam between the outbox and a message broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .envelope import Envelope


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    topic: str  # the contract's topic, before the environment's prefix
    key: str
    envelope: Envelope


class Publisher(Protocol):
    async def publish(self, message: OutboundMessage) -> None:
        """Hand the message to the broker; return only once the broker has accepted it."""

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    async def close(self) -> None: ...
