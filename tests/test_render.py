"""Render tests: each variant renders, leaves no Jinja behind, passes ruff and mypy --strict."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from conftest import ANSWERS_FILE, REPO, Rendered, Variant, run_checked, uv

JINJA_MARKERS = ("{{", "{%", "{#")
# `${{ ... }}` in a GitHub Actions workflow is the runner's own expression syntax, not Jinja.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
SECRET_LOOKING = re.compile(r"password|secret|token|dsn", re.IGNORECASE)
# An image pinned to a release: python:3.12.16-slim-trixie, ghcr.io/astral-sh/uv:0.13.9.
PINNED_IMAGE = re.compile(r"[\w./-]+:\d+\.\d+\.\d+(-[\w-]+)?")
UV_SYNC = re.compile(r"(\buv|\$\(UV\)) sync\b")  # a command, in the Dockerfile or the Makefile
# structlog numbers its releases by year (26.1): its next "major" is next year's release.
UNBOUNDED_BY_DESIGN = ("structlog",)


def test_template_file_names_have_no_double_quote() -> None:
    # A double quote is not allowed in a Windows file name: such a checkout would break.
    template = REPO / "template"
    assert template.is_dir()
    quoted = [str(path.relative_to(REPO)) for path in template.rglob("*") if '"' in path.name]
    assert not quoted, f"file names with a double quote: {quoted}"


def test_renders(rendered: Rendered) -> None:
    assert (rendered.path / "pyproject.toml").is_file()


def test_no_leftover_jinja(rendered: Rendered) -> None:
    bad_names = [
        str(path)
        for path in rendered.files
        if path.name.endswith(".jinja") or any(mark in str(path) for mark in JINJA_MARKERS)
    ]
    assert not bad_names, f"file names still templated: {bad_names}"
    leftovers = []
    for path in rendered.files:
        try:
            text = (rendered.path / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text
        if path.parts[0] == ".github":
            text = GITHUB_EXPRESSION.sub("", text)
        for number, line in enumerate(text.splitlines(), start=1):
            if any(mark in line for mark in JINJA_MARKERS):
                leftovers.append(f"{path}:{number}: {line.strip()}")
    assert not leftovers, "Jinja left in rendered files:\n" + "\n".join(leftovers)


def test_the_rendered_workflow_lets_testcontainers_start_the_servers(rendered: Rendered) -> None:
    # What a user's CI on GitHub's runners does: no service containers, no server URL, so the
    # suite's Testcontainers path runs (image names may still be set, for a registry mirror).
    workflow = yaml.safe_load((rendered.path / ".github/workflows/ci.yml").read_text())
    for name, job in workflow["jobs"].items():
        assert "services" not in job, f"job {name} has service containers"
        for scope in (workflow, job, *job["steps"]):
            urls = [v for v in scope.get("env") or {} if v.endswith(("_URL", "_BOOTSTRAP_SERVERS"))]
            assert urls == [], f"job {name} sets server URLs: {urls}"
    runs = [step.get("run") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "make test" in runs


def test_answers_file(rendered: Rendered, variant: Variant) -> None:
    answers_file = rendered.path / ANSWERS_FILE
    assert answers_file.is_file(), f"{ANSWERS_FILE} was not rendered"
    answers = yaml.safe_load(answers_file.read_text())
    assert answers.get("_src_path"), f"{ANSWERS_FILE} has no _src_path: {answers}"
    for question in ("project_name", "package_name", "broker", "contracts", "retry_max_attempts"):
        assert question in answers, f"{ANSWERS_FILE} lacks the answer to {question}"
    for question, value in variant.data.items():
        assert answers[question] == value, f"{ANSWERS_FILE}: {question} is not the variant's"
    secrets = sorted(rendered.secret_questions & answers.keys())
    assert not secrets, f"{ANSWERS_FILE} holds secret answers: {secrets}"
    secret_looking = [key for key in answers if SECRET_LOOKING.search(key)]
    assert not secret_looking, f"{ANSWERS_FILE} holds answers that look secret: {secret_looking}"


def test_the_render_ships_a_lock_that_matches_its_pyproject(rendered: Rendered) -> None:
    # What make, CI and the Dockerfile install (`uv sync --locked`): copier's task wrote it.
    assert Path("uv.lock") in rendered.files, "no uv.lock: the render's `uv lock` task did not run"
    run_checked([uv(), "lock", "--check"], cwd=rendered.path)


def test_dependencies_install_from_the_lock_and_images_are_pinned(rendered: Rendered) -> None:
    dockerfile = (rendered.path / "Dockerfile").read_text()
    makefile = (rendered.path / "Makefile").read_text()
    for name, text in (("Dockerfile", dockerfile), ("Makefile", makefile)):
        syncs = [line.strip() for line in text.splitlines() if UV_SYNC.search(line)]
        assert syncs, f"{name} never runs uv sync"
        unlocked = [line for line in syncs if "--locked" not in line]
        assert unlocked == [], f"{name} syncs without --locked"
    assert "uv.lock*" not in dockerfile, "the lock is optional in the Dockerfile"
    images = re.findall(r"^FROM (\S+)|--from=(\S+)", dockerfile, re.MULTILINE)
    names = sorted(name for pair in images for name in pair if name)
    assert [n for n in names if not PINNED_IMAGE.fullmatch(n)] == [], f"unpinned images: {names}"
    (uv_image,) = [n for n in names if n.startswith("ghcr.io/astral-sh/uv:")]
    workflow = yaml.safe_load((rendered.path / ".github/workflows/ci.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    setup_uv = [s for s in steps if str(s.get("uses", "")).startswith("astral-sh/setup-uv@")]
    versions = [str(step.get("with", {}).get("version")) for step in setup_uv]
    assert versions == [uv_image.split(":")[1]], "CI's uv is not the Dockerfile's"


def test_every_dependency_has_an_upper_bound(rendered: Rendered) -> None:
    config = tomllib.loads((rendered.path / "pyproject.toml").read_text())
    specs = [*config["project"]["dependencies"], *config["dependency-groups"]["dev"]]
    unbounded = [s for s in specs if "<" not in s and not s.startswith(UNBOUNDED_BY_DESIGN)]
    assert unbounded == [], f"dependencies a new major version may break: {unbounded}"


def test_ruff_check(synced: Rendered) -> None:
    run_checked([uv(), "run", "--no-sync", "ruff", "check", "--no-fix", "."], cwd=synced.path)


def test_ruff_format_changes_nothing(synced: Rendered) -> None:
    run_checked([uv(), "run", "--no-sync", "ruff", "format", "--check", "."], cwd=synced.path)


def test_mypy_strict(synced: Rendered) -> None:
    targets = mypy_targets(synced.path)
    run_checked([uv(), "run", "--no-sync", "mypy", "--strict", *targets], cwd=synced.path)


def mypy_targets(project: Path) -> list[str]:
    """What the project's own mypy config lists (`files`), else its src/ and tests/."""
    config = tomllib.loads((project / "pyproject.toml").read_text())
    if config.get("tool", {}).get("mypy", {}).get("files"):
        return []
    return [name for name in ("src", "tests") if (project / name).is_dir()]


LIST_MODULES = """
import importlib.metadata, os, re, sysconfig
names = set(importlib.metadata.packages_distributions())
site = sysconfig.get_paths()["purelib"]
names |= {entry.removesuffix(".py") for entry in os.listdir(site)}
print("\\n".join(sorted(n for n in names if re.fullmatch(r"[a-z][a-z0-9_]*", n))))
"""


def test_package_names_that_shadow_an_installed_module_are_refused(synced: Rendered) -> None:
    from test_questions import ext

    installed = run_checked(
        [uv(), "run", "--no-sync", "python", "-c", LIST_MODULES], cwd=synced.path
    ).split()
    own = {path.name for path in (synced.path / "src").iterdir()}
    unlisted = sorted(set(installed) - own - ext.INSTALLED_MODULES - ext.DEPENDENCIES)
    assert not unlisted, f"add to INSTALLED_MODULES in extensions/contracts.py: {unlisted}"
