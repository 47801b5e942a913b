"""`copier update`: from the previous release to this commit, and adding a contract later.

Both work on a git clone of this repository whose HEAD is the working tree as it is on disk, so
that "the current commit" includes uncommitted changes while developing. Release tags may not
travel with a repository, and the update path must work both ways, as the update how-to says:
with tags (recreated from the release commits, "Release vX.Y.Z"), a service rendered from the
previous release tag is updated with `--vcs-ref HEAD`; without tags, a service rendered from the
previous release's commit is updated with a plain `copier update`, which then goes to HEAD.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from shutil import copytree, ignore_patterns, rmtree
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import copier
import pytest
import yaml
from conftest import (
    NOT_SOURCE,
    REPO,
    keep_log,
    run_checked,
    run_logged,
    subprocess_env,
    tail,
    uv,
    uv_on_path,
)
from test_variants import REQUIRED_ENV, TIMEOUT_S

RELEASE_SUBJECT = re.compile(r"^Release (v\d+\.\d+\.\d+)\b")
IDENTITY = ["-c", "user.name=template tests", "-c", "user.email=tests@example.invalid"]
NEW_CONTRACT = {
    "name": "StockReserved",
    "version": 1,
    "topic": "stock",
    "key": "sku",
    "role": "consume",
    "fields": {"sku": "str", "quantity": "int", "reserved_at": "datetime"},
}
USER_HANDLER_EDIT = "    # Mine: reserve stock before recording the order.\n"
# An older release than a fresh lock takes, within the rendered range (pytest-timeout>=2.3).
USER_PIN = ("pytest-timeout", "2.3.1")
# A dependency of the user's own (already in the lock, through hypothesis: no new download).
USER_DEPENDENCY = "sortedcontainers>=2.4,<3"
USER_DOMAIN_EDIT = (
    '\n\ndef loyalty_points(total: int) -> int:\n    """Mine."""\n    return total // 10\n'
)


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def clone_working_tree(dest: Path, *, tags: bool) -> Path:
    """A clone of this repository at `dest`, its HEAD the working tree; with release tags or none.

    A clone, not a copy of the checkout: in a git worktree `.git` is a file that points back to the
    worktree's own metadata, so committing in a copy would commit to the worktree's branch.
    """
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True, capture_output=True)
    for path in dest.iterdir():
        if path.is_dir() and path.name != ".git":
            rmtree(path)
        elif path.is_file():
            path.unlink()
    copytree(REPO, dest, ignore=ignore_patterns(*NOT_SOURCE), dirs_exist_ok=True)
    git("add", "-A", cwd=dest)
    if git("status", "--porcelain", cwd=dest):
        git("commit", "-q", "-m", "The working tree", cwd=dest)
    for tag in git("tag", "--list", cwd=dest).split():
        git("tag", "-d", tag, cwd=dest)
    if tags:
        for tag, sha in releases(dest):
            git("tag", tag, sha, cwd=dest)
    return dest


def releases(repo: Path) -> list[tuple[str, str]]:
    """(tag, commit) of every release commit behind HEAD, newest first."""
    found = []
    for line in git("log", "--format=%H %s", cwd=repo).splitlines():
        sha, subject = line.split(" ", 1)
        if match := RELEASE_SUBJECT.match(subject):
            found.append((match.group(1), sha))
    return found


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_working_tree(tmp_path_factory.mktemp("template-repo") / "repo", tags=True)


@pytest.fixture(scope="session")
def untagged_template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_working_tree(
        tmp_path_factory.mktemp("untagged-template-repo") / "repo", tags=False
    )


def previous_release(repo: Path, *, by: str = "tag") -> str:
    """The newest release behind HEAD (on the first release, that release): its tag or commit."""
    head = git("rev-parse", "HEAD", cwd=repo)
    found = releases(repo)
    if not found:
        pytest.fail(
            "no release in the history: a release is a commit 'Release vX.Y.Z'", pytrace=False
        )
    older = [(tag, sha) for tag, sha in found if sha != head]
    tag, sha = older[0] if older else found[0]
    return tag if by == "tag" else sha


def copy(repo: Path, dest: Path, *, ref: str, data: dict[str, Any]) -> Path:
    with uv_on_path():
        copier.run_copy(
            str(repo), dest, vcs_ref=ref, data=data, defaults=True, unsafe=True, quiet=True
        )
    return dest


def update(
    service: Path,
    *,
    data: dict[str, Any] | None = None,
    vcs_ref: str | None = "HEAD",
    skip_tasks: bool = False,
) -> None:
    with uv_on_path():
        copier.run_update(
            service,
            data=data or {},
            vcs_ref=vcs_ref,
            defaults=True,
            overwrite=True,
            unsafe=True,
            quiet=True,
            skip_tasks=skip_tasks,
        )


def commit_all(service: Path, message: str) -> None:
    if not (service / ".git").exists():
        git("init", "-q", cwd=service)
    git("add", "-A", cwd=service)
    git("commit", "-q", "-m", message, cwd=service)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not set(path.relative_to(root).parts) & set(NOT_SOURCE)
    }


def assert_locked(service: Path) -> None:
    """The service has a uv.lock, and it is up to date with its pyproject.toml."""
    assert (service / "uv.lock").is_file(), "no uv.lock after the update"
    run_checked([uv(), "lock", "--check"], cwd=service)


def locked_version(service: Path, package: str) -> str:
    lock = tomllib.loads((service / "uv.lock").read_text())
    (version,) = [p["version"] for p in lock["package"] if p["name"] == package]
    return str(version)


def compared(root: Path) -> dict[str, bytes]:
    """files(root) without uv.lock: each render resolves its own, at its own moment."""
    return {name: text for name, text in files(root).items() if name != "uv.lock"}


def make_test(service: Path, broker: str) -> None:
    missing = [name for name in REQUIRED_ENV[broker] if not os.environ.get(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set: run `make test`", pytrace=False)
    log = service.parent / f"{service.name}-make-test.log"
    code = run_logged(
        ["make", "test"], cwd=service, log=log, timeout_s=TIMEOUT_S, env=subprocess_env()
    )
    if code != 0:
        output = tail(log.read_text(errors="replace"))
        kept = keep_log(log, f"update-{service.parent.name}")
        pytest.fail(
            f"`make test` in {service} {code=}; the end of {kept}:\n{output}", pytrace=False
        )


@pytest.mark.update
@pytest.mark.parametrize("broker", ["arq", "kafka"])
def test_an_update_from_the_previous_release_equals_a_fresh_render(
    broker: str, template_repo: Path, tmp_path: Path
) -> None:
    service = copy(
        template_repo,
        tmp_path / "service",
        ref=previous_release(template_repo),
        data={"broker": broker},
    )
    commit_all(service, "rendered from the previous release")
    update(service)
    assert_locked(service)
    fresh = copy(template_repo, tmp_path / "fresh", ref="HEAD", data={"broker": broker})

    updated, expected = compared(service), compared(fresh)
    assert sorted(updated) == sorted(expected), "the same files"
    differing = [name for name in expected if updated[name] != expected[name]]
    assert differing == [], "identical to a fresh render"
    # With the same lock too, the updated service is the fresh render, whose suite the variant
    # tests run (kafka-default); arq's updated suite runs in the test with the user's migration.
    if broker == "kafka" and not same_lock(service, fresh):
        make_test(service, broker)


def same_lock(service: Path, fresh: Path) -> bool:
    return (service / "uv.lock").read_bytes() == (fresh / "uv.lock").read_bytes()


@pytest.mark.update
def test_without_release_tags_an_update_goes_to_the_latest_commit(
    untagged_template_repo: Path, tmp_path: Path
) -> None:
    repo = untagged_template_repo
    release = previous_release(repo, by="commit")
    service = copy(repo, tmp_path / "service", ref=release, data={})
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["_commit"] == git("describe", "--always", release, cwd=repo), "a hash, no tag"
    commit_all(service, "rendered from the previous release's commit")
    update(service, vcs_ref=None)  # a plain `copier update`: with no tags, copier takes HEAD
    assert_locked(service)
    fresh = copy(repo, tmp_path / "fresh", ref="HEAD", data={})

    updated, expected = compared(service), compared(fresh)
    assert sorted(updated) == sorted(expected), "the same files"
    differing = [name for name in expected if updated[name] != expected[name]]
    # A fresh render's `make test` is the variant tests' (arq-default) and the tagged update's.
    assert differing == [], "identical to a fresh render of HEAD"


@pytest.mark.update
def test_adding_a_contract_keeps_the_users_edits(template_repo: Path, tmp_path: Path) -> None:
    service = copy(template_repo, tmp_path / "service", ref="HEAD", data={})
    commit_all(service, "rendered")
    package = service / "src" / "orders_service"
    handlers = package / "handlers.py"
    first_handler_body = "    await example.record_effect(session, event, envelope)\n"
    handlers.write_text(
        handlers.read_text().replace(first_handler_body, USER_HANDLER_EDIT + first_handler_body, 1)
    )
    example = package / "example.py"
    example.write_text(example.read_text() + USER_DOMAIN_EDIT)
    package_name, pinned = USER_PIN
    run_checked([uv(), "lock", "--upgrade-package", f"{package_name}=={pinned}"], cwd=service)
    run_checked([uv(), "add", "--no-sync", USER_DEPENDENCY], cwd=service)
    commit_all(service, "my edits")

    contracts = yaml.safe_load((service / ".copier-answers.yml").read_text())["contracts"]
    update(service, data={"contracts": [*contracts, NEW_CONTRACT]})

    text = {path.name: path.read_text() for path in (handlers, example, package / "contracts.py")}
    assert USER_HANDLER_EDIT in text["handlers.py"], "the edit to an existing handler survives"
    assert USER_DOMAIN_EDIT in text["example.py"], "the edit to the domain code survives"
    assert "async def handle_stock_reserved_v1(" in text["handlers.py"], "a handler stub appears"
    assert "StockReservedV1: handle_stock_reserved_v1," in text["handlers.py"], "and is registered"
    assert "class StockReservedV1(Contract):" in text["contracts.py"]
    assert 'TOPIC: ClassVar[str] = "stock"' in text["contracts.py"]
    conflicted = [p for p in files(service) if b"<<<<<<<" in (service / p).read_bytes()]
    assert conflicted == [], "no conflicts"
    assert USER_DEPENDENCY in (service / "pyproject.toml").read_text(), "the user's dependency"
    assert_locked(service)  # locked after the merge, so with the user's dependency
    assert locked_version(service, package_name) == pinned, "the update kept the service's pins"
    make_test(service, "arq")


USER_TABLE = """

