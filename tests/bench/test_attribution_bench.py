"""The attribution benchmark runs end to end on a tiny shape and ends with its ratio line (numbers not checked)."""

from __future__ import annotations

import re

from bench.attribution import main


def test_bench_runs_and_ends_with_ratio_line(capsys):
    assert main(["--preset", "test-neo", "--vocab", "50", "--n-pos", "12", "--d-sae", "32", "--k", "3",
                 "--batch-size", "8", "--baseline-targets", "10"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1])
    assert any("one backward pass per target node" in line for line in lines)
    assert any("width 32 k 3" in line for line in lines)
    assert any("timed on 10 of" in line for line in lines)
