"""Names shared between components and with the database schema."""

# Channel the outbox trigger notifies on every insert (see the first migration).
OUTBOX_CHANNEL = "outbox_pending"

# Transaction-scoped advisory lock that serialises relay claims across replicas.
RELAY_CLAIM_LOCK_ID = 7_316_504_208
# Session-scoped advisory lock held by the one process sweeping old rows (retention.py).
SWEEP_LOCK_ID = 7_316_504_209

# Dead-letter reasons.
REASON_MALFORMED = "malformed_message"
REASON_UNKNOWN_CONTRACT = "unknown_contract"
REASON_INVALID_PAYLOAD = "invalid_payload"
REASON_PERMANENT_ERROR = "permanent_error"
REASON_ATTEMPTS_EXHAUSTED = "attempts_exhausted"
# An outbox row the broker refused RELAY_MAX_ATTEMPTS times while it accepted others.
REASON_UNPUBLISHABLE = "unpublishable"
# The `consumer` of dead letters the relay wrote: they never reached the broker.
RELAY_DEAD_LETTER_CONSUMER = "relay"

# Past SHUTDOWN_TIMEOUT_S, how long a process may take to cancel what is left and exit.
SHUTDOWN_MARGIN_S = 10.0
# At the end of a shutdown, closing connections to a database that may no longer answer.
DB_CLOSE_TIMEOUT_S = 3.0

CORRELATION_HEADER = "x-correlation-id"
