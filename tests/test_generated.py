"""Generated answer sets: whatever the questions accept renders a lint-clean, type-clean service.

Hypothesis draws answer sets that no variant has (long and non-ASCII names, every key and field
type, several contracts on one topic, retry policies at the edges, every broker). Copier either
refuses a set with a message naming the question, or renders it; a render must then pass ruff,
`ruff format --check`, mypy --strict, and import every module. The `variant`-marked test runs the
full rendered suite (`make test`) on a few generated sets; GENERATED_SEED=<n> draws again, and
a failure prints its answers.

Rendering and installing per example would take minutes, so each broker gets one synced virtual
environment (its dependencies do not depend on the other answers) that every example's render
is checked with, the rendered `src/` put on the import path instead of installing the package.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Variant,
    assert_log_kept,
    copy_template,
    failing_project,
    keep_log,
    render,
    run_logged,
    subprocess_env,
    tail,
    uv,
)
from hypothesis import HealthCheck, Phase, given, note, seed, settings
from hypothesis import strategies as st
from test_variants import REQUIRED_ENV, TIMEOUT_S

BROKERS = ("arq", "kafka", "rabbitmq", "nats")
# Examples per broker in `make check`: 5-20 s each on a shared 2-core machine (load 15: about
# 5 minutes for two brokers, venvs included). GENERATED_EXAMPLES=200 for a longer hunt.
EXAMPLES = int(os.environ.get("GENERATED_EXAMPLES", "12"))
# The full-suite test runs one generated set per broker, drawn from GENERATED_SEED (else random).
SUITE_DRAWS = 40
SEED = int(os.environ.get("GENERATED_SEED") or random.SystemRandom().randrange(2**32))
TOOL_TIMEOUT_S = 600
REFUSAL = re.compile(r"^Validation error for question '(?P<question>\w+)': (?P<message>\S.*)", re.S)

# --- the answer sets ---

FIELD_TYPES = ("str", "int", "float", "bool", "decimal", "uuid", "datetime", "date")
KEY_TYPES = ("str", "int", "uuid")
SHARED_TOPICS = ("orders", "events", "billing.invoices")
# Letters a person may well put in a service name: accents, other scripts, typographic dashes.
NAME_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.&'"
    "\u00e9\u00fc\u00f1\u00f8\u00df\u00e7\u00c5\u0416\u03bb\u2013\u2014\u2019\u6771"
)
TEXT_ALPHABET = NAME_ALPHABET + ",;:!?()/+*#@%$\u20ac\U0001f600\x07"


def words(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet), min_size=min_size, max_size=max_size)


identifiers = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9_]{36,62}", fullmatch=True),  # around the limit of 60
)
# Up to the limit: a set with several contracts otherwise has one name over it more often than not.
fitting_identifiers = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9_]{36,59}", fullmatch=True),
)
pascal_names = st.lists(
    st.from_regex(r"[A-Z][a-z0-9]{0,9}", fullmatch=True), min_size=1, max_size=4
).map("".join)
topics = st.one_of(
    st.sampled_from(SHARED_TOPICS),
    st.from_regex(r"[A-Za-z0-9._-]{1,120}", fullmatch=True),
    # Long and dotted, ending in a word or a dot (which NATS must refuse: no subject ends so).
    st.tuples(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.sampled_from(("", "."))).map(
        lambda parts: ".".join([parts[0]] * 30) + parts[1]
    ),
)
field_types = st.one_of(
    st.sampled_from(FIELD_TYPES), st.sampled_from(FIELD_TYPES).map(lambda t: f"list[{t}]")
)


@st.composite
def contract(draw: st.DrawFn, idents: st.SearchStrategy[str] = identifiers) -> dict[str, Any]:
    key = draw(idents)
    others = draw(st.dictionaries(idents, field_types, max_size=6))
    fields = {key: draw(st.sampled_from(KEY_TYPES))} | {k: v for k, v in others.items() if k != key}
    names = list(fields)
    draw(st.randoms(use_true_random=False)).shuffle(names)  # the key need not come first
    return {
        "name": draw(pascal_names),
        "version": draw(st.one_of(st.integers(1, 3), st.integers(1, 12_000))),
        "topic": draw(topics),
        "key": key,
        "role": draw(st.sampled_from(("publish", "consume", "both"))),
        "fields": {name: fields[name] for name in names},
    }


delays = st.one_of(
    st.sampled_from((1e-6, 0.001, 0.1, 0.5, 1.0, 3.0, 3600.0)),
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
)


@st.composite
def answer_sets(
    draw: st.DrawFn, broker: str, idents: st.SearchStrategy[str] = identifiers
) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "broker": broker,
        "project_name": draw(st.one_of(st.just("Orders Service"), words(NAME_ALPHABET, 1, 90))),
        "contracts": draw(st.lists(contract(idents), min_size=1, max_size=4)),
        "retry_max_attempts": draw(st.one_of(st.integers(1, 3), st.integers(1, 1200))),
        "retry_backoff": draw(st.sampled_from(("exponential", "fixed"))),
        "retry_jitter": draw(st.booleans()),
    }
    initial, longest = sorted((draw(delays), draw(delays)))
    answers["retry_initial_delay_s"] = initial
    answers["retry_max_delay_s"] = draw(st.sampled_from((longest, initial, float("inf"))))
    if draw(st.booleans()):
        answers["description"] = draw(words(TEXT_ALPHABET, 0, 200))
    if draw(st.booleans()):
        answers["package_name"] = draw(identifiers)
    if broker == "kafka":
        answers["kafka_partitions"] = draw(st.integers(1, 64))
    return answers


# --- rendering and checking one answer set ---


@dataclass(frozen=True)
class Toolbox:
    """A template source and, per broker, a virtual environment with the rendered dependencies."""

    base: Path
    template: Path

    def venv(self, broker: str) -> Path:
        return self.base / f"venv-{broker}" / ".venv"

    def render(self, answers: dict[str, Any]) -> Path | str:
        """Render `answers` into a new directory; the refusal message when copier refuses them."""
        dest = Path(tempfile.mkdtemp(dir=self.base, prefix="example-")) / "project"
        try:
            # Checked with the shared environment below: no lock of its own (a resolution each).
            render(self.template, Variant("generated", answers), dest, lock=False)
        except ValueError as error:
            refusal = str(error)
        else:
            return dest
        shutil.rmtree(dest.parent)
        assert REFUSAL.match(refusal), f"copier refused without naming the question: {refusal}"
        return refusal


def sync_venv(toolbox: Toolbox, broker: str) -> None:
    """Render the broker's defaults once and `uv sync` it: the shared environment for examples."""
    project = toolbox.base / f"venv-{broker}"
    render(toolbox.template, Variant(broker, {"broker": broker}), project)
    check([uv(), "sync", "--locked"], cwd=project)


