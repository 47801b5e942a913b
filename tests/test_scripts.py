"""The service scripts `make test` runs, as the Makefile runs them: inside `$(...)`."""

from __future__ import annotations

import os
import signal
import subprocess
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


def test_docker_script_run_twice_at_once_installs_and_starts_one_engine(tmp_path: Path) -> None:
    """Two checkouts' `make test` on one fresh machine: one installs docker.io, the other waits.

    apt-get here fails, as the real one does, when another apt-get holds its lock; each run used
    to install on its own, and the second failed (a CI run of two clones at once did).
    """
    if os.geteuid() != 0:
        pytest.skip("scripts/docker.sh installs and starts dockerd as root; this runs it as root")
    state, bin_dir = tmp_path / "state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    (state / "dockerd").write_text(
        "#!/bin/sh\nsleep 1\n"
        f'echo $$ >> "{state}/starts"\necho $$ > "{state}/dockerd.pid"\nexec sleep 3600\n'
    )
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(
        "#!/bin/sh\n"
        f'mkdir "{state}/apt.lock" 2>/dev/null || {{ echo "E: Could not get lock"; exit 100; }}\n'
        "sleep 1\n"
        f'case " $* " in *" install "*) cp "{state}/dockerd" "{bin_dir}/dockerd" ;; esac\n'
        f'rmdir "{state}/apt.lock"\n'
    )
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\ntest -f "{state}/dockerd.pid"\n')
    for script in (state / "dockerd", apt_get, docker):
        script.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",  # no /usr/sbin: no real dockerd
        "CI": "true",
        "DOCKER_LOG": str(tmp_path / "dockerd.log"),
        "DOCKER_LOCK_FILE": str(tmp_path / "docker.lock"),
    }
    env.pop("DOCKER_HOST", None)
    runs = [
        subprocess.Popen(
            ["bash", "scripts/docker.sh"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        results = [(run.wait(timeout=RETURN_BOUND_S), run.communicate()[1]) for run in runs]
    finally:
        for run in runs:
            run.kill()
        starts = (state / "starts").read_text().split() if (state / "starts").exists() else []
        for pid in starts:
            os.kill(int(pid), signal.SIGKILL)
    assert [code for code, _ in results] == [0, 0], results
    assert len(starts) == 1, f"dockerd started {len(starts)} times"
    assert sum("installing docker.io" in err for _, err in results) == 1, results
