"""Benchmark: the relay against the raw publish rate of the same broker client, in one run.

    python scripts/bench.py --broker arq kafka nats rabbitmq --events 10000 --repeats 3
    (or: make bench)

For each broker it renders the default variant, starts private servers on free ports (PostgreSQL,
and Redis, tansu unproxied, a RabbitMQ node or nats-server with JetStream: never the machine's
shared ones), and measures, interleaved so that a busy machine slows every case alike:
  - raw sequential: the adapter's client publishes one message at a time, awaiting each (arq
    `enqueue_job`; aiokafka `send_and_wait`; aio-pika's publish, confirmed; nats-py's JetStream
    publish, with its PubAck);
  - raw pipelined: the same client with every message in flight at once (arq: `enqueue_job`'s
    writes pipelined; aiokafka: every `send`, then the acks together; aio-pika: every publish
    gathered, then the confirms; nats-py: every publish with its reply subject, then the PubAcks);
  - relay: the service's own `relay` processes (1 and 2) draining an outbox of --events rows over
    1,000 keys and over 10 keys. Its rate is rows / (last `published_at` - the commit that wrote
    them), both read from the database. Once more (1 relay, 1,000 keys) with --history published
    rows already in the table: the claim's cost must not grow with history;
  - peers: the relays of faststream-outbox and txoutbox (scripts/bench_peers, installed by the
    bench into an environment of its own), each case right after ours, on the same database and
    broker with the same rows, each to a topic, queue or stream of its own, awaiting the broker
    as ours does (Kafka acks="all", RabbitMQ publisher confirms, the JetStream PubAck): rows /
    (the last time the database recorded rows of theirs done - the commit), and the ratio ours /
    peer;
  - consumer: the service's `worker` processes (1 and 2) handling --events messages waiting on
    the broker: rows / (last inbox `processed_at` - first `first_seen_at`);
  - commit to effect: relay and worker running, rows committed one a transaction at 20 and 200 a
    second for --latency-s; p50/p95/p99 of inbox `processed_at` - outbox `created_at`;
  - API: `POST` of the round-trip contract's example route, 16 at a time, with the outbox write
    and, in the same process code, with `outbox.add` replaced by building the envelope alone.
Every case runs on queues/topics and a consumer group of its own (TOPIC_PREFIX, SERVICE_NAME).
Each figure is the median of --repeats runs with their range; each row names its ratio (to the
raw pipelined rate, 2 processes to 1, with history to without, with the outbox to without, our
relay to a peer's).
Prints Markdown tables per broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from chaos import (
    READY_TIMEOUT_S,
    REPO,
    ChaosError,
    Postgres,
    Redis,
    Tansu,
    body,
    free_port,
    round_trip_contract,
    run_cmd,
    sample,
    wait_until,
)
from conftest import VARIANTS, copy_template, render, subprocess_env, uv

VARIANT = {
    "arq": "arq-default",
    "kafka": "kafka-default",
    "rabbitmq": "rabbitmq-default",
    "nats": "nats-default",
}
# The brokers the peers' drivers (scripts/bench_peers) publish to.
PEER_BROKERS = ("arq", "kafka", "rabbitmq", "nats")
RELAY_CASES = ((1, 1000), (2, 1000), (1, 10), (2, 10))  # (relays, keys)
HISTORY_CASE = "relay x1, 1,000 keys, with history"
BACKLOG_CASE = "relay x1, 1,000 keys, behind a held-back backlog"
HELD_KEYS = 10
WORKER_CASES = (1, 2)
LATENCY_RATES = (20, 200)  # events a second
API_CASES = ("API with outbox", "API without outbox")
API_CONCURRENCY = 16
GROUPS = ["relay", "peers", "worker", "latency", "api"]
DRAIN_TIMEOUT_S = 600.0
SYNC_TIMEOUT_S = 900.0
PEERS_DIR = REPO / "scripts" / "bench_peers"
PEER_STOP_TIMEOUT_S = 60.0
# A realistic envelope: about 300 bytes of JSON.
PAYLOAD = '{"order_id": "%s", "customer": "c-%s", "amount_cents": 1999, "note": "%s"}'

# Runs with the rendered project's python: the raw client, no service code.
RAW_ARQ = """
import asyncio, json, sys, time
from uuid import uuid4
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import ConnectionPool

async def main(url, queue, n, mode, body):
    redis = ArqRedis(ConnectionPool.from_url(url))
    started = time.perf_counter()
    if mode == "sequential":
        for _ in range(n):
            await redis.enqueue_job("deliver", body, _job_id=uuid4().hex, _queue_name=queue)
    else:  # the writes enqueue_job makes, pipelined, without its check for a queued id
        for chunk in range(0, n, 1000):
            pipe = redis.pipeline(transaction=False)
            now_ms = int(time.time() * 1000)
            for _ in range(min(1000, n - chunk)):
                job_id = uuid4().hex
                job = serialize_job("deliver", (body,), {}, None, now_ms)
                pipe.psetex(job_key_prefix + job_id, 86_400_000, job)
                pipe.zadd(queue, {job_id: now_ms})
            await pipe.execute()
    elapsed = time.perf_counter() - started
    await redis.aclose(close_connection_pool=True)
    print(json.dumps({"rate": n / elapsed}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
"""
RAW_KAFKA = """
import asyncio, json, sys, time
from aiokafka import AIOKafkaProducer

async def main(servers, topic, n, mode, body):
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False)
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up", key=b"k")  # metadata, connections
    value = body.encode()
    started = time.perf_counter()
    if mode == "sequential":
        for i in range(n):
            await producer.send_and_wait(topic, value, key=str(i % 1000).encode())
    else:
        acks = [await producer.send(topic, value, key=str(i % 1000).encode()) for i in range(n)]
        await asyncio.gather(*acks)
    elapsed = time.perf_counter() - started
    await producer.stop()
    print(json.dumps({"rate": n / elapsed}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
"""
RAW_RABBITMQ = """
import asyncio, json, sys, time
from uuid import uuid4
import aio_pika

async def main(url, exchange_name, routing_key, n, mode, body):
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(exchange_name)  # the relay's, with its queues bound
    value = body.encode()

    def message(i):  # as the adapter's: persistent, an id, the key as a header
        return aio_pika.Message(
            value, content_type="application/json", message_id=uuid4().hex,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers={"key": str(i % 1000)},
        )

    await exchange.publish(message(0), routing_key)  # warm-up
    started = time.perf_counter()
    if mode == "sequential":
        for i in range(n):
            await exchange.publish(message(i), routing_key)  # returns once confirmed
    else:
        await asyncio.gather(*(exchange.publish(message(i), routing_key) for i in range(n)))
    elapsed = time.perf_counter() - started
    await connection.close()
    print(json.dumps({"rate": n / elapsed}))

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4]), sys.argv[5], sys.argv[6]))
"""
RAW_NATS = """
import asyncio, json, sys, time
from uuid import uuid4
import nats

