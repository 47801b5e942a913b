"""Chaos run: a rendered variant's guarantees under killed processes and broker/database outages.

    python scripts/chaos.py --variant arq-default --events 10000      (or: make chaos V=... N=...)

Renders the variant, starts private servers on free ports (PostgreSQL, and Redis, or tansu, a
RabbitMQ node or nats-server behind a TCP proxy), runs the service's own CLI as real processes
(api, 2 relays, 2 workers), drives writes through the API while killing and stopping relays and
workers at random, takes the broker and the database down once each, injects poison messages into
the broker, waits for the drain and counts from the database. Exits 1 naming every check that
failed; everything it started is stopped and its temporary directory removed, also on failure or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "extensions")]
from conftest import VARIANTS, copy_template, render, subprocess_env, uv  # noqa: E402
from contracts import kebab  # noqa: E402

# Settings of the rendered processes: short timeouts keep drain and shutdown bounded.
HANDLER_TIMEOUT_S = 2.0
SHUTDOWN_TIMEOUT_S = 5.0
RELAYS = WORKERS = 2
CONCURRENCY = 20
WRITE_ATTEMPTS = 20  # per write, on 503 or no response; then it is given up (not accepted)
KEYS = 200  # writes share keys, so several events per key are in flight at once
RESTART_DELAY_S = 0.5
NATS_ACK_WAIT_S = 10.0
OUTAGE_S = 5.0
# Longer than arq's job timeout (HANDLER_TIMEOUT_S + 5): work in flight must survive it.
FREEZE_S = 12.0
# A process is signalled once it logged `<kind>_started`, or after this long (a Kafka worker that
# never joins its group must be signalled too).
AT_WORK_AFTER_S = 15.0
# A process signalled before its handler is installed (the final stop) dies of SIGTERM: clean too.
CLEAN_TERM_CODES: set[int | str] = {0, -signal.SIGTERM, "1 forced"}
# Log lines printed of a process whose exit after SIGTERM was not clean.
TERM_TAIL_LINES = 15
# The exit margin of a service that does not name its own (SHUTDOWN_MARGIN_S in constants.py).
DEFAULT_EXIT_MARGIN_S = 5.0
# Beyond the service's own margin: its forced exit takes a moment too.
EXIT_SLACK_S = 2.0
POISON_EACH = 5
CHILD_TIMEOUT_S = 120.0  # one server command (pg_ctl, migrate, uv sync has its own)
READY_TIMEOUT_S = 90.0
NATS_SERVER = "/usr/sbin/nats-server"
RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"
SYNC_TIMEOUT_S = 900.0


# Exit status of a run that failed only because the Kafka consumer group stopped handing out work
# while every worker sat idle right after joining it: the test broker's (tansu's) known wedge, not
# a fault the run can pin on the service. The CI test runs such a run once more.
EXIT_GROUP_STALLED = 3
# The checks a stalled drain fails by itself: anything else failing is the service's fault.
STALL_CHECKS = {
    "no event lost",
    "every poison message dead-lettered with its reason",
    "drained in time",
}
# aiokafka's log lines for a completed join and for the join it sends again after a few seconds
# without an assignment.
JOINED = re.compile(r"Joined group '[^']*' \(generation \d+\)")
REJOINING = re.compile(r"\(Re-\)joining group ")


def idle_in_group(last_events: Sequence[str | None]) -> bool:
    """Every worker's last word is a join, completed or sent again, and at least one completed:
    while nothing moves, they sit in a group that hands out no work (tansu's known wedge, see
    EXIT_GROUP_STALLED). In it a member's join completes at the same generation again and again,
    never followed by an assignment, and aiokafka sends it again every few seconds: which of the
    two lines is a worker's last depends on the moment the drain gives up."""
    events = [event or "" for event in last_events]
    in_a_join = all(JOINED.match(event) or REJOINING.match(event) for event in events)
    return in_a_join and any(JOINED.match(event) for event in events)


def shortened(line: str, *, head: int = 200, tail: int = 1500) -> str:
    """A long log line's start and its end: a traceback's last frames and error are at the end."""
    if len(line) <= head + tail:
        return line
    return f"{line[:head]} [...] {line[-tail:]}"


class ChaosError(Exception):
    """The run could not be carried out (a server did not start, the API never got ready...)."""


# --- the variant's writable contract ---


@dataclass(frozen=True)
class Contract:
    name: str
    version: int
    topic: str
    key: str
    fields: dict[str, str]

    @property
    def path(self) -> str:
        """The example endpoint's path (api.py.jinja), named with the template's own filter."""
        return f"/records/{kebab(self.name)}/v{self.version}"


def round_trip_contract(project: Path) -> Contract:
    """The first contract the service both publishes and consumes: its writes have effects."""
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    for c in answers["contracts"]:
        if c["role"] == "both":
            return Contract(c["name"], int(c["version"]), c["topic"], c["key"], dict(c["fields"]))
    raise ChaosError("the variant has no contract with role `both`: no write would have an effect")


def shutdown_margin_s(project: Path) -> float:
    """The margin past SHUTDOWN_TIMEOUT_S the service promises to exit in, plus EXIT_SLACK_S."""
    for constants in (project / "src").glob("*/constants.py"):
        found = re.search(r"^SHUTDOWN_MARGIN_S\s*=\s*([0-9.]+)", constants.read_text(), re.M)
        if found:
            return float(found[1]) + EXIT_SLACK_S
    return DEFAULT_EXIT_MARGIN_S


def sample(field_type: str, i: int) -> Any:
    if field_type.startswith("list["):
        return [sample(field_type[5:-1], i)]
    values: dict[str, Callable[[], Any]] = {
        "str": lambda: f"chaos-{i}",
        "int": lambda: i,
        "float": lambda: i + 0.5,
        "bool": lambda: i % 2 == 0,
        "decimal": lambda: "12.34",
        "uuid": lambda: str(uuid4()),
        "datetime": lambda: datetime.now(UTC).isoformat(),
        "date": lambda: date.today().isoformat(),
    }
    return values[field_type]()


