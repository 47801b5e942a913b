"""The message envelope every event travels in, and the base class of event contracts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


class Contract(BaseModel):
    """One event contract at one schema version; its fields are the envelope's payload."""

    # NaN and infinity have no JSON form: refuse them when the event is built, not at the consumer.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    EVENT_TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    TOPIC: ClassVar[str]
    KEY_FIELD: ClassVar[str]

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        # Refused here, where the error names the field, rather than as a failed INSERT later:
        # a lone surrogate has no UTF-8 (or JSON) form at all, and the key is also stored as
        # text, which cannot hold NUL. (The envelope keeps NUL elsewhere: JSON escapes it.)
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, str):
                valid_unicode(item)
                if info.field_name == cls.KEY_FIELD:
                    without_nul(item)
        return value

    # Not `key()`: a contract may well have a field called `key`.
    def ordering_key(self) -> str:
        """The value of the key field: events with the same one are published in commit order."""
        return str(getattr(self, self.KEY_FIELD))


def valid_unicode(value: str) -> str:
    """`value`, if it can be encoded: no lone surrogate (which JSON's \\ud800 escapes can carry)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "string_surrogate", "String must not contain a lone surrogate (\\ud800-\\udfff)"
        ) from None
    return value


def without_nul(value: str) -> str:
    """`value`, if PostgreSQL can store it as text: no NUL character."""
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "String must not contain NUL (\\u0000)")
    return value


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