async def main(url, subject, n, mode, body):
    nc = await nats.connect(url)
    js = nc.jetstream()
    value = body.encode()

    def headers(i):  # as the adapter's: the id JetStream dedupes by, the key
        return {"Nats-Msg-Id": uuid4().hex, "key": str(i % 1000)}

    await js.publish(subject, value, headers=headers(0))  # warm-up
    # The adapter's pipelining: each publish names a reply subject, the PubAcks come back there.
    inbox, loop, acks = nc.new_inbox(), asyncio.get_running_loop(), {}
    async def answered(msg):
        acks[msg.subject.rpartition(".")[2]].set_result(msg)
    await nc.subscribe(inbox + ".*", cb=answered)
    started = time.perf_counter()
    if mode == "sequential":
        for i in range(n):
            await js.publish(subject, value, headers=headers(i))  # returns with the PubAck
    else:
        for i in range(n):
            acks[str(i)] = loop.create_future()
            await nc.publish(subject, value, reply=f"{inbox}.{i}", headers=headers(i))
        answers = await asyncio.gather(*acks.values())
        refused = [m.data for m in answers if not m.data or b'"error"' in m.data]
        assert not refused, refused[:3]
    elapsed = time.perf_counter() - started
    await nc.close()
    print(json.dumps({"rate": n / elapsed}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
"""

# Commits one row a transaction at `rate` a second for `seconds`: the row's envelope from `insert`.
WRITER = """
import asyncio, json, sys, time
import asyncpg

async def main(url, rate, seconds, insert):
    conn = await asyncpg.connect(url)
    n = int(rate * seconds)
    started = time.perf_counter()
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await conn.execute(insert, i)
    await conn.close()
    print(json.dumps({"events": n}))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
"""
# Posts `n` bodies, `concurrency` at a time; the rate of 201s.
API_CLIENT = """
import asyncio, json, sys, time
import httpx

async def main(url, n, concurrency, bodies):
    bodies = json.loads(bodies)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        queue = list(range(n))
        async def post():
            while queue:
                i = queue.pop()
                answer = await http.post(sys.argv[5], json=bodies[i % len(bodies)])
                assert answer.status_code == 201, answer.text
        started = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(concurrency)))
        print(json.dumps({"rate": n / (time.perf_counter() - started)}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
"""
# The service's API with `outbox.add` building the envelope only: the same write, minus the outbox.
API_WITHOUT_OUTBOX = """
import sys
from importlib import import_module

package = sys.argv[1]
outbox = import_module(package + ".outbox")
envelope = import_module(package + ".envelope")
logs = import_module(package + ".logs")

async def add(session, event):
    return envelope.Envelope.wrap(event, correlation_id=logs.current_correlation_id())

outbox.add = add
sys.exit(import_module(package + ".cli").main(["api"]))
"""


@dataclass(frozen=True)
class Peer:
    """A peer library's relay: its driver in scripts/bench_peers, run with the peers' python.

    `insert` writes rows the way the library's producer does (`{rows}` is the rows' subquery `m`,
    `{key}` and `{envelope}` their key and envelope as ours, `{topic}` where they go); `pending`
    is a row its relay has not finished; `record` adds the trigger that timestamps rows done.
    """

    name: str
    driver: str
    table: str
    insert: str
    pending: str
    record: str


# The time a peer's relay finishes rows, as the database records it: neither library keeps a
# published-at column (faststream-outbox deletes a row once published, txoutbox sets its status
# to 'done'), so a statement trigger of the bench's own logs each such statement's clock and row
# count. One small insert a statement: the peers' acks are batched (50 rows at most).
PEER_DONE = """
CREATE SCHEMA IF NOT EXISTS peer_bench;
CREATE TABLE IF NOT EXISTS peer_bench.done (peer text NOT NULL, at timestamptz NOT NULL, n bigint);
CREATE OR REPLACE FUNCTION peer_bench.deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO peer_bench.done
        SELECT TG_ARGV[0], clock_timestamp(), count(*) FROM gone HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION peer_bench.marked_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO peer_bench.done SELECT TG_ARGV[0], clock_timestamp(), count(*) FROM changed
        WHERE status = 'done' HAVING count(*) > 0;
    RETURN NULL;
END $$;
"""
PEERS = (
    Peer(
        name="faststream-outbox",
        driver="faststream_outbox_relay.py",
        table="peer_faststream_outbox.outbox",
        # What `broker.publish(body, queue=..., headers={"key": ...}, session=...)` writes: the
        # JSON body, its content type and correlation id, and a NOTIFY per transaction and queue.
        insert=(
            "INSERT INTO peer_faststream_outbox.outbox (queue, payload, headers) "
            "SELECT 'bench', convert_to({envelope}, 'UTF8'), jsonb_build_object('content-type',"
            " 'application/json', 'correlation_id', m.id::text, 'key', {key}) FROM {rows}; "
            "SELECT pg_notify('outbox_outbox', 'bench')"
        ),
        pending="true",
        record=(
            "CREATE OR REPLACE TRIGGER bench_done AFTER DELETE ON peer_faststream_outbox.outbox"
            " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT"
            " EXECUTE FUNCTION peer_bench.deleted('faststream-outbox')"
        ),
    ),
    Peer(
        name="txoutbox",
        driver="txoutbox_relay.py",
        table="peer_txoutbox.outbox",
        # What `storage.insert(conn, topic, payload, key=...)` writes; its trigger NOTIFYs.
        insert=(
            "INSERT INTO peer_txoutbox.outbox (topic, key, payload) "
            "SELECT '{topic}', {key}, convert_to({envelope}, 'UTF8') FROM {rows}"
        ),
        pending="status <> 'done'",
        record=(
            "CREATE OR REPLACE TRIGGER bench_done AFTER UPDATE ON peer_txoutbox.outbox"
            " REFERENCING NEW TABLE AS changed FOR EACH STATEMENT"
            " EXECUTE FUNCTION peer_bench.marked_done('txoutbox')"
        ),
    ),
)


class Server(Protocol):
    """A broker's private server: what the service's settings and the raw client need of it."""

    address: str  # what a client connects to: a URL, or Kafka's bootstrap servers
    raw_client: str  # the raw client's script

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def settings(self) -> dict[str, str]: ...

    def raw_target(self, prefix: str, topic: str) -> list[str]:
        """The raw client's arguments before n, mode and body: where the service's relay sends."""
        ...


class ArqServer:
    """Redis, as arq's broker."""

    raw_client = RAW_ARQ

    def __init__(self, base: Path) -> None:
        self._redis = Redis(base)
        self.address = self._redis.url

    async def start(self) -> None:
        await self._redis.start()

    async def stop(self) -> None:
        self._redis.kill()

    def settings(self) -> dict[str, str]:
        return {"REDIS_URL": self.address}

    def raw_target(self, prefix: str, topic: str) -> list[str]:
        return [self.address, prefix + topic]


class KafkaServer:
    """tansu, unproxied; without the idempotent producer, which tansu does not have."""

    raw_client = RAW_KAFKA

    def __init__(self, base: Path) -> None:
        self._tansu = Tansu(base, proxied=False)
        self.address = self._tansu.bootstrap

    async def start(self) -> None:
        await self._tansu.start()

    async def stop(self) -> None:
        self._tansu.kill()

    def settings(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.address, "KAFKA_ENABLE_IDEMPOTENCE": "false"}

    def raw_target(self, prefix: str, topic: str) -> list[str]:
        return [self.address, prefix + topic]


class NatsServer:
    """nats-server with JetStream, storing in the run directory."""

    raw_client = RAW_NATS

    def __init__(self, base: Path) -> None:
        self._port = free_port()
        self._dir = base / "nats"
        self._log = base / "logs" / "nats.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.address = f"nats://127.0.0.1:{self._port}"

    async def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                "/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(self._port),
                "-js", "-sd", str(self._dir),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        await wait_until("nats-server", lambda: listening(self._port), READY_TIMEOUT_S)

    async def stop(self) -> None:
        await stop_process(self._proc)

    def settings(self) -> dict[str, str]:
        return {"NATS_URL": self.address}

    def raw_target(self, prefix: str, topic: str) -> list[str]:
        return [self.address, prefix + topic]  # the subject, which the topic's stream stores


class RabbitServer:
    """A RabbitMQ node of its own: its name, ports, data, logs, Erlang cookie and no plugins.

    Never the machine's node (rabbit@localhost on 5672): it only shares epmd, where it registers
    its own name. The server script under /usr/lib/rabbitmq/bin, not /usr/sbin's wrapper, which
    as root switches to the rabbitmq user and that node's home (and cookie).
    """

    raw_client = RAW_RABBITMQ
    EXCHANGE = "events"
    BIN = Path("/usr/lib/rabbitmq/bin")

    def __init__(self, base: Path) -> None:
        self._port = free_port()
        self._home = base / "rabbitmq"
        self._log = base / "logs" / "rabbitmq.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.node = f"bench-{self._port}@localhost"
        self.address = f"amqp://guest:guest@127.0.0.1:{self._port}/"

    def _env(self) -> dict[str, str]:
        home = self._home
        return {
            **subprocess_env(),
            "HOME": str(home),  # its .erlang.cookie, for the node and rabbitmqctl alike
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self._port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            # Empty files instead of /etc/rabbitmq's, which name the machine's node.
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        }

    async def start(self) -> None:
        self._home.mkdir()
        for empty in ("enabled_plugins", "rabbitmq-env.conf", "rabbitmq.conf"):
            (self._home / empty).touch()
        cookie = self._home / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex())
        cookie.chmod(0o600)
        env = self._env()
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                str(self.BIN / "rabbitmq-server"), cwd=self._home, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        await wait_until("rabbitmq-server", self._booted, READY_TIMEOUT_S)

    async def _booted(self) -> bool:
        if self._proc is not None and self._proc.returncode is not None:
            raise ChaosError(f"rabbitmq-server exited {self._proc.returncode}: see {self._log}")
        try:  # fails at once while the node is not registered yet
            await self._ctl("await_startup", "--timeout", "10")
        except ChaosError:
            return False
        return True

    async def _ctl(self, *args: str) -> str:
        ctl = [str(self.BIN / "rabbitmqctl"), "-n", self.node, *args]
        return await run_cmd(ctl, cwd=self._home, env=self._env(), timeout_s=60)

    async def stop(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        try:
            await self._ctl("stop")
        except ChaosError as exc:
            print(f"bench: stopping RabbitMQ node {self.node}: {exc}", file=sys.stderr)
        await stop_process(self._proc)

    def settings(self) -> dict[str, str]:
        return {"RABBITMQ_URL": self.address, "RABBITMQ_EXCHANGE": self.EXCHANGE}

    def raw_target(self, prefix: str, topic: str) -> list[str]:
        return [self.address, prefix + self.EXCHANGE, topic]  # the exchange, the routing key


SERVERS: Mapping[str, Callable[[Path], Server]] = {
    "arq": ArqServer,
    "kafka": KafkaServer,
    "rabbitmq": RabbitServer,
    "nats": NatsServer,
}


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def stop_process(proc: asyncio.subprocess.Process | None) -> None:
    """SIGTERM to its process group (it runs in a session of its own), SIGKILL after 30 s."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


@dataclass
class Figures:
    """Messages per second of each case, one figure per repeat."""

    rates: dict[str, list[float]] = field(default_factory=dict)
    # Commit-to-effect p50, p95, p99, then the relay's part (commit to published) p50 and p99, in
    # ms, by events a second, one per repeat.
    latencies: dict[int, list[tuple[float, ...]]] = field(default_factory=dict)

    def add(self, case: str, rate: float) -> None:
        self.rates.setdefault(case, []).append(rate)

    def ratio(self, case: str, to: str) -> str:
        return f"{self.median(case) / self.median(to):.2f} x {to}"

    def latency_cell(self, rate: int, which: int) -> str:
        values = [repeat[which] for repeat in self.latencies[rate]]
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    def median(self, case: str) -> float:
        return statistics.median(self.rates[case])

    def cell(self, case: str) -> str:
        values = self.rates[case]
        return f"{self.median(case):,.0f} | {min(values):,.0f}-{max(values):,.0f}"


def _rows(n: int) -> str:
    """`n` rows `m(g, id)`: a sequence number and a fresh message id, for the inserts' SELECT."""
    return f"(SELECT g, gen_random_uuid() AS id FROM generate_series(1, {n}) g) m"


class Bench:
    """One broker's servers, its rendered service, and the cases measured against them."""

    def __init__(
        self,
        broker: str,
        base: Path,
        project: Path,
        args: argparse.Namespace,
        peer_python: Path | None = None,
    ) -> None:
        self.broker = broker
        self.base = base
        self.project = project
        self.peer_python = peer_python if broker in PEER_BROKERS else None
        self.events: int = args.events
        self.history: int = args.history
        self.backlog: int = args.backlog
        self.latency_s: float = args.latency_s
        self.overrides: list[str] = args.set
        self.contract = round_trip_contract(project)
        self.answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
        self.package = self.answers["package_name"]
        self.cli = project / ".venv" / "bin" / self.package.replace("_", "-")
        self.cases = 0  # each case's own TOPIC_PREFIX
        self.python = project / ".venv" / "bin" / "python"
        self.db = Postgres(base)
        self.server = SERVERS[broker](base)
        self.env: dict[str, str] = {}
        self.figures = Figures()

    async def start(self) -> None:
        await self.db.create()
        await self.server.start()
        self.env = {**subprocess_env(), **self._settings()}
        await run_cmd([str(self.cli), "migrate"], cwd=self.project, env=self.env)
        if self.peer_python is not None:
            await self._set_up_peers()

    async def _set_up_peers(self) -> None:
        """Each peer's table by its own DDL and its place on the broker, then the bench's trigger.

        The place: a Kafka topic, a RabbitMQ exchange with a queue bound, or a JetStream stream;
        its driver's setup creates it, as neither library does.
        """
        for peer in PEERS:
            broker = self._peer_broker(peer)
            if self.broker == "kafka":  # the topic as ours
                broker += ["--partitions", str(self.answers["kafka_partitions"])]
            await run_cmd(
                [str(self.peer_python), peer.driver, "setup", self.db.url, *broker],
                cwd=PEERS_DIR, env=subprocess_env(),
            )  # fmt: skip
            await self.db.query(PEER_DONE + peer.record)

    def _peer_topic(self, peer: Peer) -> str:
        """Where a peer's relay publishes, a place of its own like our relay's.

        The Kafka topic, the arq queue, the RabbitMQ routing key (and the queue bound by it), or the
        NATS subject (its stream named after it).
        """
        return f"peer-{peer.name}.{self.contract.topic}"

    def _peer_broker(self, peer: Peer) -> list[str]:
        """A peer driver's arguments naming the broker, and where on it the peer publishes."""
        args = ["--broker", self.broker, "--url", self.server.address]
        args += ["--topic", self._peer_topic(peer)]
        if isinstance(self.server, RabbitServer):  # an exchange of the peer's own, as ours
            args += ["--exchange", f"peer-{peer.name}.{self.server.EXCHANGE}"]
        return args

    def _settings(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.db.url, "ENVIRONMENT": "prod", "TOPIC_PREFIX": "bench."}
        env |= self.server.settings()
        env |= dict(setting.split("=", 1) for setting in self.overrides)
        return env

    async def stop(self) -> None:
        await self.server.stop()
        try:
            await self.db.stop("immediate")
        except ChaosError as exc:
            print(f"bench: stopping PostgreSQL: {exc}", file=sys.stderr)

    async def raw(self, mode: str) -> float:
        body = json.dumps({"payload": PAYLOAD % ("o", "c", "x" * 120)})
        target = self.server.raw_target(self.env["TOPIC_PREFIX"], self.contract.topic)
        out = await run_cmd(
            [str(self.python), "-c", self.server.raw_client, *target, str(self.events), mode, body],
            timeout_s=DRAIN_TIMEOUT_S,
        )
        return float(json.loads(out.strip().splitlines()[-1])["rate"])

    async def relay(self, relays: int, keys: int, *, history: int = 0, backlog: int = 0) -> float:
        """Start `relays` relay processes, commit --events rows at once, time their drain.

        With `history` published rows in the table (vacuumed, as autovacuum would leave it), or
        `backlog` pending rows held back behind failing keys, older than the rows timed.
        """
        await self._empty_outbox()
        processes = [await self._start_relay(n) for n in range(relays)]
        try:
            await self._warm_up()
            if history:
                await self._published_history(history)
            if backlog:
                await self._held_back(backlog)
            committed = await self._fill(keys)
            await wait_until("the drain", self._drained, DRAIN_TIMEOUT_S)
            ((elapsed,),) = await self.db.query(
                f"SELECT extract(epoch FROM max(published_at) - '{committed}'::timestamptz)"
                " FROM outbox"
            )
            return self.events / float(elapsed)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                await process.wait()

    async def peer_relay(self, peer: Peer, relays: int, keys: int) -> float:
        """`relays` processes of a peer's relay draining the same rows as ours: the same timing."""
        broker = self._peer_broker(peer)
        processes = []
        try:
            for n in range(relays):
                processes.append(await self._start_peer(peer, n, *broker))
            await self._empty_peer(peer)
            await self._insert(10, keys=10, peer=peer)  # start-up: imports, connections
            await wait_until("the warm-up drain", self._peer_drained(peer), DRAIN_TIMEOUT_S)
            await self._empty_peer(peer)
            committed = await self._insert(self.events, keys=keys, peer=peer)
            await wait_until("the drain", self._peer_drained(peer), DRAIN_TIMEOUT_S)
            ((elapsed, done),) = await self.db.query(
                f"SELECT extract(epoch FROM max(at) - '{committed}'::timestamptz), sum(n)"
                f" FROM peer_bench.done WHERE peer = '{peer.name}'"
            )
        finally:
            await self._stop_peer(processes)
        if int(done) < self.events:
            raise ChaosError(f"{peer.name}: {done} of {self.events} rows recorded done")
        return self.events / float(elapsed)

    async def _start_peer(self, peer: Peer, n: int, *args: str) -> asyncio.subprocess.Process:
        assert self.peer_python is not None
        with (self.base / "logs" / f"{peer.name}-{n}.log").open("ab") as out:
            return await asyncio.create_subprocess_exec(
                str(self.peer_python), peer.driver, "relay", self.db.url, *args,
                cwd=PEERS_DIR, env=subprocess_env(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    @staticmethod
    async def _stop_peer(processes: Sequence[asyncio.subprocess.Process]) -> None:
        """SIGTERM (both finish the work in hand), then SIGKILL past PEER_STOP_TIMEOUT_S."""
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), PEER_STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def _empty_peer(self, peer: Peer) -> None:
        """As `_empty_outbox`, and forget the rows recorded done (the DELETE's among them)."""
        await self.db.query(f"DELETE FROM {peer.table}")
        await self.db.query(f"VACUUM ANALYZE {peer.table}")
        await self.db.query("DELETE FROM peer_bench.done")

    def _peer_drained(self, peer: Peer) -> Callable[[], Awaitable[bool]]:
        async def drained() -> bool:
            ((pending,),) = await self.db.query(
                f"SELECT count(*) FROM {peer.table} WHERE {peer.pending}"
            )
            return pending == "0"

        return drained

    async def _start_relay(self, n: int) -> asyncio.subprocess.Process:
        return await self._start("relay", n)

    async def _start(
        self, command: str, n: int, *args: str, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        """The service's `command` as a process; given `args`, the project's python with those."""
        log = self.base / "logs" / f"{command}-{n}.log"
        program = [str(self.python), *args] if args else [str(self.cli), command]
        with log.open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *program, cwd=self.project, env=env or self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @staticmethod
    async def _stop(processes: Sequence[asyncio.subprocess.Process]) -> None:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            await process.wait()

    def _case_env(self) -> dict[str, str]:
        """Settings for a case with queues/topics and a consumer group of its own.

        No message of another case waits for it, and no worker of another case, stopped moments
        ago, is still a member of its group when it joins.
        """
        self.cases += 1
        return {
            **self.env,
            "TOPIC_PREFIX": f"bench{self.cases}.",
            "SERVICE_NAME": f"bench{self.cases}",
        }

    async def _published_history(self, rows: int) -> None:
        await self._insert(rows, keys=1000, published=True)
        await self.db.query("VACUUM ANALYZE outbox")

    async def _held_back(self, rows: int) -> None:
        """Pending rows on keys of their own, behind each key's first row, which the broker refused.

        What a broker refusing some keys' messages leaves behind: the first row waits an hour for
        its retry, as the relay defers it (a lease and the error), and the rows behind it are held,
        as `outbox.add` writes them while such a row waits. The claim must not step over them.
        """
        # One transaction (statements of one -c): the running relays never see a row not yet held.
        insert = self._outbox_insert(rows, keys=HELD_KEYS, published=False, key_prefix="held-")
        heads = "SELECT min(id) FROM outbox WHERE key LIKE 'held-%' GROUP BY key"
        await self.db.query(
            f"{insert};"
            " UPDATE outbox SET lease_owner = 'bench', attempts = 1, last_error = 'refused',"
            f" lease_expires_at = now() + interval '1 hour' WHERE id IN ({heads});"
            f" UPDATE outbox SET held = true WHERE key LIKE 'held-%' AND id NOT IN ({heads})"
        )
        await self.db.query("VACUUM ANALYZE outbox")

    async def consume(self, workers: int) -> float:
        """--events messages on the broker, then `workers` worker processes: their handling rate."""
        env = self._case_env()
        await self._empty_tables()
        relay = [await self._start("relay", 0, env=env)]
        try:
            await self._fill(1000)
            await wait_until("the drain", self._drained, DRAIN_TIMEOUT_S)
        finally:
            await self._stop(relay)
        processes = [await self._start("worker", n, env=env) for n in range(workers)]
        try:
            await wait_until("the handling", self._handled(self.events), DRAIN_TIMEOUT_S)
        finally:
            await self._stop(processes)
        ((count, elapsed),) = await self.db.query(
            "SELECT count(*), extract(epoch FROM max(processed_at) - min(first_seen_at)) FROM inbox"
        )
        return int(count) / float(elapsed)

    async def latency(self, rate: int) -> tuple[float, ...]:
        """Relay and worker running, a row a transaction at `rate` a second: p50/p95/p99 in ms."""
        env = self._case_env()
        await self._empty_tables()
        processes = [
            await self._start("relay", 0, env=env),
            await self._start("worker", 0, env=env),
        ]
        try:
            await self._insert(10, keys=10)  # start-up (imports, connections, group join)
            await wait_until("the warm-up", self._handled(10), DRAIN_TIMEOUT_S)
            await self._empty_tables()
            key, envelope = self._row_sql("m.g", 1000)
            insert = (
                "INSERT INTO outbox (message_id, topic, key, type, schema_version, envelope) "
                f"SELECT m.id, '{self.contract.topic}', {key}, '{self.contract.name}', "
                f"{self.contract.version}, {envelope} "
                "FROM (SELECT $1::int AS g, gen_random_uuid() AS id) m"
            )
            n = int(rate * self.latency_s)
            await run_cmd(
                [
                    str(self.python),
                    "-c",
                    WRITER,
                    self.db.url,
                    str(rate),
                    str(self.latency_s),
                    insert,
                ],
                timeout_s=DRAIN_TIMEOUT_S,
            )
            await wait_until("the handling", self._handled(n), DRAIN_TIMEOUT_S)
        finally:
            await self._stop(processes)
        (figures,) = await self.db.query(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY effect), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY effect), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY effect), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY published), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY published) FROM ("
            " SELECT extract(epoch FROM i.processed_at - o.created_at) * 1000 AS effect,"
            " extract(epoch FROM o.published_at - o.created_at) * 1000 AS published"
            " FROM outbox o JOIN inbox i USING (message_id)) latencies"
        )
        return tuple(float(figure) for figure in figures)

    async def api(self, with_outbox: bool) -> float:
        """The API's rate of `POST`s of the example route, 16 at a time."""
        env = {**self._case_env(), "API_PORT": str(free_port()), "LOG_LEVEL": "WARNING"}
        args = () if with_outbox else ("-c", API_WITHOUT_OUTBOX, self.package)
        process = await self._start("api", int(with_outbox), *args, env=env)
        url = f"http://127.0.0.1:{env['API_PORT']}"
        try:
            await wait_until("the API", lambda: self._answers(url), DRAIN_TIMEOUT_S)
            keys = [sample(self.contract.fields[self.contract.key], i) for i in range(100)]
            bodies = json.dumps([body(self.contract, i, keys) for i in range(100)])
            out = await run_cmd(
                [str(self.python), "-c", API_CLIENT, url, str(self.events),
                 str(API_CONCURRENCY), bodies, self.contract.path],
                timeout_s=DRAIN_TIMEOUT_S,
            )  # fmt: skip
        finally:
            await self._stop([process])
        return float(json.loads(out.strip().splitlines()[-1])["rate"])

    async def _answers(self, url: str) -> bool:
        try:
            await run_cmd(["curl", "-fsS", "-o", "/dev/null", f"{url}/health/ready"], timeout_s=10)
        except ChaosError:
            return False
        return True

    def _handled(self, n: int) -> Callable[[], Awaitable[bool]]:
        async def handled() -> bool:
            ((count,),) = await self.db.query(
                "SELECT count(*) FROM inbox WHERE processed_at IS NOT NULL"
            )
            return int(count) >= n

        return handled

    async def _empty_tables(self) -> None:
        await self.db.query("DELETE FROM outbox; DELETE FROM inbox; DELETE FROM example_effects")
        await self.db.query("VACUUM ANALYZE outbox, inbox")

    async def _warm_up(self) -> None:
        """A row per relay start-up (imports, the broker connection): then the clock starts."""
        await self._insert(10, keys=10)
        await wait_until("the warm-up drain", self._drained, DRAIN_TIMEOUT_S)
        await self._empty_outbox()

    async def _empty_outbox(self) -> None:
        """Each case starts on an empty, vacuumed table: none pays for an earlier one's rows."""
        await self.db.query("DELETE FROM outbox")
        await self.db.query("VACUUM ANALYZE outbox")

    async def _fill(self, keys: int) -> str:
        """Commit --events rows in one transaction; the time of the commit, from the database."""
        return await self._insert(self.events, keys=keys)

    def _row_sql(self, index: str, keys: int) -> tuple[str, str]:
        """SQL for a row's key and envelope: a valid event of the contract, key `index` % `keys`.

        The worker handles these, so every case's messages are real events (about 300 bytes).
        """
        contract = self.contract
        key_type = contract.fields[contract.key]
        n = f"({index} % {keys})"
        key_value = {"int": n, "uuid": f"md5('k' || {n})::uuid::text"}.get(key_type, f"'k' || {n}")
        base = {name: sample(kind, 0) for name, kind in contract.fields.items()}
        payload = json.dumps(base).replace("'", "''")
        envelope = (
            "json_build_object('id', m.id, 'type', "
            f"'{contract.name}', 'schema_version', {contract.version}, 'occurred_at', now(), "
            f"'correlation_id', 'bench', 'payload', '{payload}'::jsonb "
            f"|| jsonb_build_object('{contract.key}', {key_value}))::text"
        )
        return f"({key_value})::text", envelope

    async def _insert(
        self, n: int, *, keys: int, published: bool = False, peer: Peer | None = None
    ) -> str:
        """Commit `n` rows in one transaction; the database's clock right after the commit.

        Into our outbox, or with `peer` the same rows (keys, envelopes) into that peer's table.
        """
        if peer is not None:
            key, envelope = self._row_sql("m.g", keys)
            insert = peer.insert.format(
                rows=_rows(n), key=key, envelope=envelope, topic=self._peer_topic(peer)
            )
        else:
            insert = self._outbox_insert(n, keys=keys, published=published)
        # Two -c: two transactions in one session, so the clock is read just after the commit.
        out = await run_cmd(
            ["psql", "-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.db.url,
             "-c", insert, "-c", "SELECT clock_timestamp()"],
        )  # fmt: skip
        return out.strip().splitlines()[-1]

    def _outbox_insert(self, n: int, *, keys: int, published: bool, key_prefix: str = "") -> str:
        """An INSERT of `n` rows of the contract into our outbox, keys prefixed by `key_prefix`."""
        topic, name = self.contract.topic, self.contract.name
        key, envelope = self._row_sql("m.g", keys)
        return (
            "INSERT INTO outbox (message_id, topic, key, type, schema_version, envelope,"
            " published_at) "
            f"SELECT m.id, '{topic}', '{key_prefix}' || {key}, '{name}', {self.contract.version},"
            f" {envelope}, {'now()' if published else 'NULL'} FROM {_rows(n)}"
        )

    async def _drained(self) -> bool:
        ((pending,),) = await self.db.query(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND key NOT LIKE 'held-%'"
        )
        return pending == "0"

    async def measure(self, groups: Sequence[str]) -> None:
        """One repeat: every case of `groups` once."""
        # The relays first: they create the service's topics, which the raw client then uses.
        if "relay" in groups:
            for relays, keys in RELAY_CASES:
                self.figures.add(relay_case(relays, keys), await self.relay(relays, keys))
                for peer in PEERS if "peers" in groups and self.peer_python else ():
                    rate = await self.peer_relay(peer, relays, keys)
                    self.figures.add(peer_case(peer, relays, keys), rate)
            self.figures.add(HISTORY_CASE, await self.relay(1, 1000, history=self.history))
            self.figures.add(BACKLOG_CASE, await self.relay(1, 1000, backlog=self.backlog))
            for mode in ("sequential", "pipelined"):
                self.figures.add(f"raw {mode}", await self.raw(mode))
        if "worker" in groups:
            for workers in WORKER_CASES:
                self.figures.add(worker_case(workers), await self.consume(workers))
        if "latency" in groups:
            for rate in LATENCY_RATES:
                self.figures.latencies.setdefault(rate, []).append(await self.latency(rate))
        if "api" in groups:
            for case, with_outbox in zip(API_CASES, (True, False), strict=True):
                self.figures.add(case, await self.api(with_outbox))