loyalty_accounts = Table(
    "loyalty_accounts",
    metadata,
    Column("customer_id", Uuid, primary_key=True),
    Column("points", Integer, nullable=False, server_default=text("0")),
)
"""


class Shell:
    """Commands in a rendered service, as its user runs them, with a database of its own."""

    def __init__(self, service: Path, database: str) -> None:
        server = os.environ.get("TEST_DATABASE_URL", "")
        redis_url = os.environ.get("TEST_REDIS_URL", "")
        if not server or not redis_url:
            pytest.fail(
                "TEST_DATABASE_URL and TEST_REDIS_URL not set: run `make test`", pytrace=False
            )
        parts = urlsplit(server.replace("postgresql+asyncpg://", "postgresql://"))
        self.service = service
        self.database = database
        self.env = subprocess_env() | {
            "PGHOST": parts.hostname or "127.0.0.1",
            "PGPORT": str(parts.port or 5432),
            "PGUSER": parts.username or "postgres",
            "PGPASSWORD": parts.password or "",
            "DATABASE_URL": parts._replace(path=f"/{database}").geturl(),
            "REDIS_URL": redis_url,
        }

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            args, cwd=self.service, env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            command = " ".join(args)
            pytest.fail(f"`{command}` exited {result.returncode}:\n{tail(output)}", pytrace=False)
        return output

    def alembic(self, *args: str) -> str:
        return self(uv(), "run", "--no-sync", "alembic", *args)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    shell = Shell(tmp_path / "service", f"update_{uuid4().hex[:12]}")
    yield shell
    subprocess.run(["dropdb", "--if-exists", "--force", shell.database], env=shell.env, check=False)


@pytest.mark.update
def test_the_templates_migrations_arrive_beside_the_users_own(
    template_repo: Path, shell: Shell
) -> None:
    service = copy(template_repo, shell.service, ref=previous_release(template_repo), data={})
    commit_all(service, "rendered from the previous release")
    tables = service / "src" / "orders_service" / "tables.py"
    tables.write_text(tables.read_text() + USER_TABLE)
    shell("createdb", shell.database)
    shell(uv(), "sync", "--quiet")
    shell.alembic("upgrade", "head")
    shell.alembic("revision", "--autogenerate", "-m", "loyalty accounts")
    shell("make", "format")  # as the previous release's docs said
    shell.alembic("upgrade", "head")
    commit_all(service, "my table and its migration")

    update(service)

    conflicted = [p for p in files(service) if b"<<<<<<<" in (service / p).read_bytes()]
    assert conflicted == [], "no conflicts"
    assert USER_TABLE in tables.read_text(), "the user's table survives"
    shell(uv(), "sync", "--quiet")
    for history in ([], ["-n", "messaging"]):
        assert len(shell.alembic(*history, "heads").split()) == 2, "one head: '<rev> (head)'"
    # The database at the user's head takes the template's revisions; then autogenerate finds
    # nothing to do in either history, down and up again.
    shell(uv(), "run", "--no-sync", "orders-service", "migrate")
    for _ in range(2):
        shell.alembic("check")
        shell.alembic("-n", "messaging", "check")
        shell.alembic("-n", "messaging", "downgrade", "base")
        shell.alembic("downgrade", "-1")
        assert "loyalty_accounts" not in shell("psql", "-Atc", r"\dt", shell.database)
        shell(uv(), "run", "--no-sync", "orders-service", "migrate")
    # A table added after the update: its revision follows the user's, ruff-clean as written.
    tables.write_text(tables.read_text() + USER_TABLE.replace("loyalty", "referral"))
    shell.alembic("revision", "--autogenerate", "-m", "referral accounts")
    assert len(shell.alembic("heads").split()) == 2
    make_test(service, "arq")


@pytest.mark.update
def test_an_update_writes_the_lock_unless_tasks_are_skipped(
    template_repo: Path, tmp_path: Path
) -> None:
    service = copy(template_repo, tmp_path / "service", ref="HEAD", data={})
    (service / "uv.lock").unlink()  # as a service rendered with --skip-tasks, or before locks
    commit_all(service, "rendered, without its lock")
    update(service, skip_tasks=True)
    assert not (service / "uv.lock").exists(), "--skip-tasks: `uv lock` is the user's to run"
    update(service)
    assert_locked(service)
