"""The neuron-page benchmark runs end to end on tiny models and ends with its ratio line (numbers not checked)."""

from __future__ import annotations

import re

from bench.neuron_page import main


def test_bench_runs_and_ends_with_ratio_line(capsys):
    assert main(["--models", "test-tiny", "tinystories-1m", "--vocab", "300", "--docs", "6", "--doc-min", "20",
                 "--doc-max", "70", "--seq-len", "32", "--context", "4", "--k", "5", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1])
    assert sum("per-example full forwards" in line for line in lines) == 2
    assert "test-tiny" in "\n".join(lines) and "tinystories-1m" in "\n".join(lines)
