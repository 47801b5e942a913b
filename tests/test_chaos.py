"""The chaos harness (scripts/chaos.py) at CI size, on one arq and one Kafka variant.

It renders the variant, runs its processes against private servers while killing them and
taking the broker and the database down, then counts from the database; any loss, double effect,
unexpected dead letter or slow shutdown makes it exit non-zero, and this test fails with its table.
"""

from __future__ import annotations

import sys

import pytest
from conftest import REPO, run_checked

pytestmark = pytest.mark.chaos

EVENTS = 2000
KILLS = TERMS = 5  # of each kind, relay and worker
# The harness bounds itself (--timeout-s); this only catches a harness that hangs in spite of it.
TIMEOUT_S = 1200  # the harness's own --timeout-s (900 s after uv sync), plus its uv sync


@pytest.mark.parametrize("chaos_variant", ["arq-default", "kafka-default"])
def test_chaos_run_keeps_every_guarantee(chaos_variant: str) -> None:
    args = [sys.executable, str(REPO / "scripts/chaos.py"), "--variant", chaos_variant]
    args += ["--events", str(EVENTS), "--kills", str(KILLS), "--terms", str(TERMS)]
    # Fails with the command and the end of its output: the table and the checks that failed.
    run_checked(args, cwd=REPO, timeout_s=TIMEOUT_S)
