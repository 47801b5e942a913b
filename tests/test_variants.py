"""Variant tests: each rendered variant's own `make test` passes against real services."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from shutil import which

import pytest
import yaml
from conftest import (
    REPO,
    VARIANTS,
    Rendered,
    Variant,
    assert_log_kept,
    failing_project,
    keep_log,
    parse_variant,
    run_logged,
    subprocess_env,
    tail,
)

# URLs of the shared servers the rendered suites use instead of Testcontainers, by broker.
REQUIRED_ENV = {
    "arq": ("TEST_DATABASE_URL", "TEST_REDIS_URL"),
    "kafka": ("TEST_DATABASE_URL", "TEST_KAFKA_BOOTSTRAP_SERVERS"),
    "rabbitmq": ("TEST_DATABASE_URL", "TEST_RABBITMQ_URL"),
    "nats": ("TEST_DATABASE_URL", "TEST_NATS_URL"),
}
# A rendered suite's server URLs (TEST_DATABASE_URL, TEST_KAFKA_BOOTSTRAP_SERVERS, ...) end so.
SERVER_URL_SUFFIXES = ("_URL", "_BOOTSTRAP_SERVERS")
# One variant's whole suite: uv sync, lint, type check and every integration test. Five times the
# slowest suite on a loaded 2-core machine (a Kafka suite: 4 min), beyond the 15 min one took with a
# second CI run beside it on a slow day, so that a suite that hangs (each of its tests is bounded at
# 300 s) fails in time for the rest of a 90-minute CI run.
TIMEOUT_S = float(os.environ.get("VARIANT_TIMEOUT_S", "1200"))
# The server kind of each broker, as the rendered suites name their containers and images.
BROKER_SERVER = {"arq": "redis"}
# The line a rendered suite ends with when Testcontainers started its servers (tests/conftest.py).
STARTUP_LINE = re.compile(r"^container start-up: (.+)$", re.MULTILINE)


def test_ci_matrix_is_variants_yml() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    matrix = workflow["jobs"]["variant"]["strategy"]["matrix"]["variant"]
    assert matrix == list(VARIANTS), "ci.yml's variant matrix differs from variants.yml"


def test_ci_names_an_image_for_every_server_of_a_testcontainers_variant() -> None:
    """On GitHub's runners the public images are pulled: scripts/images.sh must build none."""
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    images = set(workflow["jobs"]["variant"]["env"])
    kinds = {"postgres"} | {
        BROKER_SERVER.get(v.data.get("broker", "arq"), v.data.get("broker", "arq"))
        for v in VARIANTS.values()
        if v.servers == "testcontainers"
    }
    assert {f"TEST_{kind.upper()}_IMAGE" for kind in kinds} - images == set()


def is_server_url(name: str) -> bool:
    return name.startswith("TEST_") and name.endswith(SERVER_URL_SUFFIXES)


def test_a_testcontainers_variant_gets_no_server_url_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = {"TEST_POSTGRES_IMAGE": "outbox-test-postgres:1", "TEST_KAFKA_IDEMPOTENCE": "false"}
    urls = {
        "TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
        "TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TEST_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    }
    for name, value in {**kept, **urls}.items():
        monkeypatch.setenv(name, value)
    env = suite_env(Variant("arq-default", {}, "testcontainers"))
    assert not urls.keys() & env.keys()
    assert kept.items() <= env.items()
    assert urls.items() <= suite_env(Variant("arq-other", {}, "shared")).items()


def test_servers_other_than_shared_or_testcontainers_are_refused() -> None:
    with pytest.raises(ValueError, match="variant x: servers must be shared or testcontainers"):
        parse_variant({"name": "x", "servers": "compose"})


def require_docker(variant: Variant) -> None:
    """Fail, naming what is missing, unless a Docker engine answers: never let such a suite skip."""
    answers = which("docker") is not None and (
        subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    )
    if not answers:
        pytest.fail(
            f"variant {variant.name} runs its suite through Testcontainers and no Docker engine "
            "answers: run `make test` (scripts/docker.sh starts one)",
            pytrace=False,
        )


def suite_env(variant: Variant) -> dict[str, str]:
    """The rendered suite's environment: the shared servers' URLs, or none (Testcontainers)."""
    env = subprocess_env()
    if variant.servers == "testcontainers":
        # Image names (scripts/images.sh) and DOCKER_HOST stay: they are how the containers start.
        return {name: value for name, value in env.items() if not is_server_url(name)}
    broker = variant.data.get("broker", "arq")
    missing = [name for name in REQUIRED_ENV[broker] if not env.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run `make test` (scripts/services.sh provides them)",
            pytrace=False,
        )
    return env


@pytest.mark.variant
def test_rendered_make_test(
    rendered: Rendered, variant: Variant, request: pytest.FixtureRequest
) -> None:
    if variant.servers == "testcontainers":
        require_docker(variant)
    log = rendered.path.parent / "make-test.log"
    code = run_logged(
        ["make", "test"],
        cwd=rendered.path,
        log=log,
        timeout_s=TIMEOUT_S,
        env=suite_env(variant),
    )
    output = log.read_text(errors="replace")
    if code != 0:
        what = f"took over {TIMEOUT_S:.0f}s" if code is None else f"exited {code}"
        kept = keep_log(log, variant.name)
        pytest.fail(
            f"`make test` of variant {variant.name} {what}; the end of {kept}:\n{tail(output)}",
            pytrace=False,
        )
    if variant.servers == "testcontainers":
        startup = STARTUP_LINE.search(output)
        if startup is None:
            pytest.fail(
                f"`make test` of variant {variant.name} passed without starting any container "
                f"(no 'container start-up:' line in {log})",
                pytrace=False,
            )
        broker = variant.data.get("broker", "arq")
        started = dict(kind_s.split("=", 1) for kind_s in startup.group(1).split())
        missing = {"postgres", BROKER_SERVER.get(broker, broker)} - set(started)
        if missing:
            pytest.fail(
                f"`make test` of variant {variant.name} used no container for "
                f"{', '.join(sorted(missing))} (started: {startup.group(1)})",
                pytrace=False,
            )
        # To the variant table, through the report (which pytest-xdist's workers send on).
        request.node.user_properties.append(("containers", startup.group(1)))


def test_a_failed_variants_log_outlives_its_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    project = failing_project(tmp_path / "arq-broken")
    for name in REQUIRED_ENV["arq"]:
        monkeypatch.setenv(name, "unused")
    variant = Variant("arq-broken", {})
    with pytest.raises(pytest.fail.Exception) as failed:
        test_rendered_make_test(Rendered(variant, project, (), frozenset()), variant, request)
    assert_log_kept(failed.value, pruned=tmp_path / "arq-broken")
