"""txoutbox's relay, set up as its README shows, for scripts/bench.py (the peers' environment).

    python txoutbox_relay.py setup DSN [--broker B --url URL --topic T ...]
    python txoutbox_relay.py relay DSN --broker arq|kafka|rabbitmq|nats --url URL [--exchange E]

`setup` creates its table with the library's own DDL (`PostgresStorage.create_schema`, which is
`schema_sql()` for a migration) in a schema of its own, with the LISTEN/NOTIFY trigger its README
shows; given a broker, what it needs to take --topic (clients.create). `relay` runs
`Relay(storage, publish).run(handle_signals=True)` with the default `RelayConfig`, woken by
`storage.listen(relay.wake)`; `publish` is the one function its README asks for, sending to the
row's topic: aiokafka's `send_and_wait`; arq's `enqueue_job`; aio-pika's `exchange.publish` to
--exchange (the topic as the routing key) on a channel with publisher confirms, which returns once
the broker confirmed; nats-py's JetStream `publish`, which returns with the PubAck. SIGTERM
finishes the round.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import nats
from aiokafka import AIOKafkaProducer
from clients import DELIVER, KAFKA_PRODUCER, KEY, MSG_ID, arq_pool, create
from txoutbox import OutboxMessage, Relay
from txoutbox.adapters.postgres import PostgresStorage

SCHEMA = "peer_txoutbox"
CHANNEL = "peer_txoutbox"

Publish = Callable[[OutboxMessage], Awaitable[None]]
Close = Callable[[], Awaitable[Any]]


def storage(pool: Any) -> Any:
    return PostgresStorage(pool, schema=SCHEMA, notify_channel=CHANNEL)


async def setup(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.dsn, min_size=1, max_size=1)
    try:
        await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await storage(pool).create_schema()
    finally:
        await pool.close()
    if args.broker:
        await create(
            args.broker, args.url, args.topic, partitions=args.partitions, exchange=args.exchange
        )


async def to_kafka(args: argparse.Namespace) -> tuple[Publish, Close]:
    producer = AIOKafkaProducer(bootstrap_servers=args.url, **KAFKA_PRODUCER)
    await producer.start()

    async def publish(message: OutboxMessage) -> None:
        key = message.key.encode() if message.key else None
        await producer.send_and_wait(message.topic, message.payload, key=key)

    return publish, producer.stop


async def to_arq(args: argparse.Namespace) -> tuple[Publish, Close]:
    redis = await arq_pool(args.url)

    async def publish(message: OutboxMessage) -> None:
        await redis.enqueue_job(DELIVER, message.text(), _queue_name=message.topic)

    async def close() -> None:
        await redis.aclose()

    return publish, close


async def to_rabbitmq(args: argparse.Namespace) -> tuple[Publish, Close]:
    connection = await aio_pika.connect(args.url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(args.exchange)  # the bench declared it (setup)

    async def publish(message: OutboxMessage) -> None:
        body = aio_pika.Message(
            message.payload,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(message.id),
            headers={KEY: message.key} if message.key else {},
        )
        await exchange.publish(body, routing_key=message.topic)  # returns once confirmed

    return publish, connection.close


async def to_nats(args: argparse.Namespace) -> tuple[Publish, Close]:
    nc = await nats.connect(args.url)
    js = nc.jetstream()

    async def publish(message: OutboxMessage) -> None:
        headers = {MSG_ID: str(message.id)} | ({KEY: message.key} if message.key else {})
        await js.publish(message.topic, message.payload, headers=headers)  # awaits the PubAck

    return publish, nc.close


PUBLISHERS: dict[str, Callable[[argparse.Namespace], Awaitable[tuple[Publish, Close]]]] = {
    "arq": to_arq,
    "kafka": to_kafka,
    "rabbitmq": to_rabbitmq,
    "nats": to_nats,
}


async def relay(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.dsn)
    outbox = storage(pool)
    publish, close = await PUBLISHERS[args.broker](args)
    relay = Relay(outbox, publish)
    listener = await outbox.listen(relay.wake)
    try:
        await relay.run(handle_signals=True)
    finally:
        await listener.close()
        await close()
        await pool.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["setup", "relay"])
    parser.add_argument("dsn")
    parser.add_argument("--broker", choices=sorted(PUBLISHERS))
    parser.add_argument("--url", help="the broker: a redis://, amqp:// or nats:// URL, or Kafka's")
    parser.add_argument(
        "--topic", help="setup: the Kafka topic, RabbitMQ routing key or NATS subject to create"
    )
    parser.add_argument("--exchange", help="RabbitMQ: the exchange the relay publishes to")
    parser.add_argument("--partitions", type=int, default=1, help="setup: the Kafka topic's")
    args = parser.parse_args(argv)
    asyncio.run(setup(args) if args.command == "setup" else relay(args))


if __name__ == "__main__":
    main(sys.argv[1:])
