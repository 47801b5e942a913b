"""The tutorial (docs/tutorial/first-service.md) as a reader follows it with servers of their own.

Its commands are taken from the page: start the processes, check readiness, send the orders, make
the handler fail (the page's Python block), list the dead letter, fix, replay, stop. What a reader
would fill in is filled in: `.env` names this run's servers, and, so that runs beside each other
do not meet, its own database, queue prefix (`TOPIC_PREFIX`) and API port. The render itself is
the page's `copier copy`, run in tests/test_docs.py; here the template is rendered in-process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from conftest import REPO, Variant, copy_template, render, subprocess_env, tail, uv
from test_docs import SHELL_BLOCK, the_line

TUTORIAL = REPO / "docs" / "tutorial" / "first-service.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
JSON_BLOCK = re.compile(r"^```json\n(.*?)^```", re.MULTILINE | re.DOTALL)
PATIENCE_S = 90.0
STOP_TIMEOUT_S = 60.0

pytestmark = pytest.mark.variant


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Reader:
    """A shell in the service's directory with the reader's environment, and their servers."""

    service: Path
    env: dict[str, str]
    database: str
    redis_url: str
    api_port: int = field(default_factory=free_port)

    def command(self, line: str) -> str:
        return line.replace("localhost:8000", f"localhost:{self.api_port}")

    def run(self, line: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.command(line)],
            cwd=self.service,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check:
            assert proc.returncode == 0, (
                f"`{line}` exited {proc.returncode}:\n{tail(proc.stdout + proc.stderr)}"
            )
        return proc

    @contextmanager
    def process(self, line: str) -> Iterator[subprocess.Popen[bytes]]:
        """A long-running command of the page (a terminal of its own); SIGTERM ends it with 0."""
        log = (self.service.parent / f"{line.split()[-1]}.log").open("ab")
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {self.command(line)}"],
            cwd=self.service,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # uv and the service's process, ended together on failure
        )
        try:
            yield proc
            proc.send_signal(signal.SIGTERM)  # what Ctrl-C or `docker compose down` sends
            assert proc.wait(timeout=STOP_TIMEOUT_S) == 0, f"`{line}` exited {proc.returncode}"
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.close()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not check():
        assert time.monotonic() < deadline, f"not within {PATIENCE_S}s: {what}"
        time.sleep(0.5)


def psql(reader: Reader, sql: str) -> str:
    return reader.run(f'psql -d {reader.database} -Atc "{sql}"').stdout.strip()


def shell_blocks(document: Path, needle: str) -> list[str]:
    """The shell blocks of `document` that contain `needle`, whole (a JSON body spans lines)."""
    return [block for block in SHELL_BLOCK.findall(document.read_text()) if needle in block]


def set_env_file(service: Path, values: dict[str, str]) -> None:
    """Fill in .env as the page asks: existing names get the value, the rest are appended."""
    env_file = service / ".env"
    lines = env_file.read_text().splitlines()
    kept = [line for line in lines if line.split("=", 1)[0] not in values]
    env_file.write_text("\n".join([*kept, *(f"{k}={v}" for k, v in values.items())]) + "\n")


def with_handler(service: Path, block: str | None) -> None:
    """The page's handle_order_placed_v1 in place of the rendered one; None: the rendered one."""
    handlers = service / "src" / "orders_service" / "handlers.py"
    original = service.parent / "handlers.py.orig"
    if block is None:
        handlers.write_text(original.read_text())
        return
    text = handlers.read_text()
    original.write_text(text)
    start = text.index("async def handle_order_placed_v1(")
    end = text.index("\n\n\n", start)
    text = text[:start] + block.rstrip("\n") + text[end:]
    text = text.replace(
        "from .consumer import Handler\n",
        "from .consumer import Handler\nfrom .errors import PermanentError\n",
    )
    handlers.write_text(text)