def relay_case(relays: int, keys: int) -> str:
    return f"relay x{relays}, {keys:,} keys"


def peer_case(peer: Peer, relays: int, keys: int) -> str:
    return f"{peer.name} x{relays}, {keys:,} keys"


def worker_case(workers: int) -> str:
    return f"worker x{workers}"


def table(bench: Bench, repeats: int) -> list[str]:
    lines = [
        f"### {bench.broker} ({VARIANT[bench.broker]}), {bench.events:,} events, {repeats} repeats",
        "",
        "| case | msg/s (median) | range | ratio |",
        "|---|---|---|---|",
    ]
    figures = bench.figures
    if not figures.rates:
        lines = lines[:1]
    if "raw pipelined" in figures.rates:
        lines += relay_rows(bench)
    if worker_case(1) in figures.rates:
        for workers in WORKER_CASES:
            case = worker_case(workers)
            ratio = "" if workers == 1 else figures.ratio(case, worker_case(1))
            lines.append(f"| {case} | {figures.cell(case)} | {ratio} |")
    with_outbox, without = API_CASES
    if with_outbox in figures.rates:
        ratio = figures.ratio(with_outbox, without)
        lines.append(f"| {with_outbox} | {figures.cell(with_outbox)} | {ratio} |")
        lines.append(f"| {without} | {figures.cell(without)} | |")
    if figures.latencies:
        lines += latency_rows(bench)
    return lines


