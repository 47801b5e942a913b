"""Where the test servers come from: an environment variable, or a Testcontainers container.

Images come from TEST_POSTGRES_IMAGE, TEST_REDIS_IMAGE, TEST_KAFKA_IMAGE, TEST_RABBITMQ_IMAGE and
TEST_NATS_IMAGE when set (a registry mirror, or images built locally), else the public images in
IMAGES.
"""

from __future__ import annotations

import importlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import docker.errors

IMAGES = {
    "postgres": "postgres:16-alpine",
    "redis": "redis:7-alpine",
    "kafka": "apache/kafka:3.9.1",
    "rabbitmq": "rabbitmq:4.1-alpine",
    "nats": "nats:2.10-alpine",
}
# Kinds started as plain containers, with their own readiness checks (see their functions below).
PLAIN_CONTAINERS = {"kafka", "nats"}
# Testcontainers' class names, where they are not the kind's name capitalised.
CLASS_NAMES = {"rabbitmq": "RabbitMqContainer"}
# Seconds from starting each kind's container until it answered, for the session's summary.
STARTUP_S: dict[str, float] = {}

KAFKA_PORT = 9092
# Where the kafka container's start-up shell waits for its advertised address (`_advertise`).
ADVERTISED_FILE = "/tmp/advertised-listeners.sh"
READY_TIMEOUT_S = 120.0
NATS_PORT = 4222
# apache/kafka's single-node KRaft settings; the listener clients use is PLAINTEXT on 9092.
# Confluent's cp-kafka reads the same variables, and wants CLUSTER_ID besides.
KAFKA_ENV = {
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:9093",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs",
    "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw",
}


def image(kind: str) -> str:
    """The image for `kind`: TEST_<KIND>_IMAGE, else the public default."""
    return os.environ.get(f"TEST_{kind.upper()}_IMAGE") or IMAGES[kind]


@contextmanager
def server_url(variable: str, kind: str) -> Iterator[str]:
    """Yield the server URL from `variable`, or start a container of `kind` for the session."""
    url = os.environ.get(variable)
    if url:
        yield plain_postgres_url(url) if kind == "postgres" else url
        return
    _require_engine(variable, kind)
    started = time.monotonic()
    with _started(kind) as container:
        url = _url(container, kind)
        STARTUP_S[kind] = time.monotonic() - started
        yield url