@pytest.fixture
def reader(tmp_path: Path) -> Reader:
    server = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not server or not redis_url:
        pytest.fail("TEST_DATABASE_URL and TEST_REDIS_URL not set: run `make test`", pytrace=False)
    service = tmp_path / "orders-service"
    render(copy_template(tmp_path / "template"), Variant("tutorial", {}), service)
    parts = urlsplit(server.replace("postgresql+asyncpg://", "postgresql://"))
    env = subprocess_env()
    env["PATH"] = os.pathsep.join([str(Path(uv()).parent), env.get("PATH", "")])
    # createdb and psql find the server through the reader's environment.
    env |= {"PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432)}
    env |= {"PGUSER": parts.username or "postgres", "PGPASSWORD": parts.password or ""}
    return Reader(service, env, database=f"tutorial_{uuid4().hex[:12]}", redis_url=redis_url)


def test_the_tutorial_runs_as_written_with_servers_of_your_own(reader: Reader) -> None:
    # 3. Start it, with your own servers.
    reader.run(the_line(TUTORIAL, "cp .env.example .env"))
    server = urlsplit(
        os.environ["TEST_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    )
    set_env_file(
        reader.service,
        {
            "DATABASE_URL": server._replace(path=f"/{reader.database}").geturl(),
            "REDIS_URL": reader.redis_url,
            "TOPIC_PREFIX": f"{reader.database}.",
            "API_PORT": str(reader.api_port),
        },
    )
    reader.run(
        the_line(TUTORIAL, "createdb orders_service").replace("orders_service", reader.database)
    )
    try:
        follow_the_tutorial(reader, TUTORIAL.read_text())
    finally:
        reader.run(f"dropdb --if-exists --force {reader.database}", check=False)


def follow_the_tutorial(reader: Reader, page: str) -> None:
    reader.run(the_line(TUTORIAL, "orders-service migrate"))
    api, relay, worker = (
        the_line(TUTORIAL, f"uv run orders-service {c}") for c in ("api", "relay", "worker")
    )
    ready_line = the_line(TUTORIAL, "/health/ready")
    (ready,) = [json.loads(b) for b in JSON_BLOCK.findall(page) if '"status"' in b]
    first_order, usd_order = shell_blocks(TUTORIAL, "/records/order-placed/v1")

    def answers_ready() -> bool:
        answer = reader.run(ready_line, check=False).stdout.strip()
        return answer == json.dumps(ready, separators=(",", ":"))

    def count(sql: str, expected: int) -> Callable[[], bool]:
        return lambda: psql(reader, sql) == str(expected)

    with reader.process(api), reader.process(relay):
        eventually(answers_ready, "the API answers /health/ready as the page shows")

        # 4. Send a request; 5. watch the event go through.
        with reader.process(worker):
            created = reader.run(first_order).stdout
            assert "HTTP/1.1 201 Created" in created
            assert "x-correlation-id: tutorial-1" in created
            # Headers, a blank line, the body (read in text mode: \r\n comes as \n).
            message_id = json.loads(created.split("\n\n", 1)[1])["message_id"]
            effect = f"SELECT count(*) FROM example_effects WHERE message_id = '{message_id}'"
            eventually(count(effect, 1), "the first order's effect")
        assert psql(reader, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == "1"
        assert psql(reader, "SELECT attempts, processed_at IS NOT NULL FROM inbox") == "1|t"

        # 6. Make a handler fail (the page's version of it), restart the worker, send USD.
        (block,) = [b for b in PYTHON_BLOCK.findall(page) if "PermanentError" in b]
        with_handler(reader.service, block)
        with reader.process(worker):
            reader.run(usd_order)
            eventually(count("SELECT count(*) FROM dead_letters", 1), "the dead letter")

        # 7. List the dead letter.
        listed = [
            json.loads(line)
            for line in reader.run(the_line(TUTORIAL, "dlq list")).stdout.splitlines()
        ]
        assert [(d["id"], d["reason"], d["error_message"]) for d in listed] == [
            (1, "permanent_error", "PermanentError: we do not take USD")
        ]

        # 8. Fix it and replay.
        with_handler(reader.service, None)
        with reader.process(worker):
            replayed = reader.run(the_line(TUTORIAL, "dlq replay 1")).stdout
            assert replayed.startswith(
                f"replayed dead letter 1 as message {listed[0]['message_id']}"
            )
            eventually(
                count("SELECT count(*) FROM example_effects", 2), "the replayed order's effect"
            )
        assert reader.run(the_line(TUTORIAL, "dlq list")).stdout == ""
        again = reader.run(the_line(TUTORIAL, "dlq replay 1"), check=False)
        assert again.returncode == 1
        assert "error: dead letter 1 was already replayed at" in again.stderr
    # 9. Stop it: each process exited 0 on SIGTERM (Reader.process).