def body(contract: Contract, i: int, keys: Sequence[Any]) -> dict[str, Any]:
    payload = {name: sample(kind, i) for name, kind in contract.fields.items()}
    payload[contract.key] = keys[i % len(keys)]
    return payload


# --- private servers ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_cmd(args: Sequence[str], *, timeout_s: float = CHILD_TIMEOUT_S, **kw: Any) -> str:
    """Run a command to completion; its output, or ChaosError naming it with its output."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ChaosError(f"`{' '.join(args)}` took over {timeout_s}s") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise ChaosError(f"`{' '.join(args)}` exited {proc.returncode}: {text[-2000:]}")
    return text


async def wait_until(what: str, probe: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        if time.monotonic() > deadline:
            raise ChaosError(f"{what} not ready after {timeout_s}s")
        await asyncio.sleep(0.3)


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ChaosError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


class Postgres:
    """A throwaway cluster: trust auth, socket in the run directory, stopped with pg_ctl."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self._bin = pg_bin()
        self._data = base / "pg"
        self._log = base / "logs" / "postgres.log"
        self.url = self.url_at(self.port)

    @staticmethod
    def url_at(port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _as_owner(self, *args: str) -> list[str]:
        # initdb and postgres refuse to run as root: run them as the postgres system user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return [*prefix, *args]

    async def create(self) -> None:
        self._data.mkdir()
        self._log.touch()
        if os.geteuid() == 0:
            shutil.chown(self._data, "postgres")
            shutil.chown(self._log, "postgres")
        await run_cmd(
            self._as_owner(
                str(self._bin / "initdb"), "-D", str(self._data), "-U", "postgres", "--auth=trust"
            )
        )
        await self.start()

    async def start(self) -> None:
        options = (
            f"-p {self.port} -k {self._data} -c listen_addresses=127.0.0.1 -c max_connections=300"
            # Only clean stops (-m fast) happen here, so skipping fsync loses nothing.
            " -c fsync=off"
        )
        ctl = str(self._bin / "pg_ctl")
        await run_cmd(
            self._as_owner(
                ctl, "-D", str(self._data), "-l", str(self._log), "-o", options, "-w", "start"
            )
        )

    async def stop(self, mode: str = "fast") -> None:
        await run_cmd(
            self._as_owner(
                str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", mode, "-w", "stop"
            )
        )

    async def query(self, sql: str) -> list[list[str]]:
        out = await run_cmd(
            [
                "psql",
                "-X",
                "-w",
                "-q",
                "-At",
                "-F",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                self.url,
                "-c",
                sql,
            ],
            timeout_s=60,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        )
        return [line.split("\t") for line in out.splitlines() if line]


class ChildServer:
    """A server run as a child process of the harness."""

    _proc: asyncio.subprocess.Process | None = None

    async def stop(self) -> None:
        """SIGTERM: the server writes what it keeps on disk (Redis's append-only file, the JetStream
        store) and exits."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            async with asyncio.timeout(60):
                await self._proc.wait()

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()


class Redis(ChildServer):
    """redis-server with an append-only file, so a restart keeps the queued jobs."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self._dir = base / "redis"
        self._dir.mkdir()
        self._log = base / "logs" / "redis.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self._dir), "--appendonly", "yes", "--save", "",
            "--logfile", str(self._log),
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        await wait_until("redis", self._pong, READY_TIMEOUT_S)

    async def _pong(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.write(b"PING\r\n")
        line = await reader.readline()
        writer.close()
        return line.startswith(b"+PONG")


class TcpProxy:
    """A TCP proxy that can be cut (connections closed and refused) or frozen (connections open,
    no bytes moving: a server that accepts but never answers). Like the rendered suite's
    tests/proxy.py, plus the freeze."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = free_port()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._streams):
            writer.close()
        self._streams.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._streams.add(client_w)
        await self._flowing.wait()
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            client_w.close()
            self._streams.discard(client_w)
            return
        self._streams.add(server_w)
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        self._streams.difference_update((client_w, server_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()


class Nats(ChildServer):
    """nats-server with JetStream, its store in the run directory: a restart keeps the streams."""

    def __init__(self, base: Path) -> None:
        self._port = free_port()
        self.proxy = TcpProxy(self._port)
        self._dir = base / "nats"
        self._log = base / "logs" / "nats.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.url = f"nats://127.0.0.1:{self.proxy.port}"

    async def start(self) -> None:
        binary = NATS_SERVER if Path(NATS_SERVER).exists() else shutil.which("nats-server")
        if binary is None:
            raise ChaosError(f"no nats-server at {NATS_SERVER} or on PATH")
        self._proc = await asyncio.create_subprocess_exec(
            binary, "-a", "127.0.0.1", "-p", str(self._port), "-js", "-sd", str(self._dir),
            "-l", str(self._log),
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        await wait_until("nats-server", self._info, READY_TIMEOUT_S)

    async def _info(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        except OSError:
            return False
        line = await reader.readline()
        writer.close()
        return line.startswith(b"INFO")


class RabbitMQ:
    """A node of its own: name, ports, data, logs, config, plugins and Erlang cookie all in the run
    directory, so neither the machine's node nor its cookie is touched. Started as a child process,
    stopped with `rabbitmqctl stop`, its process group killed if that fails."""

    def __init__(self, base: Path) -> None:
        self._port = free_port()
        self._dist_port = free_port()
        self.node = f"chaos-{self._port}@localhost"
        self.proxy = TcpProxy(self._port)
        self._dir = base / "rabbitmq"
        self._log = base / "logs" / "rabbitmq.log"
        self._proc: asyncio.subprocess.Process | None = None
        # guest may log in over loopback only: the proxy connects from 127.0.0.1.
        self.url = f"amqp://guest:guest@127.0.0.1:{self.proxy.port}/"

    def _env(self) -> dict[str, str]:
        d = self._dir
        return {
            **os.environ,
            "HOME": str(d / "home"),  # the Erlang cookie of this node and its rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self._port),
            "RABBITMQ_DIST_PORT": str(self._dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            # Not the machine's /etc/rabbitmq files: its config listens on 5672.
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(d / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _bin(self, name: str) -> str:
        # The scripts themselves: /usr/sbin's wrappers switch to the rabbitmq user and its cookie.
        found = Path(RABBITMQ_BIN) / name
        which = shutil.which(name)
        if found.exists():
            return str(found)
        if which is None:
            raise ChaosError(f"no {name} in {RABBITMQ_BIN} or on PATH")
        return which

    async def create(self) -> None:
        d = self._dir
        for sub in ("home", "mnesia", "log", "conf.d"):
            (d / sub).mkdir(parents=True)
        cookie = d / "home" / ".erlang.cookie"
        cookie.write_text(uuid4().hex.upper())
        cookie.chmod(0o600)
        (d / "rabbitmq-env.conf").write_text("")
        (d / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self._port}\n")
        (d / "advanced.config").write_text("[].\n")
        (d / "enabled_plugins").write_text("[].\n")  # no management plugin
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self._bin("rabbitmq-server"), env=self._env(), cwd=d,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        await self._ready()

    async def _ready(self) -> None:
        await wait_until(f"RabbitMQ node {self.node}", self._amqp, READY_TIMEOUT_S)

    async def _amqp(self) -> bool:
        """The AMQP handshake: the protocol header is answered with a Connection.Start frame."""
        if self._proc is not None and self._proc.returncode is not None:
            raise ChaosError(f"RabbitMQ node {self.node} exited {self._proc.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
        except OSError:
            return False
        try:
            writer.write(b"AMQP\x00\x00\x09\x01")
            async with asyncio.timeout(5):
                frame = await reader.read(8)
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
        return frame[:1] == b"\x01"

    async def ctl(self, *args: str) -> str:
        return await run_cmd([self._bin("rabbitmqctl"), "-n", self.node, *args], env=self._env())

    async def stop_app(self) -> None:
        """The broker stops (connections closed, the port refused); the Erlang node stays up."""
        await self.ctl("stop_app")

    async def start_app(self) -> None:
        await self.ctl("start_app")
        await self._ready()

    async def stop(self) -> None:
        """`rabbitmqctl stop`; whatever of the node's process group is left then is killed."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ChaosError, TimeoutError):
                await self.ctl("stop")
                async with asyncio.timeout(10):
                    await self._proc.wait()
        self.kill()

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)


class Tansu(ChildServer):
    def __init__(self, base: Path, *, proxied: bool = True) -> None:
        self._port = free_port()
        self.proxy = TcpProxy(self._port)
        self._log = base / "logs" / "tansu.log"
        self._proc: asyncio.subprocess.Process | None = None
        # Proxied: every client connection goes through the proxy, which can cut them all.
        self.bootstrap = f"127.0.0.1:{self.proxy.port if proxied else self._port}"

    async def start(self) -> None:
        binary = (
            await run_cmd(["bash", str(REPO / "scripts/kafka.sh"), "bin"], timeout_s=600)
        ).strip()
        binary = binary.splitlines()[-1]
        await self.proxy.up()
        with self._log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                binary, "broker", "--listener-url", f"tcp://127.0.0.1:{self._port}",
                "--advertised-listener-url", f"tcp://{self.bootstrap}",
                "--storage-engine", "memory://tansu/",
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        await wait_until("tansu", self._listening, READY_TIMEOUT_S)

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self._port)
        except OSError:
            return False
        writer.close()
        return True


