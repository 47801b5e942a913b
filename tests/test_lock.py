"""The render's `uv lock` task (scripts/lock.py) where uv is missing, or skipped."""

from __future__ import annotations

import os
from pathlib import Path
from shutil import which

import copier
import pytest
from conftest import copy_template
from plumbum import local

MISSING_UV = (
    "uv not found, so this service's uv.lock was not written or brought up to date: install uv"
    " (https://docs.astral.sh/uv/, or `python3 -m pip install uv`) and run `uv lock` in it."
)


def path_without_uv(bin_dir: Path) -> str:
    """A PATH with git only (copier needs it), and a HOME without ~/.local/bin/uv."""
    bin_dir.mkdir()
    git = which("git")
    assert git, "git is not on PATH"
    (bin_dir / "git").symlink_to(git)
    return str(bin_dir)


def test_without_uv_the_render_completes_and_says_how_to_lock(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    template = copy_template(tmp_path / "template")
    dest = tmp_path / "service"
    with local.env(PATH=path_without_uv(tmp_path / "bin"), HOME=str(tmp_path)):
        copier.run_copy(str(template), dest, defaults=True, unsafe=True, quiet=True)
    err = capfd.readouterr().err
    assert (dest / "pyproject.toml").is_file(), "the render completed"
    assert not (dest / "uv.lock").exists()
    assert MISSING_UV in err.replace(os.linesep, " ")
    assert "Traceback" not in err


def test_skipped_tasks_write_no_lock(tmp_path: Path) -> None:
    template = copy_template(tmp_path / "template")
    dest = tmp_path / "service"
    copier.run_copy(str(template), dest, defaults=True, unsafe=True, quiet=True, skip_tasks=True)
    assert (dest / "pyproject.toml").is_file()
    assert not (dest / "uv.lock").exists(), "--skip-tasks: `uv lock` is the user's to run"
