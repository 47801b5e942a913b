"""faststream-outbox's relay, set up as its docs show, for scripts/bench.py (peers' environment).

    python faststream_outbox_relay.py setup DSN [--broker B --url URL --topic T ...]
    python faststream_outbox_relay.py relay DSN --broker arq|kafka|rabbitmq|nats --url URL
        --topic T [--exchange E]

`setup` creates the table `make_outbox_table` declares (what its Alembic autogenerate migration
creates: `metadata.create_all` of the same metadata) in a schema of its own, and applies the
`outbox_autovacuum_ddl` its performance page recommends; given a broker, what it needs to take
--topic (clients.create). `relay` runs a `FastStream` app whose outbox subscriber relays each row
(docs: "Relay to a foreign broker", standalone shape: the foreign broker connected on start-up):
  - Kafka, RabbitMQ, NATS: a publisher of FastStream's own broker for it (`KafkaBroker`,
    `RabbitBroker`, `NatsBroker`) stacked on the subscriber; the handler returns the body as that
    broker's response, with the row's `key` header as the Kafka key or a header of that name (the
    outbox has no key column). RabbitMQ: to exchange --exchange with --topic as the routing key,
    persistent, on FastStream's default channel (publisher confirms on). NATS: a JetStream
    publisher (its `stream`, so each publish awaits the PubAck), the row's id as `Nats-Msg-Id`;
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
from collections.abc import Callable
from typing import Any

from clients import DELIVER, KAFKA_PRODUCER, KEY, MSG_ID, arq_pool, create, stream_name
from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaResponse
from faststream.nats import JStream, NatsBroker, NatsResponse
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitResponse
from faststream_outbox import OutboxBroker, make_outbox_table, outbox_autovacuum_ddl
from faststream_outbox.annotations import OutboxMessage
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine

SCHEMA = "peer_faststream_outbox"
TABLE = "outbox"
QUEUE = "bench"  # the outbox queue the rows are written to
WORKERS = 8
SUBSCRIBER = {
    "max_workers": WORKERS,
    "fetch_batch_size": 50,
    "min_fetch_interval": 0.1,
    "max_fetch_interval": 1.0,
    "lease_ttl_seconds": 120.0,
    "terminal_flush_batch_size": 50,
}

# The foreign broker, its publisher for --topic, and the response a handler returns for a row.
Respond = Callable[[dict[str, Any], OutboxMessage], Any]
Foreign = tuple[Any, Any, Respond]


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
    if args.broker:
        await create(
            args.broker, args.url, args.topic, partitions=args.partitions, exchange=args.exchange
        )


def kafka(args: argparse.Namespace) -> Foreign:
    broker = KafkaBroker(args.url, log_level=logging.DEBUG, **KAFKA_PRODUCER)

    def respond(body: dict[str, Any], msg: OutboxMessage) -> Any:
        return KafkaResponse(body, key=msg.headers[KEY].encode())

    return broker, broker.publisher(args.topic), respond


def rabbitmq(args: argparse.Namespace) -> Foreign:
    broker = RabbitBroker(args.url, log_level=logging.DEBUG)
    # The bench declared it (setup): publishing only checks that it exists.
    exchange = RabbitExchange(args.exchange, type=ExchangeType.TOPIC, durable=True)
    publisher = broker.publisher(exchange=exchange, routing_key=args.topic, persist=True)

    def respond(body: dict[str, Any], msg: OutboxMessage) -> Any:
        return RabbitResponse(body, headers={KEY: msg.headers[KEY]}, message_id=msg.message_id)

    return broker, publisher, respond


def nats(args: argparse.Namespace) -> Foreign:
    broker = NatsBroker(args.url, log_level=logging.DEBUG)
    # A stream makes it a JetStream publisher; declared by the bench (setup), not at start-up.
    stream = JStream(stream_name(args.topic), declare=False)
    publisher = broker.publisher(args.topic, stream=stream)

    def respond(body: dict[str, Any], msg: OutboxMessage) -> Any:
        return NatsResponse(body, headers={KEY: msg.headers[KEY], MSG_ID: msg.message_id})

    return broker, publisher, respond


FOREIGN: dict[str, Callable[[argparse.Namespace], Foreign]] = {
    "kafka": kafka,
    "rabbitmq": rabbitmq,
    "nats": nats,
}


def to_foreign(args: argparse.Namespace, broker_outbox: OutboxBroker, subscriber: Any) -> Any:
    """The app relaying each row through FastStream's broker for --broker."""
    broker, publisher, respond = FOREIGN[args.broker](args)

    async def relay_row(body: dict[str, Any], msg: OutboxMessage) -> Any:
        return respond(body, msg)

    async def stop() -> None:
        await broker.stop()

    publisher(subscriber(relay_row))
    return FastStream(broker_outbox, on_startup=[broker.connect], after_shutdown=[stop])


def to_arq(args: argparse.Namespace, broker_outbox: OutboxBroker, subscriber: Any) -> Any:
    arq: list[Any] = []

    async def connect() -> None:
        arq.append(await arq_pool(args.url))

    async def close() -> None:
        await arq[0].aclose()

    async def enqueue(body: dict[str, Any]) -> None:
        await arq[0].enqueue_job(DELIVER, json.dumps(body), _queue_name=args.topic)

    subscriber(enqueue)
    return FastStream(broker_outbox, on_startup=[connect], after_shutdown=[close])


async def relay(args: argparse.Namespace) -> None:
    db = engine(args.dsn)
    broker_outbox = OutboxBroker(db, outbox_table=outbox_table(), log_level=logging.DEBUG)
    subscriber = broker_outbox.subscriber(QUEUE, **SUBSCRIBER)
    app = (to_arq if args.broker == "arq" else to_foreign)(args, broker_outbox, subscriber)
    try:
        await app.run()
    finally:
        await db.dispose()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["setup", "relay"])
    parser.add_argument("dsn")
    parser.add_argument("--broker", choices=["arq", "kafka", "rabbitmq", "nats"])
    parser.add_argument("--url", help="the broker: a redis://, amqp:// or nats:// URL, or Kafka's")
    parser.add_argument(
        "--topic", help="the Kafka topic, arq queue, RabbitMQ routing key or NATS subject"
    )
    parser.add_argument("--exchange", help="RabbitMQ: the exchange the relay publishes to")
    parser.add_argument("--partitions", type=int, default=1, help="setup: the Kafka topic's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(setup(args) if args.command == "setup" else relay(args))


if __name__ == "__main__":
    main(sys.argv[1:])