def plain_postgres_url(url: str) -> str:
    """`url` as asyncpg takes it: TEST_DATABASE_URL may name SQLAlchemy's driver, as DATABASE_URL may."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _require_engine(variable: str, kind: str) -> None:
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        raise RuntimeError(
            f"{variable} is not set and there is no Docker engine for Testcontainers. "
            f"Set {variable} to a running {kind} server, or start Docker."
        )


@contextmanager
def _started(kind: str) -> Iterator[Any]:
    """Create and start the container of `kind`; a failure names the image and how to change it."""
    container = None
    try:
        container = _container(kind)  # may pull the image
        container.start()
    except Exception as error:
        if container is not None:
            with suppress(Exception):
                container.stop()
        raise RuntimeError(
            f"could not start the {kind} container from image {image(kind)!r} "
            f"({type(error).__name__}: {error}); set TEST_{kind.upper()}_IMAGE to an image "
            "your Docker engine has or can pull"
        ) from error
    try:
        yield container
    finally:
        container.stop()


def container_class(kind: str) -> Any:
    """The Testcontainers class for `kind`: modules under `community` since 4.15 (the old path warns)."""
    if kind in PLAIN_CONTAINERS:
        return importlib.import_module("testcontainers.core.container").DockerContainer
    try:
        module = importlib.import_module(f"testcontainers.community.{kind}")
    except ModuleNotFoundError:
        module = importlib.import_module(f"testcontainers.{kind}")
    return getattr(module, CLASS_NAMES.get(kind, f"{kind.capitalize()}Container"))


def _container(kind: str) -> Any:
    if kind == "postgres":
        return container_class(kind)(image(kind), driver=None)
    if kind == "kafka":
        return _kafka_container()
    if kind == "nats":
        return _nats_container()
    return container_class(kind)(image(kind))


def _nats_container() -> Any:
    """A plain container with JetStream on, not Testcontainers' NatsContainer.

    That class starts the server without JetStream unless told, and waits for it with a helper
    that recent Testcontainers deprecates (a warning that this suite's filters make an error).
    The server is ready once it greets a client (`_nats_greets`).
    """
    return container_class("nats")(image("nats")).with_exposed_ports(NATS_PORT).with_command("-js")


def _kafka_container() -> Any:
    """A plain container, not Testcontainers' KafkaContainer (which runs Confluent's start script).

    A Kafka broker tells clients the address to come back to, which is known only once its
    container runs: it starts with a shell that waits for that address (`_advertise` writes it),
    then runs the image's own entry point with KAFKA_ADVERTISED_LISTENERS set.
    """
    container = container_class("kafka")(image("kafka")).with_exposed_ports(KAFKA_PORT)
    for name, value in KAFKA_ENV.items():
        container.with_env(name, value)
    wait_then_run = f'while [ ! -f {ADVERTISED_FILE} ]; do sleep 0.1; done; . {ADVERTISED_FILE}; exec "$@"'
    container.with_kwargs(entrypoint=["sh", "-c", wait_then_run, "sh"])
    return container.with_command(_image_command(container))


def _image_command(container: Any) -> list[str]:
    """The image's entry point and command, pulling the image first if the engine lacks it."""
    images = container.get_docker_client().client.images
    try:
        found = images.get(container.image)
    except docker.errors.ImageNotFound:
        found = images.pull(container.image)
    config = found.attrs["Config"]
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def _advertise(container: Any) -> tuple[str, int]:
    """Tell the waiting container the address clients reach it at; that address."""
    host = container.get_container_host_ip()
    port = int(container.get_exposed_port(KAFKA_PORT))
    line = f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port}"
    # Written whole, then renamed: the waiting shell never reads half a file.
    write = f"echo '{line}' > {ADVERTISED_FILE}.new && mv {ADVERTISED_FILE}.new {ADVERTISED_FILE}"
    result = container.exec(["sh", "-c", write])
    if result.exit_code:
        raise RuntimeError(f"could not write {ADVERTISED_FILE} in the kafka container: {result.output!r}")
    return host, port


def _url(container: Any, kind: str) -> str:
    if kind == "postgres":
        return str(container.get_connection_url())
    if kind == "kafka":
        host, port = _advertise(container)
        _wait_for(container, "kafka", host, port, _kafka_lists_a_broker)
        return f"{host}:{port}"
    if kind == "rabbitmq":
        return f"amqp://guest:guest@{container.get_container_host_ip()}:{container.get_exposed_port(5672)}/"
    if kind == "nats":
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(NATS_PORT))
        _wait_for(container, "nats", host, port, _nats_greets)
        return f"nats://{host}:{port}"
    return f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"


def _wait_for(container: Any, kind: str, host: str, port: int, ready: Callable[[str, int], bool]) -> None:
    """Wait until `ready(host, port)`; fail with the container's last lines if it exits first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready(host, port):
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status == "exited":
            stdout, stderr = container.get_logs()
            last = (stdout + stderr).decode(errors="replace").strip().splitlines()[-20:]
            raise RuntimeError(f"the {kind} container ({image(kind)}) exited:\n" + "\n".join(last))
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the {kind} container ({image(kind)}) was not ready on {host}:{port} "
                f"within {READY_TIMEOUT_S:.0f}s ({ready.__doc__})"
            )
        time.sleep(0.5)


def _kafka_lists_a_broker(host: str, port: int) -> bool:
    """One Metadata round trip (v4: the oldest Kafka 4 still serves): does it list a broker?"""
    client_id = b"tests"
    # api key 3 (Metadata), version 4, correlation id 1, client id; no topics, no auto-creation
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            conn.sendall(struct.pack(">i", len(body)) + body)
            head = _read(conn, 16)  # size, correlation id, throttle time, number of brokers
    except OSError:
        return False
    if len(head) < 16:
        return False
    _size, correlation, _throttle_ms, brokers = struct.unpack(">iiii", head)
    return bool(correlation == 1 and brokers > 0)


def _nats_greets(host: str, port: int) -> bool:
    """Does the server send its INFO line to a new client (it listens once JetStream is up)?"""
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            return _read(conn, 5) == b"INFO "
    except OSError:
        return False


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := conn.recv(size - len(data))):
        data += chunk
    return data
