"""The schema, as SQLAlchemy Core tables. The migrations create exactly this (a test compares them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# Events waiting to be published, written in the same transaction as the change they describe.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("message_id", Uuid, nullable=False),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    # The exact JSON that will be published (text, not JSONB: JSONB refuses "\u0000" in strings).
    Column("envelope", Text, nullable=False),
    # Copied from the envelope so that the relay can log and route a row without decoding it.
    Column("correlation_id", Text, nullable=False, server_default=text("''")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Not published before this time: later than created_at only for delayed redeliveries.
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    # A replay is meant for the consumer that dead-lettered it: any other consumer of the topic
    # acknowledges it without effect. NULL for ordinary events (migration 0004).
    Column("addressed_to", Text),
    # Written behind a row of its key that the broker refused and that waits to be tried again:
    # the claim does not walk such rows, however many pile up, until that row is dealt with.
    Column("held", Boolean, nullable=False, server_default=text("false")),
    # Partial indexes keep the relay's work proportional to what it can publish, not to history
    # or to what waits behind a failing key (migration 0006).
    Index("ix_outbox_ready", "id", postgresql_where=text("published_at IS NULL AND NOT held")),
    Index("ix_outbox_held", "topic", "key", "id", postgresql_where=text("held")),
    # A message may be queued again once published (a delayed redelivery), never twice at once.
    Index(
        "uq_outbox_pending_message",
        "message_id",
        unique=True,
        postgresql_where=text("published_at IS NULL"),
    ),
    # What the claim checks per key: its leased rows, and its rows not due yet (few of each; a
    # published row is neither, see migration 0003).
    Index(
        "ix_outbox_leased",
        "topic",
        "key",
        postgresql_where=text("lease_expires_at IS NOT NULL"),
    ),
    Index(
        "ix_outbox_deferred",
        "topic",
        "key",
        "id",
        postgresql_where=text("available_at > created_at"),
    ),
    # What the retention sweep deletes, oldest first (retention.py); likewise ix_inbox_processed_at.
    Index(
        "ix_outbox_published_at",
        "published_at",
        postgresql_where=text("published_at IS NOT NULL"),
    ),
)

# One row per (consumer, message): delivery attempts, and whether the effect was committed.
inbox = Table(
    "inbox",
    metadata,
    Column("consumer", Text, nullable=False),
    Column("message_id", Uuid, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("processed_at", DateTime(timezone=True)),
    Column("last_error", Text),
    PrimaryKeyConstraint("consumer", "message_id", name="pk_inbox"),
    Index(
        "ix_inbox_processed_at",
        "processed_at",
        postgresql_where=text("processed_at IS NOT NULL"),
    ),
)

# Messages that will not be retried again, kept whole so an operator can inspect and replay them.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("consumer", Text, nullable=False),
    Column("message_id", Uuid),
    Column("type", Text),
    Column("schema_version", Integer),
    Column("topic", Text, nullable=False),
    Column("key", Text),
    Column("raw", LargeBinary, nullable=False),  # exactly as received, even if not text
    Column("reason", Text, nullable=False),
    Column("error_type", Text, nullable=False),
    Column("error_message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("source", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("dead_lettered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_at", DateTime(timezone=True)),
    # The operator's audit trail (migration 0004). replay_count is how often this consumer's copy
    # of the message was replayed: a message dead-lettered again starts a new row that carries it.
    Column("replayed_by", Text),
    Column("replay_count", Integer, nullable=False, server_default=text("0")),
    Column("discarded_at", DateTime(timezone=True)),
    Column("discarded_by", Text),
    # A redelivered message is dead-lettered once, until an operator replays it.
    Index(
        "uq_dead_letters_pending",
        "consumer",
        "message_id",
        unique=True,
        postgresql_where=text("replayed_at IS NULL AND message_id IS NOT NULL"),
    ),
    # What the retention sweep deletes, oldest first (retention.py).
    Index("ix_dead_letters_replayed_at", "replayed_at", postgresql_where=text("replayed_at IS NOT NULL")),
    Index("ix_dead_letters_discarded_at", "discarded_at", postgresql_where=text("discarded_at IS NOT NULL")),
)

# The tables of the messaging machinery: their changes come from the template, in the messaging
# migration history (schema.py); the service's own history compares every other table.
MESSAGING_TABLES = frozenset(table.name for table in (outbox, inbox, dead_letters))

# --- Example domain: replace with your own tables (and a migration for them). ---

example_records = Table(
    "example_records",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("contract", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

example_effects = Table(
    "example_effects",
    metadata,
    # Deliberately no unique constraint on message_id: the inbox alone must prevent double effects.
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("message_id", Uuid, nullable=False),
    Column("contract", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
