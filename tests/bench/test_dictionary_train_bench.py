"""The dictionary-training benchmark runs end to end on a tiny GPT-Neo shape and ends with its ratio line (numbers
not checked). The eai-sparsify side needs its own venv: it runs only when $TINYINTERP_SPARSIFY_PYTHON names one."""

from __future__ import annotations

import os
import re

import pytest

from bench.dictionary_train import SPARSIFY_ENV, main

TINY = ["--presets", "test-neo", "--tokens", "1024", "--batch-seqs", "4", "--seq-len", "32", "--expansion", "4",
        "--k", "4", "--buffer-batches", "2", "--eval-tokens", "256", "--stories", "80", "--vocab", "300"]


def test_bench_without_sparsify_runs_our_side_and_says_so(capsys, shared_data):
    assert main([*TINY, "--sparsify-python", "none"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("sparsify side skipped")
    assert any(line.strip().startswith("ours:") and "held-out FVU" in line for line in lines)
    assert lines[-1] == "ratio=nan (sparsify side not run)"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(SPARSIFY_ENV), reason=f"${SPARSIFY_ENV} (a venv with eai-sparsify) not set")
def test_bench_against_sparsify_ends_with_a_ratio(capsys, shared_data):
    assert main(TINY) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.strip().startswith("sparsify:") and "sparsify's own scoring" in line for line in lines)
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1])
