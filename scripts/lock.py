"""Write the rendered service's uv.lock: copier runs this in the service after a copy or an update.

copier.yml runs it as a task after `copier copy`, and as a migration after `copier update` has
merged the template's changes with the service's own (so the lock covers the user's dependencies
too); `uv lock` keeps every version already locked and resolves only what changed. It runs with
the Python that runs copier, which may be older than the service's: standard library only.

Neither a missing uv nor a failed `uv lock` fails the render: the service is there and usable,
and one sentence says what to run. `uv sync --locked` (make, CI, the Dockerfile) refuses to go
on without a current lock, so it cannot be forgotten.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

MISSING_UV = (
    "uv not found, so this service's uv.lock was not written or brought up to date: install uv"
    " (https://docs.astral.sh/uv/, or `python3 -m pip install uv`) and run `uv lock` in it."
)
LOCK_FAILED = (
    "`uv lock` failed (its output is above), so this service's uv.lock is missing or out of date:"
    " fix the cause (a conflict in pyproject.toml, no access to the package index) and run"
    " `uv lock` in it."
)


def find_uv() -> str | None:
    """uv on PATH, else where its installer and `pip install --user` put it (as make looks)."""
    user_uv = Path.home() / ".local" / "bin" / "uv"
    return shutil.which("uv") or (str(user_uv) if user_uv.is_file() else None)


def main() -> int:
    uv = find_uv()
    if uv is None:
        print(MISSING_UV, file=sys.stderr)
        return 0
    if subprocess.run([uv, "lock"], check=False).returncode != 0:
        print(LOCK_FAILED, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