def relay_rows(bench: Bench) -> list[str]:
    figures = bench.figures
    raw = figures.median("raw pipelined")
    lines = [
        f"| raw sequential | {figures.cell('raw sequential')} | |",
        f"| raw pipelined | {figures.cell('raw pipelined')} | |",
    ]
    for relays, keys in RELAY_CASES:
        case = relay_case(relays, keys)
        ratio = f"{figures.median(case) / raw:.2f} x raw pipelined"
        if relays > 1:
            ratio += f", {figures.median(case) / figures.median(relay_case(1, keys)):.2f} x 1 relay"
        lines.append(f"| {case} | {figures.cell(case)} | {ratio} |")
    ratio = figures.ratio(HISTORY_CASE, relay_case(1, 1000))
    lines.append(
        f"| {HISTORY_CASE} | {figures.cell(HISTORY_CASE)} | {ratio} (history:"
        f" {bench.history:,} rows) |"
    )
    ratio = figures.ratio(BACKLOG_CASE, relay_case(1, 1000))
    lines.append(
        f"| {BACKLOG_CASE} | {figures.cell(BACKLOG_CASE)} | {ratio} (backlog: {bench.backlog:,}"
        f" rows behind {HELD_KEYS} deferred keys) |"
    )
    for relays, keys in RELAY_CASES if peer_case(PEERS[0], 1, 1000) in figures.rates else ():
        ours = figures.median(relay_case(relays, keys))
        for peer in PEERS:
            case = peer_case(peer, relays, keys)
            ratio = f"ours / peer = {ours / figures.median(case):.2f}"
            lines.append(f"| {case} | {figures.cell(case)} | {ratio} |")
    return lines


