"""The service scripts `make test` runs, as the Makefile runs them: inside `$(...)`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import REPO, run_captured

# The script returns in about a second; a hang is for ever. The bound only ends a failing test.
RETURN_BOUND_S = 60


def fake_engine(bin_dir: Path, state: Path) -> None:
    """`dockerd` that records its pid and runs on; `docker` that answers once it has started."""
    bin_dir.mkdir()
    dockerd = bin_dir / "dockerd"
    dockerd.write_text(f'#!/bin/sh\necho $$ > "{state}/dockerd.pid"\nexec sleep 3600\n')
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\ntest -f "{state}/dockerd.pid"\n')
    for script in (dockerd, docker):
        script.chmod(0o755)


def test_docker_script_returns_while_the_engine_it_started_runs(tmp_path: Path) -> None:
    """`images_env=$(scripts/docker.sh && ...)` in the Makefile waits for its stdout to close.

    dockerd outlives the script; if anything it leaves behind holds that stdout, `make test` hangs
    before pytest starts (a CI run on a machine without a running engine did, for 90 minutes).
    """
    if os.geteuid() != 0:
        pytest.skip("scripts/docker.sh starts dockerd as root; this test runs it as root")
    state = tmp_path / "state"
    state.mkdir()
    fake_engine(tmp_path / "bin", state)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "DOCKER_LOG": str(tmp_path / "dockerd.log"),
    }
    env.pop("DOCKER_HOST", None)
    try:
        done = run_captured(
            ["bash", "-c", 'out=$(scripts/docker.sh) && printf "[%s]" "$out"'],
            cwd=REPO,
            timeout_s=RETURN_BOUND_S,
            env=env,
        )
    finally:
        pid_file = state / "dockerd.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert done.returncode == 0, done.stderr
    assert "starting dockerd" in done.stderr
    assert done.stdout == "[]"  # nothing on stdout: the Makefile evals it
