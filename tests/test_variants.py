"""Variant tests: each rendered variant's own `make test` passes against real services."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from shutil import rmtree

import pytest
import yaml
from conftest import (
    KEPT_LOGS,
    REPO,
    VARIANTS,
    Rendered,
    Variant,
    keep_log,
    run_logged,
    subprocess_env,
    tail,
)

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
        kept = keep_log(log, variant.name)
        pytest.fail(
            f"`make test` of variant {variant.name} {what}; the end of {kept}:\n{output}",
            pytrace=False,
        )


def test_a_failed_variants_log_outlives_its_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "arq-broken" / "project"
    project.mkdir(parents=True)
    (project / "Makefile").write_text("test:\n\t@echo the failure; exit 3\n")
    for name in REQUIRED_ENV["arq"]:
        monkeypatch.setenv(name, "unused")
    variant = Variant("arq-broken", {})
    with pytest.raises(pytest.fail.Exception) as failed:
        test_rendered_make_test(Rendered(variant, project, (), frozenset()), variant)
    rmtree(tmp_path / "arq-broken")  # as pytest prunes its temporary directories
    printed = re.search(r"the end of (\S+):", str(failed.value))
    assert printed, str(failed.value)
    kept = Path(printed.group(1))
    try:
        assert kept.parent == KEPT_LOGS
        assert "the failure" in kept.read_text()
        ignored = subprocess.run(["git", "check-ignore", "-q", str(kept)], cwd=REPO, check=False)
        assert ignored.returncode == 0, f"{kept} is not ignored by git"
    finally:
        kept.unlink(missing_ok=True)
