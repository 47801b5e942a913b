"""The broker clients both peer relays publish with, as close to our service's as their APIs allow.

arq: an `ArqRedis` pool with a JSON job serializer (arq pickles by default; our service and its
worker use JSON), enqueueing the job our worker runs (`deliver`, the envelope as its one argument).
Kafka: the topic is created with our service's partition count (neither peer creates topics), and
the producers use `acks="all"` as ours does, without the idempotent producer (tansu has none).
"""

from __future__ import annotations

import json
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from arq.connections import ArqRedis, RedisSettings, create_pool

DELIVER = "deliver"  # our worker's job function
KAFKA_PRODUCER = {"acks": "all", "enable_idempotence": False}


def _serialize(job: dict[str, Any]) -> bytes:
    return json.dumps(job, separators=(",", ":")).encode()


async def arq_pool(url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(url), job_serializer=_serialize)


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
