"""faststream-outbox's relay, set up as its docs show, for scripts/bench.py (peers' environment).

    python faststream_outbox_relay.py setup DSN [--bootstrap HOST:PORT --topic T --partitions N]
    python faststream_outbox_relay.py relay DSN --broker arq|kafka --url URL --topic T

`setup` creates the table `make_outbox_table` declares (what its Alembic autogenerate migration
creates: `metadata.create_all` of the same metadata) in a schema of its own, and applies the
`outbox_autovacuum_ddl` its performance page recommends. `relay` runs a `FastStream` app whose
outbox subscriber relays each row (docs: "Relay to a foreign broker", standalone shape):
  - Kafka: a `KafkaBroker` publisher stacked on the subscriber; the handler returns the body as a
    `KafkaResponse` keyed by the row's `key` header (the outbox has no key column);
  - arq: FastStream has no arq broker, so the handler enqueues the job with arq's client (the
    standalone pattern, the table as the queue, with a handler that does the work).
The subscriber's knobs are its docs' high-throughput example (8 workers, 50 rows a fetch, 0.1 to
1 s polling; LISTEN/NOTIFY wakes it) with the batched terminal flush its performance page
recommends for idempotent relays. FastStream logs every message at INFO; WARNING here, as our
relay runs with production logging.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from clients import DELIVER, KAFKA_PRODUCER, arq_pool, create_topic
from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaResponse
from faststream_outbox import OutboxBroker, make_outbox_table, outbox_autovacuum_ddl
from faststream_outbox.annotations import OutboxMessage
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine

SCHEMA = "peer_faststream_outbox"
TABLE = "outbox"
QUEUE = "bench"  # the outbox queue the rows are written to
KEY = "key"  # the header the rows carry their ordering key in
WORKERS = 8
SUBSCRIBER = {
    "max_workers": WORKERS,
    "fetch_batch_size": 50,
    "min_fetch_interval": 0.1,
    "max_fetch_interval": 1.0,
    "lease_ttl_seconds": 120.0,
    "terminal_flush_batch_size": 50,
}


def engine(dsn: str) -> Any:
    # Each worker holds a connection, and the fetch loop one more (docs: connection budget).
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    return create_async_engine(url, pool_size=WORKERS + 2)


def outbox_table() -> Any:
    return make_outbox_table(MetaData(schema=SCHEMA), table_name=TABLE)


async def setup(args: argparse.Namespace) -> None:
    table = outbox_table()
    db = engine(args.dsn)
    try:
        async with db.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(text(outbox_autovacuum_ddl(TABLE, schema=SCHEMA)))
    finally:
        await db.dispose()
    if args.bootstrap:
        await create_topic(args.bootstrap, args.topic, args.partitions)


async def relay(args: argparse.Namespace) -> None:
    db = engine(args.dsn)
    broker_outbox = OutboxBroker(db, outbox_table=outbox_table(), log_level=logging.DEBUG)
    subscriber = broker_outbox.subscriber(QUEUE, **SUBSCRIBER)
    if args.broker == "kafka":
        broker_kafka = KafkaBroker(args.url, log_level=logging.DEBUG, **KAFKA_PRODUCER)
        publisher_kafka = broker_kafka.publisher(args.topic)

        async def to_kafka(body: dict[str, Any], msg: OutboxMessage) -> Any:
            return KafkaResponse(body, key=msg.headers[KEY].encode())

        async def stop() -> None:
            await broker_kafka.stop()

        publisher_kafka(subscriber(to_kafka))
        app = FastStream(broker_outbox, on_startup=[broker_kafka.connect], after_shutdown=[stop])
    else:
        arq: list[Any] = []

        async def connect() -> None:
            arq.append(await arq_pool(args.url))

        async def close() -> None:
            await arq[0].aclose()

        async def to_arq(body: dict[str, Any]) -> None:
            await arq[0].enqueue_job(DELIVER, json.dumps(body), _queue_name=args.topic)

        subscriber(to_arq)
        app = FastStream(broker_outbox, on_startup=[connect], after_shutdown=[close])
    try:
        await app.run()
    finally:
        await db.dispose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["setup", "relay"])
    parser.add_argument("dsn")
    parser.add_argument("--broker", choices=["arq", "kafka"])
    parser.add_argument("--url", help="the broker: a redis:// URL or Kafka's bootstrap servers")
    parser.add_argument("--bootstrap", help="setup: create --topic on this Kafka")
    parser.add_argument("--topic", help="the Kafka topic or arq queue the relay publishes to")
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(setup(args) if args.command == "setup" else relay(args))


if __name__ == "__main__":
    main(sys.argv[1:])