def latency_rows(bench: Bench) -> list[str]:
    lines = [
        "",
        f"Commit to effect, ms, median (range), {bench.latency_s:g} s at each rate; the relay's"
        " part is commit to published:",
        "",
        "| events/s | p50 | p95 | p99 | relay part p50 | relay part p99 |",
        "|---|---|---|---|---|---|",
    ]
    for rate in LATENCY_RATES:
        cells = " | ".join(bench.figures.latency_cell(rate, which) for which in range(5))
        lines.append(f"| {rate} | {cells} |")
    return lines


async def run(args: argparse.Namespace, benches: Sequence[Bench]) -> None:
    try:
        for bench in benches:
            await bench.start()
        for repeat in range(args.repeats):
            for bench in benches:
                print(f"bench: {bench.broker}, repeat {repeat + 1} of {args.repeats}", flush=True)
                await bench.measure(args.only)
    finally:
        for bench in benches:
            await bench.stop()


def install_peers(base: Path) -> Path:
    """The peers' environment, apart from the template's and the services': their python."""
    venv = base / "peers"
    python = venv / "bin" / "python"
    requirements = PEERS_DIR / "requirements.txt"
    for command in (
        [uv(), "venv", "-q", "--python", ">=3.11", str(venv)],
        [uv(), "pip", "install", "-q", "--python", str(python), "-r", str(requirements)],
    ):
        subprocess.run(
            command, env=subprocess_env(), stdin=subprocess.DEVNULL, check=True,
            timeout=SYNC_TIMEOUT_S,
        )  # fmt: skip
    return python


