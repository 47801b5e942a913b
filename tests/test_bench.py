"""The benchmark (scripts/bench.py) at a tiny size: it runs, and every figure it prints is real."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import REPO, run_captured, tail

EVENTS = 200
TIMEOUT_S = 900
ROW = re.compile(r"^\| (raw \w+|relay x\d, [\d,]+ keys) \| ([\d,]+) \| ([\d,]+)-([\d,]+) \|(.*)\|$")


@pytest.mark.bench
def test_the_benchmark_prints_a_table_of_real_figures_per_broker() -> None:
    args = [
        sys.executable,
        str(REPO / "scripts/bench.py"),
        "--events",
        str(EVENTS),
        "--repeats",
        "1",
    ]
    run = run_captured(args, cwd=REPO, timeout_s=TIMEOUT_S)
    output = run.stdout + run.stderr
    assert run.returncode == 0, tail(output)
    for broker in ("arq", "kafka"):
        heading = f"### {broker} ({broker}-default), {EVENTS} events, 1 repeats"
        assert heading in output, tail(output)
    lines = output.splitlines()
    rows = [ROW.match(line) for line in lines if line.startswith(("| raw", "| relay"))]
    assert len(rows) == 2 * 6, tail(output)
    assert all(rows), tail(output)
    for row in rows:
        assert row is not None
        median, low, high = (int(row[n].replace(",", "")) for n in (2, 3, 4))
        assert 0 < low <= median <= high, row[0]
        if row[1].startswith("relay"):
            assert "x raw pipelined" in row[5], row[0]
