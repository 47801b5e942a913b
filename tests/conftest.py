"""The variants, rendering them once per session, running commands in them, and the report.

Run as a script it renders one variant for a look at the result (`make render`):
    python tests/conftest.py VARIANT DEST
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from shutil import copyfile, copytree, ignore_patterns, rmtree, which
from typing import Any

import copier
import pytest
import yaml
from plumbum import local

REPO = Path(__file__).resolve().parent.parent
VARIANTS_FILE = REPO / "variants.yml"
ANSWERS_FILE = ".copier-answers.yml"
# Generated on the way, never part of the template: left out of the render source and of scans.
NOT_SOURCE = (
    ".git",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".test-logs",
)
TAIL_LINES = 80
# Logs of failed runs are kept here (ignored by git): the temporary directories they were written
# in are pruned by pytest, also by other sessions on the same machine, long before anyone looks.
KEPT_LOGS = REPO / ".test-logs"
SYNC_TIMEOUT_S = 900
# variant -> (result, seconds) of its `variant`-marked tests, for the table at the end. Filled
# from test reports where the session runs (with pytest-xdist: the controller).
VARIANT_RESULTS: dict[str, tuple[str, float]] = {}
# variant -> its suite's container start-up times ("postgres=3.1s redis=0.9s"), when it ran any:
# a report's "containers" user property (tests/test_variants.py), filled like VARIANT_RESULTS.
CONTAINER_STARTUP: dict[str, str] = {}
# A variant's result is its worst test's: later in this tuple is worse.
OUTCOMES = ("passed", "skipped", "failed", "error")


@dataclass(frozen=True)
class Variant:
    name: str
    data: dict[str, Any]
    # "shared": the TEST_* servers of scripts/services.sh; "testcontainers": its suite's own.
    servers: str = "shared"


def load_variants() -> dict[str, Variant]:
    entries = yaml.safe_load(VARIANTS_FILE.read_text())["variants"]
    variants = {entry["name"]: parse_variant(entry) for entry in entries}
    if len(variants) != len(entries):
        raise ValueError(f"{VARIANTS_FILE}: variant names must be unique")
    return variants


def parse_variant(entry: dict[str, Any]) -> Variant:
    servers = entry.get("servers", "shared")
    if servers not in ("shared", "testcontainers"):
        raise ValueError(
            f"{VARIANTS_FILE}: variant {entry['name']}: servers must be shared or testcontainers,"
            f" got {servers!r}"
        )
    return Variant(entry["name"], entry.get("data") or {}, servers)


VARIANTS = load_variants()


def copy_template(dest: Path) -> Path:
    """Copy the working tree, as it is on disk, to `dest`, the source for copier.

    Copier renders a git checkout through a clone of it: uncommitted changes come along only
    with a DirtyLocalWarning (an error under filterwarnings), and the result depends on what git
    tracks. A plain copy without .git renders exactly what is on disk, whatever the git state.
    """
    copytree(REPO, dest, ignore=ignore_patterns(*NOT_SOURCE))
    return dest


def render(
    template: Path, variant: Variant, dest: Path, *, quiet: bool = True, lock: bool = True
) -> copier.Worker:
    """Render `variant` into `dest`; with `lock`, copier's task writes its uv.lock (`uv lock`).

    Tests that only read the rendered files leave the lock out (`lock=False`, copier's
    --skip-tasks): it costs a resolution per render.
    """
    with uv_on_path():
        return copier.run_copy(
            str(template),
            dest,
            data=variant.data,
            defaults=True,
            unsafe=True,
            quiet=quiet,
            skip_tasks=not lock,
        )


def uv_on_path() -> AbstractContextManager[object]:
    """Copier's tasks (scripts/lock.py) run with this session's uv first on their PATH.

    copier runs them with plumbum's environment, a copy of os.environ taken at import: hence
    plumbum's `local.env`, not os.environ.
    """
    return local.env(PATH=os.pathsep.join([str(Path(uv()).parent), local.env.get("PATH", "")]))


def uv() -> str:
    """The uv the Makefile found (UV), else the one on PATH, else pip's --user install."""
    return os.environ.get("UV") or which("uv") or str(Path.home() / ".local/bin/uv")