def check(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env or subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"`{' '.join(args)}` exited {proc.returncode}:\n" + tail(
        proc.stdout + proc.stderr
    )


IMPORT_ALL = """
import importlib, pkgutil, sys
for package in sys.argv[1:]:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
"""


def check_render(toolbox: Toolbox, broker: str, project: Path) -> None:
    """ruff, ruff format --check, mypy --strict and an import of every module, in `project`."""
    bin_dir = toolbox.venv(broker) / "bin"
    env = subprocess_env() | {"PYTHONPATH": f"{project / 'src'}{os.pathsep}{project}"}
    env |= {"MYPYPATH": str(project / "src")}
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    check([str(bin_dir / "ruff"), "check", "--no-fix", "--no-cache", "."], cwd=project, env=env)
    check([str(bin_dir / "ruff"), "format", "--check", "--no-cache", "."], cwd=project, env=env)
    cache = toolbox.base / f"mypy-cache-{broker}"
    check([str(bin_dir / "mypy"), "--cache-dir", str(cache)], cwd=project, env=env)
    check([str(bin_dir / "python"), "-c", IMPORT_ALL, package, "tests"], cwd=project, env=env)


@pytest.fixture(scope="session")
def toolbox(tmp_path_factory: pytest.TempPathFactory) -> Toolbox:
    base = tmp_path_factory.mktemp("generated")
    return Toolbox(base, copy_template(base / "template-source"))


@pytest.fixture(scope="session")
def synced_toolbox(toolbox: Toolbox) -> Toolbox:
    for broker in BROKERS:
        if not toolbox.venv(broker).is_dir():
            sync_venv(toolbox, broker)
    return toolbox


def render_and_check(toolbox: Toolbox, answers: dict[str, Any]) -> str:
    """Check one answer set; "refused: <message>" or "passed"."""
    result = toolbox.render(answers)
    if isinstance(result, str):
        return f"refused: {result}"
    try:
        check_render(toolbox, answers["broker"], result)
    finally:
        shutil.rmtree(result.parent)
    return "passed"


@pytest.mark.parametrize("broker", BROKERS)
def test_generated_answers_render_a_clean_service_or_are_refused(
    synced_toolbox: Toolbox, broker: str
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # shrinking re-renders dozens of times
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(answers=answer_sets(broker))
    def generated(answers: dict[str, Any]) -> None:
        note(f"outcome: {render_and_check(synced_toolbox, answers)}")

    generated()


def found(contracts: list[dict[str, Any]], **answers: Any) -> dict[str, Any]:
    return {"broker": "arq", "project_name": "Orders Service", "contracts": contracts} | answers


def one_contract(**changes: Any) -> dict[str, Any]:
    contract = {
        "name": "OrderPlaced",
        "version": 1,
        "topic": "orders",
        "key": "order_id",
        "role": "both",
        "fields": {"order_id": "uuid", "note": "str"},
    }
    return contract | changes


# Answer sets the generator found failing, kept as explicit cases: "passed" or the question
# that must refuse them.
FOUND = [
    pytest.param(found([one_contract()], project_name="Caf\u00e9 \u2013 Ops"), "passed", id="dash"),
    pytest.param(
        found([one_contract()], description="Orders \u2013 \u6771\u4eac, caf\u00e9 "),
        "passed",
        id="wide-and-ambiguous-description",
    ),
    pytest.param(found([one_contract()], retry_max_delay_s=float("inf")), "retry_max_delay_s"),
    pytest.param(
        found([one_contract(fields={"order_id": "uuid", "l": "date"})]),
        "contracts",
        id="field-named-l",
    ),
    pytest.param(found([one_contract(topic="xp." * 30)]), "passed", id="topic-of-90"),
    pytest.param(found([one_contract(topic="t" * 200)], broker="kafka"), "passed", id="topic-200"),
    pytest.param(
        found([one_contract(name="OOn21R", role="consume"), one_contract(name="OdmN1m4ab2ajz")]),
        "passed",
        id="import-order-is-case-insensitive",
    ),
    pytest.param(
        found([one_contract(name="Abc", version=3), one_contract(name="ABC", version=2)]),
        "contracts",
        id="same-snake-name",
    ),
    pytest.param(found([one_contract(name="AB", role="consume")]), "passed", id="constant-name"),
    pytest.param(found([one_contract(name="A" + "b" * 40)]), "contracts", id="long-name"),
    pytest.param(found([one_contract()], project_name="x" * 66), "project_name", id="long-title"),
    # Every limit at its edge renders clean, with both brokers.
    pytest.param(
        found(
            [
                one_contract(
                    name="AbAbAbAbAbAbAbAbAbAbAbAbAbAbAbAb",
                    version=9999,
                    key="k" * 60,
                    fields={"k" * 60: "str", "f" * 60: "list[datetime]"},
                ),
                one_contract(name="Ab" * 16, version=9998, role="consume", topic="t" * 200),
            ],
            project_name="\u6771" * 30,
            package_name="p" * 40,
            description="d" * 99 + "\u00e9",
            retry_initial_delay_s=86400.0,
            retry_max_delay_s=86400.0,
            retry_max_attempts=1000,
        ),
        "passed",
        id="limits-arq",
    ),
    pytest.param(
        found(
            [one_contract(name="Ab" * 16, version=9999, topic="t" * 200)],
            broker="kafka",
            project_name="x" * 60,
            package_name="q" * 40,
            retry_initial_delay_s=1e-6,
        ),
        "passed",
        id="limits-kafka",
    ),
    pytest.param(found([one_contract()], package_name="click"), "package_name", id="click"),
    pytest.param(found([one_contract()], description="bell\x07"), "description", id="control"),
]


@pytest.mark.parametrize(("answers", "expected"), FOUND)
def test_found_answer_sets_render_clean_or_are_refused(
    synced_toolbox: Toolbox, answers: dict[str, Any], expected: str
) -> None:
    result = render_and_check(synced_toolbox, answers)
    if expected == "passed":
        assert result == "passed"
    else:
        assert result.startswith(f"refused: Validation error for question '{expected}': ")


# --- the full rendered suite on generated answer sets ---


def require_servers(broker: str) -> None:
    missing = [name for name in REQUIRED_ENV[broker] if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: run `make test` (scripts/services.sh provides them)",
            pytrace=False,
        )


def run_suite(
    project: Path,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    answers: dict[str, Any] | None = None,
) -> None:
    """Run `args` (make test, or uv run pytest ...) in `project`; its log stays for a failure."""
    log = project.parent / "suite.log"
    code = run_logged(args, cwd=project, log=log, timeout_s=TIMEOUT_S, env=env or subprocess_env())
    if code != 0:
        what = f"took over {TIMEOUT_S:.0f}s" if code is None else f"exited {code}"
        output = tail(log.read_text(errors="replace"))
        kept = keep_log(log, f"generated-seed{SEED}")  # pytest prunes its temporary directories
        drawn = "" if answers is None else f" on the answers {answers!r}"
        message = f"`{' '.join(args)}` {what}{drawn}; the end of {kept}:\n{output}"
        pytest.fail(message, pytrace=False)


def suite_draws(broker: str) -> list[dict[str, Any]]:
    """The answer sets GENERATED_SEED draws for `broker`, in order.

    Drawn apart from rendering: Hypothesis adapts what it draws to how its test went, so draws
    interleaved with renders of varying speed and outcome would not replay. Even so, a seed may
    draw other sets in another process (one that ran other Hypothesis tests first, as a CI
    worker does): a failure prints its answers, and those are what replays it for sure.
    """
    drawn: list[dict[str, Any]] = []

    @seed(SEED)
    @settings(max_examples=SUITE_DRAWS, deadline=None, database=None, phases=[Phase.generate])
    @given(answers=answer_sets(broker, fitting_identifiers))  # the suite needs a set copier takes
    def draw(answers: dict[str, Any]) -> None:
        drawn.append(answers)

    draw()
    return drawn


@pytest.mark.variant
@pytest.mark.parametrize("broker", BROKERS, ids=[f"{b}-seed{SEED}" for b in BROKERS])
def test_a_generated_answer_set_passes_its_own_make_test(toolbox: Toolbox, broker: str) -> None:
    """One generated set per broker; the seed is in the test id, the answers in a failure."""
    require_servers(broker)
    # Hypothesis starts from its simplest examples: the last draw copier accepts is the richest.
    for answers in reversed(suite_draws(broker)):
        project = toolbox.render(answers)
        if isinstance(project, Path):  # a refused set is the generated test's business
            break
    else:
        pytest.fail(f"none of {SUITE_DRAWS} answer sets drawn with GENERATED_SEED={SEED} rendered")
    (project.parent / "answers.txt").write_text(f"GENERATED_SEED={SEED}\n{answers!r}\n")
    run_suite(project, [uv(), "lock"], answers=answers)  # copier's task, left out of the renders
    run_suite(project, ["make", "test"], answers=answers)


# Answer sets whose fixes live in the rendered suite: its affected tests, against real servers.
SUITE_CASES = [
    pytest.param(
        found([one_contract(key="ref", fields={"ref": "str", "note": "str"})]),
        ["tests/test_relay.py", "-k", "any_string"],
        {},
        id="str-key-survives-the-outbox",
    ),
    pytest.param(
        found([one_contract()], retry_initial_delay_s=0.1, retry_max_delay_s=0.5),
        ["tests/test_settings.py"],
        {},
        id="max-delay-under-1s",
    ),
    pytest.param(
        found([one_contract()]),
        ["tests/test_migrations.py", "tests/test_servers.py"],
        {"TEST_DATABASE_URL": "asyncpg"},
        id="asyncpg-test-database-url",
    ),
    pytest.param(
        # Events that differ only in their key are alike when they share it
        # (found with GENERATED_SEED=220880537).
        found([one_contract(key="ref", fields={"ref": "str"})], broker="kafka"),
        ["tests/test_kafka.py", "-k", "retry_does_not_hold_up"],
        {},
        id="kafka-key-is-the-only-field",
    ),
    pytest.param(
        # No str or uuid field: no text to look for in the logs (GENERATED_SEED=2326724347).
        found([one_contract(key="n", fields={"n": "int", "flag": "bool"})]),
        ["tests/test_logs.py"],
        {},
        id="numbers-and-flags-only",
    ),
    pytest.param(
        # A published contract on a topic that another one consumes: its messages go to the
        # service's queue, not the unrouted one (GENERATED_SEED=1223294878).
        found(
            [one_contract(role="consume"), one_contract(name="ShipmentRequested", role="publish")],
            broker="rabbitmq",
        ),
        ["tests/test_api.py", "tests/test_rabbitmq.py"],
        {},
        id="rabbitmq-published-topic-also-consumed",
    ),
]


@pytest.mark.variant
@pytest.mark.parametrize(("answers", "tests", "env"), SUITE_CASES)
def test_found_answer_sets_pass_their_affected_tests(
    toolbox: Toolbox, answers: dict[str, Any], tests: list[str], env: dict[str, str]
) -> None:
    require_servers(answers["broker"])
    project = toolbox.render(answers)
    assert isinstance(project, Path), project
    environment = subprocess_env()
    if env.get("TEST_DATABASE_URL") == "asyncpg":  # the form DATABASE_URL also accepts
        plain = environment["TEST_DATABASE_URL"]
        environment["TEST_DATABASE_URL"] = plain.replace("postgresql://", "postgresql+asyncpg://")
    run_suite(project, [uv(), "sync", "-q"])
    run_suite(project, [uv(), "run", "--no-sync", "pytest", "-q", *tests], env=environment)


def test_a_failed_generated_suites_log_outlives_its_render(tmp_path: Path) -> None:
    project = failing_project(tmp_path / "example")
    with pytest.raises(pytest.fail.Exception) as failed:
        run_suite(project, ["make", "test"])
    assert_log_kept(failed.value, pruned=tmp_path / "example")
