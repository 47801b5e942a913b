"""The questions as a person answers them at a terminal (copier's prompts, driven through a pty)."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest
from conftest import REPO, Variant, copy_template, render

COPIER = str(Path(sys.executable).with_name("copier"))
# Help text that starts each prompt, in the order copier asks; the answer to type after it.
ENTER, SUBMIT_MULTILINE = "\r", "\x1b\r"  # a multiline prompt takes Esc+Enter to submit
PROMPTS = [
    ("Name of the service", ENTER),
    ("Python package name", ENTER),
    ("One-line description", ENTER),
    ("Message broker", ENTER),
    ("Event contracts", SUBMIT_MULTILINE),
    ("Delivery attempts", ENTER),
    ("How the delay", ENTER),
    ("Delay before the first retry", ENTER),
    ("Longest delay", ENTER),
    ("Randomize retry delays", ENTER),
]
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_template(tmp_path_factory.mktemp("interactive") / "template")


def answer(source: Path, dest: Path, replies: dict[str, str]) -> tuple[int, str]:
    """Run `copier copy` at a pty, typing replies[prompt] (else the default) at each prompt."""
    child = pexpect.spawn(
        COPIER,
        ["copy", "--trust", str(source), str(dest)],
        cwd=str(REPO),
        env={"TERM": "xterm", "PATH": str(Path(sys.executable).parent), "HOME": str(dest.parent)},
        encoding="utf-8",
        timeout=TIMEOUT_S,
        dimensions=(50, 200),
    )
    try:
        for prompt, default in PROMPTS:
            if child.expect([prompt, pexpect.EOF]) == 1:
                break
            child.send(replies.get(prompt, default))
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return int(child.exitstatus if child.exitstatus is not None else -1), str(child.before)


def test_enter_through_every_prompt_renders_what_defaults_render(
    source: Path, tmp_path: Path
) -> None:
    code, output = answer(source, tmp_path / "typed", {})
    assert code == 0, output
    render(source, Variant("defaults", {}), tmp_path / "defaults", lock=False)  # one file compared
    module = Path("src/orders_service/contracts.py")
    typed = (tmp_path / "typed" / module).read_text()
    assert typed == (tmp_path / "defaults" / module).read_text()
    # The fields in the order copier.yml lists them, not sorted.
    assert typed.index("order_id: UUID") < typed.index("customer_id: str")


def test_esc_enter_at_the_broker_prompt_stops_with_a_message(source: Path, tmp_path: Path) -> None:
    code, output = answer(source, tmp_path / "typed", {"Message broker": SUBMIT_MULTILINE})
    assert code != 0
    assert "broker must be one of: arq, kafka, rabbitmq, nats (got '')" in output
    assert not (tmp_path / "typed" / "src").exists()