def subprocess_env() -> dict[str, str]:
    """This environment minus what this session's own uv run, make and pytest added to it.

    A rendered project is a uv project and a Makefile of its own: it must not see this repository's
    virtual environment, nor make's variables (`V=...` travels in MAKEFLAGS) or pytest's.
    """
    dropped = {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH", "PYTEST_ADDOPTS"}
    dropped |= {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTEST_CURRENT_TEST"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    if sys.prefix != sys.base_prefix:  # running in this repository's .venv: take it off PATH
        own_bin = Path(sys.prefix, "bin")
        path = env.get("PATH", "").split(os.pathsep)
        env["PATH"] = os.pathsep.join(p for p in path if p and Path(p) != own_bin)
    return env


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_logged(
    args: Sequence[str], *, cwd: Path, log: Path, timeout_s: float, env: dict[str, str]
) -> int | None:
    """Run `args` with its output in `log`; its exit code, or None when it timed out.

    It runs in a session of its own so that a timeout ends the whole tree (make, pytest, the
    service processes its tests start), not only the direct child.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def keep_log(log: Path, name: str) -> Path:
    """Copy a failed run's `log` to KEPT_LOGS as `name`-<time>.log; the copy's path, to print."""
    KEPT_LOGS.mkdir(exist_ok=True)
    kept = KEPT_LOGS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    copyfile(log, kept)
    return kept


def failing_project(base: Path) -> Path:
    """A project under `base` whose `make test` prints "the failure" and exits 3."""
    project = base / "project"
    project.mkdir(parents=True)
    (project / "Makefile").write_text("test:\n\t@echo the failure; exit 3\n")
    return project


def assert_log_kept(failure: BaseException, *, pruned: Path) -> None:
    """The log `failure` names outlives `pruned` (removed here, as pytest would); git ignores it."""
    rmtree(pruned)
    printed = re.search(r"the end of (\S+):", str(failure))
    assert printed, str(failure)
    kept = Path(printed.group(1))
    try:
        assert kept.parent == KEPT_LOGS
        assert "the failure" in kept.read_text()
        ignored = subprocess.run(["git", "check-ignore", "-q", str(kept)], cwd=REPO, check=False)
        assert ignored.returncode == 0, f"{kept} is not ignored by git"
    finally:
        kept.unlink(missing_ok=True)


def run_captured(
    args: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float = SYNC_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `args` in `cwd` with its output captured; fail the test if it takes over `timeout_s`.

    `env` defaults to subprocess_env().
    """
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            env=subprocess_env() if env is None else env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(args)}` in {cwd} took over {timeout_s}s", pytrace=False)


def run_checked(args: Sequence[str], *, cwd: Path, timeout_s: float = SYNC_TIMEOUT_S) -> str:
    """Run `args` in `cwd`; its output, or fail the test with the command and its output's tail."""
    proc = run_captured(args, cwd=cwd, timeout_s=timeout_s)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` in {cwd} exited {proc.returncode}:\n{tail(output)}", pytrace=False
        )
    return output


@dataclass(frozen=True)
class Rendered:
    variant: Variant
    path: Path
    # Every file as copier wrote it (relative paths), listed before any tool wrote into the tree.
    files: tuple[Path, ...]
    secret_questions: frozenset[str]


