"""The broker clients both peer relays publish with, as close to our service's as their APIs allow.

arq: an `ArqRedis` pool with a JSON job serializer (arq pickles by default; our service and its
worker use JSON), enqueueing the job our worker runs (`deliver`, the envelope as its one argument).
Kafka: the topic is created with our service's partition count (neither peer creates topics), and
the producers use `acks="all"` as ours does, without the idempotent producer (tansu has none).
RabbitMQ: a durable topic exchange and a durable quorum queue bound to it by the routing key, the
shape of our service's; messages persistent, published on a channel with publisher confirms.
NATS: a JetStream stream for the subject, configured as our service's streams are (file storage,
limits retention, the same age and duplicate window); publishes await the PubAck, with the row's
id as `Nats-Msg-Id` (ours sends its message id there: JetStream's duplicate check runs for both).
`create` makes what the broker needs before a relay publishes: neither peer declares it (their
relays publish only, as ours does to what exists).
"""

from __future__ import annotations

import json
import re
from typing import Any

import aio_pika
import nats
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from arq.connections import ArqRedis, RedisSettings, create_pool
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

DELIVER = "deliver"  # our worker's job function
KEY = "key"  # the header a message carries its ordering key in, as ours
KAFKA_PRODUCER = {"acks": "all", "enable_idempotence": False}
QUORUM = {"x-queue-type": "quorum"}  # our service's queues' type
MSG_ID = "Nats-Msg-Id"
STREAM_MAX_AGE_S = 7 * 24 * 3600.0  # our service's NATS_STREAM_MAX_AGE_S default
DUPLICATE_WINDOW_S = 120.0  # our service's NATS_DUPLICATE_WINDOW_S default
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")  # what a stream name may not hold


def _serialize(job: dict[str, Any]) -> bytes:
    return json.dumps(job, separators=(",", ":")).encode()


async def arq_pool(url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(url), job_serializer=_serialize)


def stream_name(subject: str) -> str:
    """The stream that stores `subject`: named after it, as our service names its streams."""
    return _NOT_IN_NAMES.sub("_", subject)


async def create(broker: str, url: str, topic: str, *, partitions: int, exchange: str) -> None:
    """What `broker` needs to take messages to `topic`: arq's queue needs nothing."""
    if broker == "kafka":
        await create_topic(url, topic, partitions)
    elif broker == "rabbitmq":
        await declare_queue(url, exchange, topic)
    elif broker == "nats":
        await add_stream(url, topic)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
        )
        for _, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"creating topic {topic!r}: error code {code}")
    finally:
        await admin.close()


async def declare_queue(url: str, exchange: str, routing_key: str) -> None:
    """The exchange, and the queue named after the routing key, bound to it by that key."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_exchange(
            exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(routing_key, durable=True, arguments=QUORUM)
        await queue.bind(declared, routing_key=routing_key)
    finally:
        await connection.close()


async def add_stream(url: str, subject: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(
                name=stream_name(subject),
                subjects=[subject],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=STREAM_MAX_AGE_S,
                duplicate_window=DUPLICATE_WINDOW_S,
            )
        )
    finally:
        await nc.close()