# --- the service's processes ---


@dataclass
class KindStats:
    kills: int = 0
    terms: int = 0
    exit_codes: Counter[int | str] = field(default_factory=Counter)  # after SIGTERM
    max_exit_s: float = 0.0
    over_bound: int = 0
    unprompted: Counter[int] = field(default_factory=Counter)
    plain_log_lines: int = 0  # lines that are not one JSON object (ENVIRONMENT=prod promises JSON)


class Service:
    """One process of the service's CLI; restarted when it exits without being told to."""

    def __init__(self, run: Run, kind: str, index: int) -> None:
        self._run = run
        self.kind = kind
        self.name = f"{kind}-{index}"
        self.stats = run.stats[kind]
        self.busy = False
        self.started_at = 0.0
        self._log_offset = 0
        self._at_work = False
        self._proc: asyncio.subprocess.Process | None = None
        self._told = False
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A restart due while the run is torn down (a kill's or a term's, 0.5 s later) must not
        # start a process that the clean-up has already passed.
        if self._run.finishing:
            return
        # The venv's entry point itself (what `uv run <slug>` runs), so signals reach it directly.
        self._at_work = False
        with self.log.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = await asyncio.create_subprocess_exec(
                str(self._run.cli), self.kind, cwd=self._run.project, env=self._run.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started_at = time.monotonic()
        self._told = False
        if self._run.finishing:  # the clean-up began while it was being spawned
            self.destroy()
            return
        self._watcher = asyncio.create_task(self._watch(self._proc))

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._told:
            return
        self.stats.unprompted[code] += 1
        self._run.note(f"{self.name} exited by itself with {code}{self._why()}")
        await asyncio.sleep(1)
        if not self._run.finishing and sum(self.stats.unprompted.values()) < 50:
            await self.start()

    def at_work(self) -> bool:
        """Running, and past its start-up (not still importing, where SIGTERM simply ends it)."""
        if not self._at_work and self.running:
            with self.log.open("rb") as log:
                log.seek(self._log_offset)
                started = f'"{self.kind}_started"'.encode() in log.read()
            self._at_work = started or time.monotonic() - self.started_at > AT_WORK_AFTER_S
        return self._at_work and self.running

    def last_event(self) -> str | None:
        """The `event` of the last JSON line this process (since its last start) logged."""
        with self.log.open("rb") as log:
            log.seek(self._log_offset)
            lines = log.read().splitlines()
        for line in reversed(lines):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                return str(json.loads(line)["event"])
        return None

    @property
    def log(self) -> Path:
        return self._run.base / "logs" / f"{self.name}.log"

    def _why(self) -> str:
        """The exception of the process's `unhandled_exception` log line, if its last says one.

        The run directory is removed at the end: without it, a crash in CI leaves no trace.
        """
        with contextlib.suppress(OSError), self.log.open(errors="replace") as log:
            for line in reversed(log.read().splitlines()[-20:]):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    record = json.loads(line)
                    if record["event"] == "unhandled_exception":
                        return ":\n" + str(record.get("exception", "")).strip()
        return ""

    async def kill(self) -> None:
        proc = self._tell()
        proc.send_signal(signal.SIGKILL)
        self.stats.kills += 1
        await proc.wait()

    async def term(self) -> None:
        """SIGTERM, and time the exit against the shutdown bound; SIGKILL once it is over."""
        proc = self._tell()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.stats.terms += 1
        try:
            async with asyncio.timeout(self._run.exit_bound_s):
                code = await proc.wait()
        except TimeoutError:
            self.stats.over_bound += 1
            self._run.note(
                f"{self.name} still running {self._run.exit_bound_s}s after SIGTERM: killed"
            )
            proc.send_signal(signal.SIGKILL)
            code = await proc.wait()
        self.stats.max_exit_s = max(self.stats.max_exit_s, time.monotonic() - started)
        # Status 1 after `shutdown_forced` is the service's own backstop at its bound: no crash.
        outcome = "1 forced" if code == 1 and self._logged("shutdown_forced") else code
        self.stats.exit_codes[outcome] += 1
        if outcome not in CLEAN_TERM_CODES:
            # The run directory is removed at the end: the log's last lines are the only trace.
            self._run.note(f"{self.name} ended with {code} after SIGTERM; its last log lines:")
            for line in self._tail(TERM_TAIL_LINES):
                self._run.note(f"  {self.name}: {shortened(line)}")

    def _tail(self, lines: int) -> list[str]:
        """The last `lines` lines this process (since its last start) logged."""
        with self.log.open("rb") as log:
            log.seek(self._log_offset)
            tail = log.read().splitlines()[-lines:]
        return [line.decode(errors="replace").rstrip() for line in tail]

    def _logged(self, event: str) -> bool:
        with self.log.open("rb") as log:
            log.seek(self._log_offset)
            return f'"{event}"'.encode() in log.read()

    def _tell(self) -> asyncio.subprocess.Process:
        assert self._proc is not None, f"{self.name} was never started"
        assert self._proc.returncode is None, f"{self.name} is not running"
        self._told = True
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def destroy(self) -> None:
        self._told = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)