class Renders:
    """Each variant rendered (with its lock) and `uv sync --locked` once per session, shared."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._template: Path | None = None
        self._rendered: dict[str, Rendered | str] = {}  # a str: why rendering failed
        self._synced: set[str] = set()

    def get(self, variant: Variant) -> Rendered:
        if variant.name not in self._rendered:
            try:
                self._rendered[variant.name] = self._render(variant)
            except Exception as error:
                self._rendered[variant.name] = f"{type(error).__name__}: {error}"
                raise
        result = self._rendered[variant.name]
        if isinstance(result, str):
            pytest.fail(f"variant {variant.name} did not render: {result}", pytrace=False)
        return result

    def synced(self, variant: Variant) -> Rendered:
        rendered = self.get(variant)
        if variant.name not in self._synced:
            # --locked: the lock copier's task wrote is what gets installed and tested.
            run_checked([uv(), "sync", "--locked"], cwd=rendered.path)
            self._synced.add(variant.name)
        return rendered

    def _render(self, variant: Variant) -> Rendered:
        if self._template is None:
            self._template = copy_template(self._base / "template-source")
        dest = self._base / variant.name / "project"
        worker = render(self._template, variant, dest)
        files = tuple(
            sorted(
                path.relative_to(dest)
                for path in dest.rglob("*")
                if path.is_file() and not set(path.relative_to(dest).parts) & set(NOT_SOURCE)
            )
        )
        return Rendered(variant, dest, files, frozenset(worker.template.secret_questions))


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Renders:
    return Renders(tmp_path_factory.mktemp("renders"))


@pytest.fixture
def rendered(renders: Renders, variant: Variant) -> Rendered:
    return renders.get(variant)


@pytest.fixture
def synced(renders: Renders, variant: Variant) -> Rendered:
    return renders.synced(variant)


# --- selecting variants: tests that take the `variant` argument run once per selected variant ---


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--variant",
        action="append",
        default=[],
        metavar="NAME",
        help="run the variant tests of this variant from variants.yml only (repeatable)",
    )


def selected_variants(config: pytest.Config) -> list[Variant]:
    names: list[str] = config.getoption("--variant") or list(VARIANTS)
    return [VARIANTS[name] for name in names]


def pytest_configure(config: pytest.Config) -> None:
    # One seed for the generated answer sets per session: pytest-xdist's workers inherit it, so
    # they all collect the same test ids (tests/test_generated.py reads it at import).
    os.environ.setdefault("GENERATED_SEED", str(random.SystemRandom().randrange(2**32)))
    unknown = set(config.getoption("--variant")) - VARIANTS.keys()
    if unknown:
        raise pytest.UsageError(
            f"unknown --variant {', '.join(sorted(unknown))}; variants.yml has: "
            + ", ".join(VARIANTS)
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        chosen = selected_variants(metafunc.config)
        metafunc.parametrize("variant", chosen, ids=[variant.name for variant in chosen])


# --- the per-variant table at the end of the session ---


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Reports carry their variant to the table, also from pytest-xdist's workers.
    for item in items:
        # Only a named variant's tests: generated answer sets have no row in the table.
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("variant") is not None and "variant" in params:
            item.user_properties.append(("variant", params["variant"].name))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    properties = dict(report.user_properties)
    name = properties.get("variant")
    if name is None:
        return
    if "containers" in properties:
        CONTAINER_STARTUP[str(name)] = str(properties["containers"])
    outcome, seconds = VARIANT_RESULTS.get(str(name), ("passed", 0.0))
    if report.skipped:
        this = "skipped"
    elif report.failed:
        this = "failed" if report.when == "call" else "error"
    else:
        this = "passed"
    VARIANT_RESULTS[str(name)] = (max(outcome, this, key=OUTCOMES.index), seconds + report.duration)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if not VARIANT_RESULTS:
        return
    terminalreporter.section("variants")
    terminalreporter.write_line(f"{'variant':<32} {'result':<8} {'seconds':>8}  containers")
    for name, (outcome, seconds) in VARIANT_RESULTS.items():
        containers = CONTAINER_STARTUP.get(name, "-")
        terminalreporter.write_line(f"{name:<32} {outcome:<8} {seconds:>8.1f}  {containers}")


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in VARIANTS:
        print(f"usage: conftest.py VARIANT DEST; VARIANT: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    name, dest = argv[0], Path(argv[1])
    if dest.exists() and any(dest.iterdir()):
        print(f"{dest} is not empty; give a new directory", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        render(copy_template(Path(tmp) / "template"), VARIANTS[name], dest, quiet=False)
    # Its answers file points at the temporary copy: fine for a look, not for `copier update`.
    print(f"rendered {name} into {dest} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
