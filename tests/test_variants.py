"""Variant tests: each rendered variant's own `make test` passes against real services."""

from __future__ import annotations

import os

import pytest
import yaml
from conftest import REPO, VARIANTS, Rendered, Variant, run_logged, subprocess_env, tail

# URLs of the servers the rendered suites use instead of Testcontainers (no Docker here), by broker.
REQUIRED_ENV = {
    "arq": ("TEST_DATABASE_URL", "TEST_REDIS_URL"),
    "kafka": ("TEST_DATABASE_URL", "TEST_KAFKA_BOOTSTRAP_SERVERS"),
}
# One variant's whole suite: uv sync, lint, type check and every integration test.
TIMEOUT_S = float(os.environ.get("VARIANT_TIMEOUT_S", "1800"))


def test_ci_matrix_is_variants_yml() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    matrix = workflow["jobs"]["variant"]["strategy"]["matrix"]["variant"]
    assert matrix == list(VARIANTS), "ci.yml's variant matrix differs from variants.yml"


@pytest.mark.variant
def test_rendered_make_test(rendered: Rendered, variant: Variant) -> None:
    broker = variant.data.get("broker", "arq")
    missing = [name for name in REQUIRED_ENV[broker] if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run `make test` (scripts/services.sh provides them)",
            pytrace=False,
        )
    log = rendered.path.parent / "make-test.log"
    code = run_logged(
        ["make", "test"],
        cwd=rendered.path,
        log=log,
        timeout_s=TIMEOUT_S,
        env=subprocess_env(),
    )
    if code != 0:
        what = f"took over {TIMEOUT_S:.0f}s" if code is None else f"exited {code}"
        output = tail(log.read_text(errors="replace"))
        pytest.fail(
            f"`make test` of variant {variant.name} {what}; the end of {log}:\n{output}",
            pytrace=False,
        )
