"""Prometheus metrics. Names are documented in the README; keep them stable."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

OUTBOX_PUBLISHED = Counter("outbox_published_total", "Events the relay handed to the broker", ["topic"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures_total", "Publish attempts that failed or timed out", ["topic"]
)
OUTBOX_LEASES_LOST = Counter(
    "outbox_leases_lost_total", "Published rows another relay had claimed before this one marked them"
)
OUTBOX_DEAD_LETTERED = Counter(
    "outbox_dead_lettered_total", "Outbox rows the broker kept refusing, moved to dead letters", ["topic"]
)
OUTBOX_PUBLISH_DELAY = Histogram(
    "outbox_publish_delay_seconds",
    "From writing an outbox row to recording it published (commit, wake-up, claim, publish)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
OUTBOX_PENDING = Gauge("outbox_pending", "Outbox rows not yet published")
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row")
MESSAGES_CONSUMED = Counter(
    "messages_consumed_total", "Messages the worker finished with", ["type", "outcome"]
)
HANDLER_DURATION = Histogram(
    "handler_duration_seconds",
    "Time in a handler, failures included (the inbox bookkeeping around it excluded)",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MESSAGES_RETRIED = Counter(
    "messages_retried_total", "Handler failures scheduled for another attempt", ["type"]
)
MESSAGES_DEAD_LETTERED = Counter("messages_dead_lettered_total", "Messages dead-lettered", ["reason"])
MESSAGES_NOT_ADDRESSED = Counter(
    "messages_not_addressed_total", "Replays for another consumer, acknowledged without effect"
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Messages on a partition the worker has not finished yet", ["topic", "partition"]
)

RETENTION_DELETED = Counter(
    "retention_deleted_rows_total", "Rows the retention sweep deleted, past their retention", ["table"]
)
TABLE_SIZE = Gauge(
    "table_size_bytes", "A messaging table with its indexes and TOAST, after the last sweep", ["table"]
)
RETENTION_LAST_SWEEP = Gauge(
    "retention_last_sweep_timestamp_seconds", "When this process last finished a retention sweep"
)


def serve(port: int | None) -> None:
    """Expose /metrics on `port` for processes without an HTTP server of their own."""
    if port is not None:
        start_http_server(port)
