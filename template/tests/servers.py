"""Where the test servers come from: an environment variable, or a Testcontainers container."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

IMAGES = {"postgres": "postgres:16-alpine", "redis": "redis:7-alpine", "kafka": "confluentinc/cp-kafka:7.6.1"}


@contextmanager
def server_url(variable: str, kind: str) -> Iterator[str]:
    """Yield the server URL from `variable`, or start a container of `kind` for the session."""
    url = os.environ.get(variable)
    if url:
        yield plain_postgres_url(url) if kind == "postgres" else url
        return
    container = _container(variable, kind)
    with container:
        yield _url(container, kind)


def plain_postgres_url(url: str) -> str:
    """`url` as asyncpg takes it: TEST_DATABASE_URL may name SQLAlchemy's driver, as DATABASE_URL may."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _container(variable: str, kind: str) -> Any:
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        raise RuntimeError(
            f"{variable} is not set and there is no Docker engine for Testcontainers. "
            f"Set {variable} to a running {kind} server, or start Docker."
        )
    module = container_module(kind)
    if kind == "postgres":
        return module.PostgresContainer(IMAGES[kind], driver=None)
    if kind == "kafka":
        return module.KafkaContainer(IMAGES[kind]).with_kraft()
    return module.RedisContainer(IMAGES[kind])


def container_module(kind: str) -> ModuleType:
    """Testcontainers' module for `kind`: under `community` since 4.15 (the old path warns)."""
    try:
        return importlib.import_module(f"testcontainers.community.{kind}")
    except ModuleNotFoundError:
        return importlib.import_module(f"testcontainers.{kind}")


def _url(container: Any, kind: str) -> str:
    if kind == "postgres":
        return str(container.get_connection_url())
    if kind == "kafka":
        return str(container.get_bootstrap_server())
    host = container.get_container_host_ip()
    return f"redis://{host}:{container.get_exposed_port(6379)}/0"
