"""The throughput benchmark's CPU path runs end to end on a tiny preset (the numbers are not checked here)."""

from __future__ import annotations

import re

import pytest

from bench.train_throughput import flops_per_token, main
from tinyinterp.models.zoo import preset_config


def test_bench_runs_and_ends_with_ratio_line(capsys):
    assert main(["--presets", "test-tiny", "--batch", "2", "--seq-len", "16", "--steps", "1", "--repeats", "2",
                 "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1])
    assert "test-tiny" in lines[-2] and "GFLOP/s" in lines[-2] and "% of peak" in lines[0] + lines[-2]


def test_flops_formula_counts_matmuls_and_attention():
    cfg = preset_config("tinystories-1m", d_vocab=10_001)
    n_matmul = 8 * (4 * 64 * 64 + 2 * 64 * 256) + 64 * 10_001
    assert flops_per_token(cfg, 256) == 6 * n_matmul + 12 * 8 * 64 * 256


def test_cuda_mode_refuses_cleanly_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exc:
        main(["--device", "cuda", "--bf16"])
    assert exc.value.code == 2