def prepare(broker: str, base: Path, args: argparse.Namespace, peer_python: Path | None) -> Bench:
    project = base / broker / "project"
    (base / broker / "logs").mkdir(parents=True)
    (base / broker / "logs").chmod(0o777)
    render(copy_template(base / broker / "template"), VARIANTS[VARIANT[broker]], project)
    subprocess.run(
        [uv(), "sync", "-q"], cwd=project, env=subprocess_env(), stdin=subprocess.DEVNULL,
        check=True, timeout=SYNC_TIMEOUT_S,
    )  # fmt: skip
    return Bench(broker, base / broker, project, args, peer_python)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", nargs="+", choices=sorted(VARIANT), default=sorted(VARIANT))
    parser.add_argument("--events", type=int, default=10_000, help="messages per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--history", type=int, default=1_000_000, help="published rows under the history case"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=100_000,
        help="pending rows held back behind failing keys under the backlog case",
    )
    parser.add_argument(
        "--latency-s", type=float, default=10.0, help="seconds of writes at each latency rate"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GROUPS,
        default=GROUPS,
        help="measure these cases only (peers: with our relay cases, their ratios' other side)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the service's processes, e.g. WORKER_CONCURRENCY=20",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = parser.parse_args(argv)
    if min(args.events, args.repeats, args.history, args.backlog) < 1:
        parser.error("--events, --repeats, --history and --backlog must be at least 1")
    if bad := [setting for setting in args.set if "=" not in setting]:
        parser.error(f"--set takes NAME=VALUE, not {bad}")
    if "peers" in args.only and "relay" not in args.only:
        args.only.append("relay")
    if args.latency_s * min(LATENCY_RATES) < 1:
        parser.error(f"--latency-s must give at least one event at {min(LATENCY_RATES)}/s")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    base.chmod(0o755)  # the PostgreSQL server runs as its own user when this runs as root
    started = time.monotonic()
    try:
        peers = "peers" in args.only and any(broker in PEER_BROKERS for broker in args.broker)
        peer_python = install_peers(base) if peers else None
        benches = [prepare(broker, base, args, peer_python) for broker in args.broker]
        asyncio.run(run(args, benches))
    except ChaosError as exc:
        print(f"bench: FAILED: {exc}")
        return 1
    finally:
        if args.keep:
            print(f"bench: kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    for bench in benches:
        print("\n".join(["", *table(bench, args.repeats)]))
    impossible = [
        f"{bench.broker} {case}"
        for bench in benches
        for case, rates in bench.figures.rates.items()
        if min(rates) <= 0
    ]
    if impossible:
        print(f"bench: FAILED: a rate that is not positive (the clocks read wrong): {impossible}")
        return 1
    print(f"\nbench: done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