# --- the run ---


@dataclass
class Writes:
    accepted: set[str] = field(default_factory=set)
    failed: Counter[str] = field(default_factory=Counter)  # why a write was not accepted
    retried: Counter[str] = field(default_factory=Counter)  # retried attempts, by cause


class Run:
    def __init__(self, args: argparse.Namespace, base: Path, project: Path) -> None:
        self.args = args
        self.base = base
        self.project = project
        self.rng = random.Random(args.seed)
        answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
        self.broker = str(answers["broker"])
        self.package = str(answers["package_name"])
        self.cli = project / ".venv" / "bin" / self.package.replace("_", "-")
        self.contract = round_trip_contract(project)
        margin_s = shutdown_margin_s(project) if args.exit_margin_s is None else args.exit_margin_s
        self.exit_bound_s = SHUTDOWN_TIMEOUT_S + margin_s
        self.stats = {kind: KindStats() for kind in ("api", "relay", "worker")}
        self.writes = Writes()
        self.writes_sent = 0
        self.poison: dict[str, str] = {}  # raw message -> the dead-letter reason it must get
        self.outages: list[str] = []
        self.finishing = False
        self.started = time.monotonic()
        self.db = Postgres(base)
        # The service reaches the database through this, so the database can be frozen.
        self.db_proxy = TcpProxy(self.db.port)
        self.redis = Redis(base) if self.broker == "arq" else None
        self.tansu = Tansu(base) if self.broker == "kafka" else None
        self.rabbitmq = RabbitMQ(base) if self.broker == "rabbitmq" else None
        self.nats = Nats(base) if self.broker == "nats" else None
        self.api_port = free_port()
        self.env: dict[str, str] = {}
        self.services: list[Service] = []
        self.group_stalled = False  # the drain stopped with every worker idle in its group

    def note(self, text: str) -> None:
        stamp = f"{time.monotonic() - self.started:7.1f}s"
        print(f"chaos: {stamp} {text}", flush=True)

    async def start_servers(self) -> None:
        await self.db.create()
        await self.db_proxy.up()
        if self.redis is not None:
            await self.redis.start()
        if self.tansu is not None:
            await self.tansu.start()
        if self.rabbitmq is not None:
            await self.rabbitmq.proxy.up()
            await self.rabbitmq.create()
        if self.nats is not None:
            await self.nats.proxy.up()
            await self.nats.start()
        self.env = {**subprocess_env(), **self._settings()}
        await run_cmd([str(self.cli), "migrate"], cwd=self.project, env=self.env)

    def _settings(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.db.url_at(self.db_proxy.port),
            "ENVIRONMENT": "prod",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.api_port),
            "HANDLER_TIMEOUT_S": str(HANDLER_TIMEOUT_S),
            "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
            "PUBLISH_TIMEOUT_S": "2",
            "RELAY_LEASE_TTL_S": "10",
            "RELAY_POLL_INTERVAL_MS": "500",
            # Short backoff after database errors, so the drain after an outage is quick.
            "RETRY_INITIAL_DELAY_S": "0.2",
            "RETRY_MAX_DELAY_S": "2",
        }
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        if self.tansu is not None:
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": self.tansu.bootstrap,
                "KAFKA_ENABLE_IDEMPOTENCE": "false",  # tansu has no idempotent producer
                # Apache Kafka's minimum: a SIGKILLed member leaves the group after this long.
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
                "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
                "KAFKA_REQUEST_TIMEOUT_MS": "3000",
                "KAFKA_MAX_POLL_INTERVAL_MS": "30000",
            }
        if self.rabbitmq is not None:
            env["RABBITMQ_URL"] = self.rabbitmq.url
        if self.nats is not None:
            env |= {
                "NATS_URL": self.nats.url,
                # What a SIGKILLed worker held comes back after this long (30 s by default).
                "NATS_ACK_WAIT_S": str(NATS_ACK_WAIT_S),
            }
        return env

    async def start_services(self) -> None:
        self.services = [Service(self, "api", 0)]
        self.services += [Service(self, "relay", i) for i in range(RELAYS)]
        self.services += [Service(self, "worker", i) for i in range(WORKERS)]
        for service in self.services:
            await service.start()
        await wait_until("the API (GET /health/ready)", self._api_ready, READY_TIMEOUT_S)

    async def _api_ready(self) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(
                    f"http://127.0.0.1:{self.api_port}/health/ready", timeout=5
                )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # --- load ---

    async def drive(self) -> None:
        """N writes, CONCURRENCY in flight, paced to last at least --min-load-s."""
        keys = [sample(self.contract.fields[self.contract.key], i) for i in range(KEYS)]
        rate_s = self.args.min_load_s / self.args.events
        numbers = iter(range(self.args.events))
        started = time.monotonic()
        # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them:
        # else a request sent just as the server closes its connection gets no answer, a race
        # of HTTP keep-alive itself that says nothing about the service.
        limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=1.0)
        base_url = f"http://127.0.0.1:{self.api_port}"
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

            async def writer() -> None:
                for i in numbers:
                    await asyncio.sleep(max(0.0, started + i * rate_s - time.monotonic()))
                    self.writes_sent += 1
                    await self._write(client, body(self.contract, i, keys))

            await asyncio.gather(*(writer() for _ in range(CONCURRENCY)))

    async def _write(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                response = await client.post(self.contract.path, json=payload)
            except httpx.TransportError as exc:
                cause = f"no response ({type(exc).__name__})"
            else:
                if response.is_success:
                    self.writes.accepted.add(response.json()["message_id"])
                    return
                if response.status_code != 503:
                    self.writes.failed[f"HTTP {response.status_code}"] += 1
                    return
                cause = "HTTP 503"
            self.writes.retried[cause] += 1
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        self.writes.failed[f"gave up after {WRITE_ATTEMPTS} attempts"] += 1

    # --- chaos ---

    def plan(self) -> list[str]:
        actions = [f"{how} {kind}" for how in ("kill", "term") for kind in ("relay", "worker")]
        plan = [
            a
            for a in actions
            for _ in range(self.args.kills if a.startswith("kill") else self.args.terms)
        ]
        plan += ["broker outage, then database freeze", "database outage"]
        self.rng.shuffle(plan)
        plan.insert(len(plan) // 2, "poison")  # once writes flow: the topics exist by then
        return plan

    async def chaos(self) -> None:
        """Work through the plan while the writes go on: each action waits for its share of them,
        so every fault happens under load however fast or slow the writes are."""
        plan = self.plan()
        actions: list[asyncio.Task[None]] = []
        for number, action in enumerate(plan):
            due = self.args.events * (0.05 + 0.85 * number / max(1, len(plan) - 1))
            while self.writes_sent < due:
                await asyncio.sleep(0.1)
            if action == "broker outage, then database freeze":
                await self._broker_outage()
                # The outbox filled up meanwhile: freezing now catches that backlog in flight.
                await asyncio.sleep(0.5)
                await self._database_freeze()
            elif action == "database outage":
                await self._database_outage()
            elif action == "poison":
                await self._inject_poison()
            else:
                how, kind = action.split()
                service = await self._idle(kind)
                service.busy = True
                actions.append(asyncio.create_task(self._cycle(service, how)))
        await asyncio.gather(*actions)

    async def _idle(self, kind: str) -> Service:
        """A process of `kind` at work and not being signalled already."""
        while True:
            idle = [s for s in self.services if s.kind == kind and not s.busy and s.at_work()]
            if idle:
                return self.rng.choice(idle)
            await asyncio.sleep(0.2)

    async def _cycle(self, service: Service, how: str) -> None:
        try:
            await (service.kill() if how == "kill" else service.term())
            await asyncio.sleep(RESTART_DELAY_S)
            await service.start()
        finally:
            service.busy = False

    async def _broker_outage(self) -> None:
        self.note(f"broker down for {OUTAGE_S}s")
        started = time.monotonic()
        if self.redis is not None:
            await self.redis.stop()
            await asyncio.sleep(OUTAGE_S)
            await self.redis.start()
        elif self.tansu is not None:
            await self.tansu.proxy.down()
            await asyncio.sleep(OUTAGE_S)
            await self.tansu.proxy.up()
        elif self.rabbitmq is not None:
            # The node closes its connections itself; then the proxy refuses new ones, as a
            # stopped server's port does.
            await self.rabbitmq.stop_app()
            await self.rabbitmq.proxy.down()
            await asyncio.sleep(OUTAGE_S)
            await self.rabbitmq.start_app()
            await self.rabbitmq.proxy.up()
        elif self.nats is not None:
            await self.nats.stop()
            await self.nats.proxy.down()
            await asyncio.sleep(OUTAGE_S)
            await self.nats.start()
            await self.nats.proxy.up()
        # The restart counts too: RabbitMQ's start_app takes seconds on a busy machine.
        down_s = time.monotonic() - started
        self.outages.append(f"broker {down_s:.0f}s")
        self.note(f"broker up after {down_s:.1f}s")

    async def _database_outage(self) -> None:
        self.note(f"database down (pg_ctl stop -m fast) for {OUTAGE_S}s")
        await self.db.stop()
        await asyncio.sleep(OUTAGE_S)
        await self.db.start()
        self.outages.append(f"database {OUTAGE_S:.0f}s")
        self.note("database up")

    async def _database_freeze(self) -> None:
        """Connections stay open and new ones are accepted, but nothing answers; a relay and a
        worker are stopped meanwhile: each must still exit within its bound."""
        self.note(f"database frozen (connections open, no answers) for {FREEZE_S}s")
        self.db_proxy.freeze()
        await asyncio.sleep(1)
        stops = []
        for kind in ("relay", "worker"):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    service = await self._idle(kind)
                    service.busy = True
                    stops.append(asyncio.create_task(self._cycle(service, "term")))
        await asyncio.sleep(FREEZE_S - 1)
        self.db_proxy.thaw()
        self.outages.append(f"database freeze {FREEZE_S:.0f}s")
        self.note("database answers again")
        await asyncio.gather(*stops)

    async def _inject_poison(self) -> None:
        """Messages no producer of the service sends, straight into the contract's topic/queue."""
        for i in range(POISON_EACH):
            self.poison[f'{{"chaos-poison": "malformed-{i}", '] = "malformed_message"
            unknown = {
                "id": str(uuid4()),
                "type": "ChaosUnknown",
                "schema_version": 1,
                "occurred_at": datetime.now(UTC).isoformat(),
                "correlation_id": f"chaos-poison-unknown-{i}",
                "payload": {},
            }
            self.poison[json.dumps(unknown)] = "unknown_contract"
        python = str(self.project / ".venv/bin/python")
        if self.redis is not None:
            args = [ARQ_POISON, self.redis.url]
        elif self.tansu is not None:
            args = [KAFKA_POISON, self.env["KAFKA_BOOTSTRAP_SERVERS"]]
        else:  # through the rendered adapter's own functions, as its tests' send_raw does
            args = [RABBITMQ_POISON if self.rabbitmq is not None else NATS_POISON, self.package]
        await run_cmd(
            [python, "-c", *args, self.contract.topic, *self.poison],
            timeout_s=60, cwd=self.project, env=self.env,
        )  # fmt: skip
        self.note(f"injected {len(self.poison)} poison messages into {self.contract.topic}")

    # --- drain and counting ---

    async def drain(self) -> float | None:
        """Seconds until every written event has an effect or a dead letter, and every poison
        message a dead letter; None if that did not happen in time or progress stopped."""
        started = time.monotonic()
        last, last_change = -1, started
        while True:
            pending = await self._pending()
            if pending == 0:
                return time.monotonic() - started
            now = time.monotonic()
            if pending != last:
                last, last_change = pending, now
            if now - started > self.args.drain_timeout_s or now - last_change > self.args.stall_s:
                self.note(f"drain stopped with {pending} events/poison messages without an outcome")
                self._who_went_silent()
                return None
            await asyncio.sleep(1)

    def _who_went_silent(self) -> None:
        """Each process's last log event and its age: the one that stopped working shows."""
        for service in self.services:
            last = service.last_event()
            age_s = time.time() - service.log.stat().st_mtime
            self.note(
                f"  {service.name}: last event {last or '(none since start)'}, {age_s:.0f}s ago"
            )
        if self.tansu is None:
            return
        if idle_in_group([s.last_event() for s in self.services if s.kind == "worker"]):
            self.group_stalled = True
            self.note(
                "  every worker is idle right after joining its consumer group, and nothing is"
                " delivered: the group is stalled, as tansu has been seen to wedge a group"
                f" (exit {EXIT_GROUP_STALLED})"
            )
        else:
            self.note(
                "  a worker silent while events wait is stuck in its consumer group: tansu has been"
                " seen to wedge a group after many rebalances, and a worker that never returns"
                " from a join or revoke looks the same"
            )

    async def _pending(self) -> int:
        t = self.contract.name.replace("'", "")
        rows = await self.db.query(
            "SELECT count(DISTINCT o.message_id) FROM outbox o"
            f" WHERE o.type = '{t}' AND NOT EXISTS (SELECT 1 FROM example_effects e"
            " WHERE e.message_id = o.message_id) AND NOT EXISTS (SELECT 1 FROM dead_letters d"
            " WHERE d.message_id = o.message_id)"
        )
        letters = {
            bytes.fromhex(raw).decode(errors="replace") for (raw,) in await self._letters("raw")
        }
        return int(rows[0][0]) + len(set(self.poison) - letters)

    async def _letters(self, *columns: str) -> list[list[str]]:
        select = ", ".join("encode(raw, 'hex')" if c == "raw" else c for c in columns)
        return await self.db.query(f"SELECT {select} FROM dead_letters ORDER BY id")

    async def stop_all(self) -> None:
        """SIGTERM every process once all are at work (a just restarted one may still import)."""
        self.finishing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AT_WORK_AFTER_S):
                while not all(s.at_work() for s in self.services if s.kind != "api"):
                    await asyncio.sleep(0.3)
        await asyncio.gather(*(s.term() for s in self.services if s.running))
        for service in self.services:
            with service.log.open("rb") as log:
                plain = [line for line in log if not _json_object(line)]
            service.stats.plain_log_lines += len(plain)
            # The run directory goes at the end: the lines themselves are the only trace.
            for line in plain[:5]:
                text = line.decode(errors="replace").rstrip()
                self.note(f"  {service.name}: not a JSON line: {text[:300]}")


def _json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


ARQ_POISON = """
import asyncio, sys, time
from redis.asyncio import Redis

async def main(url, queue, *raws):
    redis = Redis.from_url(url)
    for i, raw in enumerate(raws):
        await redis.set(f"arq:job:chaos-poison-{i}", raw.encode())
        await redis.zadd(queue, {f"chaos-poison-{i}": time.time() * 1000})
    await redis.aclose()

asyncio.run(main(*sys.argv[1:]))
"""

KAFKA_POISON = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main(servers, topic, *raws):
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for i, raw in enumerate(raws):
            await producer.send_and_wait(topic, raw.encode(), key=f"chaos-poison-{i}".encode())
    finally:
        await producer.stop()

asyncio.run(main(*sys.argv[1:]))
"""


# The service's Settings from the environment, its adapter's topology, then one message per raw.
RABBITMQ_POISON = """
import asyncio, importlib, sys
import aio_pika

async def main(package, topic, *raws):
    rabbit = importlib.import_module(package + ".broker_rabbitmq")
    consumed = {c.TOPIC for c in importlib.import_module(package + ".contracts").CONSUMED}
    settings = importlib.import_module(package + ".settings").Settings()
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await rabbit.declare_exchange(channel, settings)
        for name in consumed:
            await rabbit.declare_queue(channel, exchange, settings, name)
        for raw in raws:
            await exchange.publish(aio_pika.Message(raw.encode()), topic, mandatory=False)

asyncio.run(main(*sys.argv[1:]))
"""

NATS_POISON = """
import asyncio, importlib, sys

async def main(package, topic, *raws):
    broker = importlib.import_module(package + ".broker_nats")
    settings = importlib.import_module(package + ".settings").Settings()
    nc = await broker.connect(settings, name="chaos-poison")
    try:
        js = nc.jetstream()
        await broker.ensure_streams(settings, js)
        for raw in raws:  # no Nats-Msg-Id: each is a message of its own
            await js.publish(broker.subject(settings, topic), raw.encode())
    finally:
        await nc.close()

asyncio.run(main(*sys.argv[1:]))
"""


# --- the report ---


@dataclass
class Counts:
    committed: set[str]
    effects: Counter[str]
    letters: list[tuple[str, str, str]]  # (reason, message id or "", raw)


async def count(run: Run) -> Counts:
    t = run.contract.name.replace("'", "")
    committed = {
        r[0]
        for r in await run.db.query(f"SELECT DISTINCT message_id FROM outbox WHERE type = '{t}'")
    }
    effects = Counter(
        {
            r[0]: int(r[1])
            for r in await run.db.query(
                "SELECT message_id, count(*) FROM example_effects"
                f" WHERE contract = '{t}' GROUP BY 1"
            )
        }
    )
    rows = await run._letters("reason", "coalesce(message_id::text, '')", "raw")
    letters = [
        (reason, mid, bytes.fromhex(raw).decode(errors="replace")) for reason, mid, raw in rows
    ]
    return Counts(committed, effects, letters)


def report(run: Run, counts: Counts, drain_s: float | None) -> list[str]:
    """Print the table; return the failed checks."""
    w = run.writes
    written = w.accepted | counts.committed
    lettered = {mid for _, mid, _ in counts.letters if mid}
    lost = written - counts.effects.keys() - lettered
    not_committed = w.accepted - counts.committed
    doubles = {mid: n for mid, n in counts.effects.items() if n > 1}
    phantom = counts.effects.keys() - written
    unexpected = [(r, raw) for r, _, raw in counts.letters if run.poison.get(raw) != r]
    missing_poison = set(run.poison) - {
        raw for r, _, raw in counts.letters if run.poison.get(raw) == r
    }
    by_reason = Counter(r for r, _, _ in counts.letters)
    expected = Counter(run.poison.values())

    def line(label: str, value: object) -> None:
        print(f"  {label:<34} {value}")

    a = run.args
    print(f"\nchaos {a.variant}: {a.events} writes, seed {a.seed}, broker {run.broker}")
    line("accepted writes (2xx)", len(w.accepted))
    line("writes not accepted", _counter(w.failed))
    line("attempts retried", _counter(w.retried))
    line("events committed (outbox)", len(counts.committed))
    line("effects", sum(counts.effects.values()))
    line("distinct message ids with effect", len(counts.effects))
    line("double effects", len(doubles))
    line(
        "lost (no effect, no dead letter)",
        f"{len(lost)}  (accepted but not committed: {len(not_committed)})",
    )
    reasons = ", ".join(
        f"{r} {n}" + (f"/{expected[r]} expected" if r in expected else "")
        for r, n in sorted(by_reason.items())
    )
    line("dead letters by reason", reasons or "none")
    line("unexpected dead letters", len(unexpected))
    line("time to drain", f"{drain_s:.1f}s" if drain_s is not None else "did not drain")
    line("outages", ", ".join(run.outages) or "none")
    print(
        f"\n  {'process':<7} {'kills':>5} {'terms':>5} {'max exit after TERM':>19} {'over':>4}"
        f"  {'exit codes after TERM':<22} {'unprompted exits':<17} plain-text log lines"
    )
    for kind, s in run.stats.items():
        print(
            f"  {kind:<7} {s.kills:>5} {s.terms:>5}"
            f" {s.max_exit_s:>6.1f}s (bound {run.exit_bound_s:>3.0f}s)"
            f" {s.over_bound:>4}  {_counter(s.exit_codes):<22} {_counter(s.unprompted):<17}"
            f" {s.plain_log_lines}"
        )
    checks = {
        "no event lost": not lost,
        "no double effect": not doubles,
        "no effect without a write": not phantom,
        "no unexpected dead letter": not unexpected,
        "every poison message dead-lettered with its reason": not missing_poison,
        "drained in time": drain_s is not None,
        f"every process exited within {run.exit_bound_s:.0f}s of SIGTERM": not any(
            s.over_bound for s in run.stats.values()
        ),
        "every SIGTERM ended in a clean exit": all(
            s.exit_codes.keys() <= CLEAN_TERM_CODES | {-signal.SIGKILL}
            and s.exit_codes[-signal.SIGKILL] == s.over_bound
            for s in run.stats.values()
        ),
        "no process exited unprompted": not any(s.unprompted for s in run.stats.values()),
        # A database outage is a 503 to retry; a 500 or a dropped connection is not an answer.
        "the API answered every write with 2xx or 503": not w.failed
        and set(w.retried) <= {"HTTP 503"},
        "every log line is one JSON object (ENVIRONMENT=prod)": not any(
            s.plain_log_lines for s in run.stats.values()
        ),
        f">= {a.kills} SIGKILLs and >= {a.terms} SIGTERMs per relay/worker": all(
            run.stats[k].kills >= a.kills and run.stats[k].terms >= a.terms
            for k in ("relay", "worker")
        ),
    }
    print()
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    for reason, raw in unexpected[:5]:
        print(f"  unexpected dead letter: {reason}: {raw[:160]}")
    for mid in sorted(lost)[:5]:
        print(f"  lost: {mid}")
    return [name for name, ok in checks.items() if not ok]


def _counter(counter: Counter[Any]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(counter.items(), key=str)) or "none"


# --- main ---


async def chaos_run(args: argparse.Namespace, base: Path, project: Path) -> int:
    run = Run(args, base, project)
    phase = "starting servers"
    try:
        async with asyncio.timeout(args.timeout_s):
            await run.start_servers()
            phase = "starting the service"
            await run.start_services()
            phase = "load and chaos"
            run.note(f"driving {args.events} writes with chaos")
            await asyncio.gather(run.drive(), run.chaos())
            phase = "drain"
            run.note("load and chaos done; waiting for the drain")
            drain_s = await run.drain()
            phase = "final shutdown"
            await run.stop_all()
            phase = "counting"
            failed = report(run, await count(run), drain_s)
    except TimeoutError:
        print(f"chaos: FAILED: the run took over --timeout-s {args.timeout_s}s (in phase: {phase})")
        return 1
    except ChaosError as exc:
        print(f"chaos: FAILED while {phase}: {exc}")
        return 1
    finally:
        run.finishing = True
        for service in run.services:
            service.destroy()
        await run.db_proxy.down()
        if run.tansu is not None:
            await run.tansu.proxy.down()
            run.tansu.kill()
        if run.redis is not None:
            run.redis.kill()
        for proxied in (run.rabbitmq, run.nats):
            if proxied is not None:
                await proxied.proxy.down()
        if run.nats is not None:
            run.nats.kill()
        if run.rabbitmq is not None:
            await run.rabbitmq.stop()
        with contextlib.suppress(ChaosError):
            await run.db.stop("immediate")
    if failed:
        print(f"\nchaos: FAILED: {'; '.join(failed)}")
        return EXIT_GROUP_STALLED if run.group_stalled and set(failed) <= STALL_CHECKS else 1
    print("\nchaos: passed")
    return 0


@contextlib.asynccontextmanager
async def _cancel_on_sigterm() -> AsyncIterator[None]:
    """SIGTERM to the harness cleans up like Ctrl-C does (asyncio.run turns that into a cancel)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _main(args: argparse.Namespace, base: Path, project: Path) -> int:
    async with _cancel_on_sigterm():
        return await chaos_run(args, base, project)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="arq-default", choices=list(VARIANTS))
    parser.add_argument("--events", type=int, default=10_000, help="writes through the API")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of relays, and of workers")
    parser.add_argument("--terms", type=int, default=5, help="SIGTERMs of relays, and of workers")
    parser.add_argument(
        "--min-load-s", type=float, default=60, help="spread the writes over at least this"
    )
    parser.add_argument("--drain-timeout-s", type=float, default=240)
    parser.add_argument(
        "--stall-s", type=float, default=60, help="stop waiting after no progress for this long"
    )
    parser.add_argument(
        "--exit-margin-s",
        type=float,
        help="allowed beyond SHUTDOWN_TIMEOUT_S (default: the service's SHUTDOWN_MARGIN_S + 2 s)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=900, help="bound of the whole run after uv sync"
    )
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(10**6))
    parser.add_argument(
        "--keep", action="store_true", help="keep the run directory (logs) for a look"
    )
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    base = Path(tempfile.mkdtemp(prefix="chaos-"))
    base.chmod(0o755)  # the PostgreSQL server runs as its own user when this runs as root
    (base / "logs").mkdir()
    (base / "logs").chmod(0o777)
    try:
        print(f"chaos: rendering {args.variant} into {base} (seed {args.seed})", flush=True)
        project = base / "project"
        render(copy_template(base / "template"), VARIANTS[args.variant], project)
        synced = subprocess.run(
            [uv(), "sync", "-q"], cwd=project, env=subprocess_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=SYNC_TIMEOUT_S, check=False,
        )  # fmt: skip
        if synced.returncode != 0:
            print(f"chaos: FAILED: uv sync in the rendered project: {synced.stderr[-2000:]}")
            return 1
        return asyncio.run(_main(args, base, project))
    except KeyboardInterrupt:
        print("chaos: interrupted; everything it started is stopped")
        return 130
    except asyncio.CancelledError:  # SIGTERM, see _cancel_on_sigterm
        print("chaos: terminated; everything it started is stopped")
        return 143
    finally:
        if args.keep:
            print(f"chaos: kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
