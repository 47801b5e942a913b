"""The commands in the READMEs and docs work as written: copier through uvx, render, then update.

The commands are taken from the documents themselves (shell code blocks), not copied here, so a
doc that changes is tested as it now reads. Two liberties, both what a user's keyboard does:
`--defaults` is added where copier would ask questions (Enter on every prompt; stdin is not a
terminal here), and the placeholder `gh:OWNER/fastapi-outbox-template` is this checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, subprocess_env, tail, uv
from test_update import NEW_CONTRACT, clone_working_tree, git, releases

DOCS = sorted(
    [REPO / "README.md", REPO / "template" / "README.md.jinja", *REPO.glob("docs/**/*.md")]
)
SHELL_BLOCK = re.compile(r"^ *```(?:sh|bash|shell)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
YAML_BLOCK = re.compile(r"^ *```yaml\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# A copier command (not a mention of one): `copier copy` or `copier update` with an option.
COPIER_COMMAND = re.compile(r"\bcopier (?:copy|update)\b.* --")
THROUGH_UVX = "uvx --with copier-template-extensions copier "
PLACEHOLDER = "gh:OWNER/fastapi-outbox-template"
COMMAND_TIMEOUT_S = 600


def shell_lines(document: Path) -> list[str]:
    """The command lines of a document's shell blocks: continuations joined, comments dropped."""
    lines = []
    for block in SHELL_BLOCK.findall(document.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                lines.append(re.sub(r"\s+", " ", command))
    return lines


def the_line(document: Path, *needles: str, without: str = "\0") -> str:
    """The one shell line of `document` that contains every needle (and not `without`)."""
    lines = shell_lines(document)
    found = [line for line in lines if all(n in line for n in needles) and without not in line]
    assert len(found) == 1, f"{document.name}: one command with {needles}, found {found}"
    return found[0]


def run(command: str, *, cwd: Path) -> str:
    """Run a documented command with bash, as a user's shell would; fail with its output."""
    if COPIER_COMMAND.search(command) and "--defaults" not in command:
        command += " --defaults"
    env = subprocess_env()
    env["PATH"] = os.pathsep.join([str(Path(uv()).parent), env.get("PATH", "")])  # uvx beside uv
    env |= {"GIT_AUTHOR_NAME": "docs test", "GIT_AUTHOR_EMAIL": "docs@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "docs test", "GIT_COMMITTER_EMAIL": "docs@example.invalid"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` in {cwd} exited {proc.returncode}:\n{tail(output)}"
    return output


def answers(service: Path) -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((service / ".copier-answers.yml").read_text())
    return loaded


def test_every_copier_command_runs_copier_through_uvx_with_the_extension() -> None:
    # Neither copier nor the extension it loads is on a user's PATH; uvx brings both.
    bare = []
    for document in DOCS:
        text = document.read_text()
        commands = shell_lines(document) + INLINE_CODE.findall(text)
        for command in commands:
            if COPIER_COMMAND.search(command) and not command.startswith(THROUGH_UVX):
                bare.append(f"{document.relative_to(REPO)}: {command}")
    assert bare == [], "copier commands without uvx and the extension:\n" + "\n".join(bare)


def test_every_copy_command_names_a_source_an_update_can_find_again() -> None:
    # copier records the source as given: a relative path means the service itself at update time.
    relative = []
    for document in DOCS:
        for command in shell_lines(document):
            if " copier copy " in command:
                source = command.split()[-2]
                if not re.match(r'^(gh:|https://|git@|"\$PWD"|/)', source):
                    relative.append(f"{document.relative_to(REPO)}: {command}")
    assert relative == [], "copy commands with a relative source:\n" + "\n".join(relative)


@pytest.mark.update
def test_the_documented_commands_render_a_service_then_update_it(tmp_path: Path) -> None:
    # A checkout without release tags, as a copy of the repository may come.
    checkout = clone_working_tree(tmp_path / "fastapi-outbox-template", tags=False)
    run(the_line(REPO / "README.md", "copier copy", '"$PWD"'), cwd=checkout)
    service = tmp_path / "orders-service"
    assert answers(service)["_src_path"] == str(checkout), "the source is recorded as found again"

    tutorial = REPO / "docs" / "tutorial" / "first-service.md"
    render = the_line(tutorial, "copier copy").replace(PLACEHOLDER, str(checkout))
    (tmp_path / "tutorial").mkdir()
    run(render, cwd=tmp_path / "tutorial")  # the tutorial's render, into a directory of its own
    assert (tmp_path / "tutorial" / "orders-service" / "pyproject.toml").is_file()
    run(the_line(tutorial, "git init"), cwd=service)

    # A template change to update to, committed in the checkout.
    (checkout / "template" / "CHANGES-FROM-THE-TEMPLATE.md").write_text("new in the template\n")
    git("add", "-A", cwd=checkout)
    git("commit", "-q", "-m", "A template change", cwd=checkout)
    rendered_readme = service / "README.md"
    output = run(the_line(rendered_readme, "copier update", without="--data-file"), cwd=service)
    assert "No git tags found in template; using HEAD as ref" in output
    assert (service / "CHANGES-FROM-THE-TEMPLATE.md").is_file(), "the change arrived"
    assert answers(service)["_commit"] == git("rev-parse", "--short", "HEAD", cwd=checkout)
    git("add", "-A", cwd=service)
    git("commit", "-q", "-m", "Update from the template", cwd=service)

    # The rendered README's way to add a contract: the whole list, in a file outside the service.
    contracts = [*answers(service)["contracts"], NEW_CONTRACT]  # type: ignore[misc]
    (tmp_path / "new-answers.yml").write_text(yaml.safe_dump({"contracts": contracts}))
    run(the_line(rendered_readme, "copier update", "--data-file"), cwd=service)
    package = service / "src" / "orders_service"
    assert "class StockReservedV1(Contract):" in (package / "contracts.py").read_text()
    git("add", "-A", cwd=service)
    git("commit", "-q", "-m", "Add StockReserved v1", cwd=service)

    # The how-to's way: its YAML block, written where its first line says, then its command.
    how_to = REPO / "docs" / "how-to" / "add-a-contract.md"
    (block,) = [b for b in YAML_BLOCK.findall(how_to.read_text()) if "contracts:" in b]
    (service / block.splitlines()[0].removeprefix("# ")).write_text(block)
    run(the_line(how_to, "copier update", "--data-file"), cwd=service)
    assert "class OrderShippedV1(Contract):" in (package / "contracts.py").read_text()


@pytest.mark.update
def test_the_documented_command_recreates_the_release_tags(tmp_path: Path) -> None:
    checkout = clone_working_tree(tmp_path / "fastapi-outbox-template", tags=False)
    how_to = REPO / "docs" / "how-to" / "update-a-service.md"
    run(the_line(how_to, "git tag"), cwd=checkout)
    tagged = {
        tag: git("rev-list", "-n1", tag, cwd=checkout) for tag in git("tag", cwd=checkout).split()
    }
    assert tagged == dict(releases(checkout)), "a tag on every release commit, and no other"
