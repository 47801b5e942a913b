"""Benchmark: the relay against the raw publish rate of the same broker client, in one run.

    python scripts/bench.py --broker arq kafka --events 10000 --repeats 3   (or: make bench)

For each broker it renders the default variant, starts private servers on free ports (PostgreSQL,
and Redis or tansu, unproxied), and measures, interleaved so that a busy machine slows every case
alike:
  - raw sequential: the client publishes one message at a time, awaiting each (arq `enqueue_job`;
    aiokafka `send_and_wait`);
  - raw pipelined: the same client with every message in flight at once (arq: `enqueue_job`s
    gathered; aiokafka: every `send`, then the acks together);
  - relay: the service's own `relay` processes (1 and 2) draining an outbox of --events rows over
    1,000 keys and over 10 keys. Its rate is rows / (last `published_at` - the commit that wrote
    them), both read from the database.
Each figure is the median of --repeats runs with their range; each relay row names its ratio to
the raw pipelined rate, and 2 relays are compared with 1. Prints a Markdown table per broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from chaos import (
    ChaosError,
    Postgres,
    Redis,
    Tansu,
    round_trip_contract,
    run_cmd,
    wait_until,
)
from conftest import VARIANTS, copy_template, render, subprocess_env, uv

VARIANT = {"arq": "arq-default", "kafka": "kafka-default"}
RELAY_CASES = ((1, 1000), (2, 1000), (1, 10), (2, 10))  # (relays, keys)
DRAIN_TIMEOUT_S = 600.0
SYNC_TIMEOUT_S = 900.0
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


@dataclass
class Figures:
    """Messages per second of each case, one figure per repeat."""

    rates: dict[str, list[float]] = field(default_factory=dict)

    def add(self, case: str, rate: float) -> None:
        self.rates.setdefault(case, []).append(rate)

    def median(self, case: str) -> float:
        return statistics.median(self.rates[case])

    def cell(self, case: str) -> str:
        values = self.rates[case]
        return f"{self.median(case):,.0f} | {min(values):,.0f}-{max(values):,.0f}"


class Bench:
    """One broker's servers, its rendered service, and the cases measured against them."""

    def __init__(self, broker: str, base: Path, project: Path, events: int) -> None:
        self.broker = broker
        self.base = base
        self.project = project
        self.events = events
        self.contract = round_trip_contract(project)
        slug = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
        self.cli = project / ".venv" / "bin" / slug.replace("_", "-")
        self.python = project / ".venv" / "bin" / "python"
        self.db = Postgres(base)
        self.redis = Redis(base) if broker == "arq" else None
        self.tansu = Tansu(base, proxied=False) if broker == "kafka" else None
        self.env: dict[str, str] = {}
        self.figures = Figures()

    async def start(self) -> None:
        await self.db.create()
        if self.redis is not None:
            await self.redis.start()
        if self.tansu is not None:
            await self.tansu.start()
        self.env = {**subprocess_env(), **self._settings()}
        await run_cmd([str(self.cli), "migrate"], cwd=self.project, env=self.env)

    def _settings(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.db.url, "ENVIRONMENT": "prod", "TOPIC_PREFIX": "bench."}
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        if self.tansu is not None:
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": self.tansu.bootstrap,
                "KAFKA_ENABLE_IDEMPOTENCE": "false",
            }
        return env

    async def stop(self) -> None:
        if self.redis is not None:
            self.redis.kill()
        if self.tansu is not None:
            self.tansu.kill()
        try:
            await self.db.stop("immediate")
        except ChaosError as exc:
            print(f"bench: stopping PostgreSQL: {exc}", file=sys.stderr)

    async def raw(self, mode: str) -> float:
        body = json.dumps({"payload": PAYLOAD % ("o", "c", "x" * 120)})
        topic = self.env["TOPIC_PREFIX"] + self.contract.topic
        if self.redis is not None:
            args = [RAW_ARQ, self.redis.url, topic]
        else:
            assert self.tansu is not None
            args = [RAW_KAFKA, self.tansu.bootstrap, topic]
        out = await run_cmd(
            [str(self.python), "-c", args[0], *args[1:], str(self.events), mode, body],
            timeout_s=DRAIN_TIMEOUT_S,
        )
        return float(json.loads(out.strip().splitlines()[-1])["rate"])

    async def relay(self, relays: int, keys: int) -> float:
        """Start `relays` relay processes, commit --events rows at once, time their drain."""
        await self._empty_outbox()
        processes = [await self._start_relay(n) for n in range(relays)]
        try:
            await self._warm_up()
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

    async def _start_relay(self, n: int) -> asyncio.subprocess.Process:
        log = self.base / "logs" / f"relay-{n}.log"
        with log.open("ab") as out:
            return await asyncio.create_subprocess_exec(
                str(self.cli), "relay", cwd=self.project, env=self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

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

    async def _insert(self, n: int, *, keys: int) -> str:
        """Commit `n` rows in one transaction; the database's clock right after the commit."""
        topic, name = self.contract.topic, self.contract.name
        payload = PAYLOAD % ("' || g || '", "' || (g % 97) || '", "x" * 120)
        insert = (
            "INSERT INTO outbox (message_id, topic, key, type, schema_version, envelope) "
            f"SELECT gen_random_uuid(), '{topic}', 'k' || (g % {keys}), '{name}', 1, "
            f"'{{\"payload\": {payload}}}' FROM generate_series(1, {n}) g"
        )
        # Two -c: two transactions in one session, so the clock is read just after the commit.
        out = await run_cmd(
            ["psql", "-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.db.url,
             "-c", insert, "-c", "SELECT clock_timestamp()"],
        )  # fmt: skip
        return out.strip().splitlines()[-1]

    async def _drained(self) -> bool:
        ((pending,),) = await self.db.query(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        return pending == "0"

    async def measure(self) -> None:
        """One repeat: every case once."""
        # The relays first: they create the service's topics, which the raw client then uses.
        for relays, keys in RELAY_CASES:
            self.figures.add(relay_case(relays, keys), await self.relay(relays, keys))
        for mode in ("sequential", "pipelined"):
            self.figures.add(f"raw {mode}", await self.raw(mode))


def relay_case(relays: int, keys: int) -> str:
    return f"relay x{relays}, {keys:,} keys"


def table(bench: Bench) -> list[str]:
    figures = bench.figures
    raw = figures.median("raw pipelined")
    lines = [
        f"### {bench.broker} ({VARIANT[bench.broker]}), {bench.events:,} events,"
        f" {len(figures.rates['raw pipelined'])} repeats",
        "",
        "| case | msg/s (median) | range | ratio |",
        "|---|---|---|---|",
        f"| raw sequential | {figures.cell('raw sequential')} | |",
        f"| raw pipelined | {figures.cell('raw pipelined')} | |",
    ]
    for relays, keys in RELAY_CASES:
        case = relay_case(relays, keys)
        ratio = f"{figures.median(case) / raw:.2f} x raw pipelined"
        if relays > 1:
            ratio += f", {figures.median(case) / figures.median(relay_case(1, keys)):.2f} x 1 relay"
        lines.append(f"| {case} | {figures.cell(case)} | {ratio} |")
    return lines


async def run(args: argparse.Namespace, benches: Sequence[Bench]) -> None:
    try:
        for bench in benches:
            await bench.start()
        for repeat in range(args.repeats):
            for bench in benches:
                print(f"bench: {bench.broker}, repeat {repeat + 1} of {args.repeats}", flush=True)
                await bench.measure()
    finally:
        for bench in benches:
            await bench.stop()


def prepare(broker: str, base: Path, events: int) -> Bench:
    project = base / broker / "project"
    (base / broker / "logs").mkdir(parents=True)
    (base / broker / "logs").chmod(0o777)
    render(copy_template(base / broker / "template"), VARIANTS[VARIANT[broker]], project)
    subprocess.run(
        [uv(), "sync", "-q"], cwd=project, env=subprocess_env(), stdin=subprocess.DEVNULL,
        check=True, timeout=SYNC_TIMEOUT_S,
    )  # fmt: skip
    return Bench(broker, base / broker, project, events)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", nargs="+", choices=sorted(VARIANT), default=sorted(VARIANT))
    parser.add_argument("--events", type=int, default=10_000, help="messages per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be at least 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    base.chmod(0o755)  # the PostgreSQL server runs as its own user when this runs as root
    started = time.monotonic()
    try:
        benches = [prepare(broker, base, args.events) for broker in args.broker]
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
        print("\n".join(["", *table(bench)]))
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
