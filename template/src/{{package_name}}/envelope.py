"""The message envelope every event travels in, and the base class of event contracts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Contract(BaseModel):
    """One event contract at one schema version; its fields are the envelope's payload."""

    # NaN and infinity have no JSON form: refuse them when the event is built, not at the consumer.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    EVENT_TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    TOPIC: ClassVar[str]
    KEY_FIELD: ClassVar[str]

    # Not `key()`: a contract may well have a field called `key`.
    def ordering_key(self) -> str:
        """The value of the key field: events with the same one are published in commit order."""
        return str(getattr(self, self.KEY_FIELD))


class Envelope(BaseModel):
    """What goes on the wire: metadata plus the contract's payload, as JSON."""

    # Unknown envelope fields are ignored so that producers can add metadata without
    # breaking older consumers; the payload itself is validated strictly by its contract.
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    type: str = Field(min_length=1)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    correlation_id: str
    payload: dict[str, Any]

    @classmethod
    def wrap(cls, event: Contract, *, correlation_id: str) -> Self:
        return cls(
            id=uuid4(),
            type=event.EVENT_TYPE,
            schema_version=event.SCHEMA_VERSION,
            occurred_at=datetime.now(UTC),
            correlation_id=correlation_id,
            payload=event.model_dump(mode="json"),
        )

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> Self:
        return cls.model_validate_json(raw)
