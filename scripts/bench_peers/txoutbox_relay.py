"""txoutbox's relay, set up as its README shows, for scripts/bench.py (the peers' environment).

    python txoutbox_relay.py setup DSN [--bootstrap HOST:PORT --topic T --partitions N]
    python txoutbox_relay.py relay DSN --broker arq|kafka --url URL

`setup` creates its table with the library's own DDL (`PostgresStorage.create_schema`, which is
`schema_sql()` for a migration) in a schema of its own, with the LISTEN/NOTIFY trigger its README
shows. `relay` runs `Relay(storage, publish).run(handle_signals=True)` with the default
`RelayConfig`, woken by `storage.listen(relay.wake)`; `publish` is the one function its README
asks for: aiokafka's `send_and_wait`, or arq's `enqueue_job`. SIGTERM finishes the round.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from clients import DELIVER, KAFKA_PRODUCER, arq_pool, create_topic
from txoutbox import OutboxMessage, Relay
from txoutbox.adapters.postgres import PostgresStorage

SCHEMA = "peer_txoutbox"
CHANNEL = "peer_txoutbox"

Publish = Callable[[OutboxMessage], Awaitable[None]]


def storage(pool: Any) -> Any:
    return PostgresStorage(pool, schema=SCHEMA, notify_channel=CHANNEL)


async def setup(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.dsn, min_size=1, max_size=1)
    try:
        await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await storage(pool).create_schema()
    finally:
        await pool.close()
    if args.bootstrap:
        await create_topic(args.bootstrap, args.topic, args.partitions)


async def publisher(broker: str, url: str) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    if broker == "kafka":
        producer = AIOKafkaProducer(bootstrap_servers=url, **KAFKA_PRODUCER)
        await producer.start()

        async def to_kafka(message: OutboxMessage) -> None:
            key = message.key.encode() if message.key else None
            await producer.send_and_wait(message.topic, message.payload, key=key)

        return to_kafka, producer.stop
    redis = await arq_pool(url)

    async def to_arq(message: OutboxMessage) -> None:
        await redis.enqueue_job(DELIVER, message.text(), _queue_name=message.topic)

    async def close() -> None:
        await redis.aclose()

    return to_arq, close


async def relay(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.dsn)
    outbox = storage(pool)
    publish, close = await publisher(args.broker, args.url)
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
    parser.add_argument("--broker", choices=["arq", "kafka"])
    parser.add_argument("--url", help="the broker: a redis:// URL or Kafka's bootstrap servers")
    parser.add_argument("--bootstrap", help="setup: create --topic on this Kafka")
    parser.add_argument("--topic")
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(setup(args) if args.command == "setup" else relay(args))


if __name__ == "__main__":
    main(sys.argv[1:])
