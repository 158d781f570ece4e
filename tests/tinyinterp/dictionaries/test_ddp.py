"""DDP: the same `sae train` command under torchrun (2 CPU ranks, gloo) trains one dictionary; only rank 0 writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinyinterp.dictionaries import load_dictionary

from .conftest import SAE_HOOK

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_torchrun_trains_one_dictionary_with_all_ranks(dict_run, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun not found next to the python executable"
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "tinyinterp.dictionaries.cli", "train", str(dict_run),
         "--hook", SAE_HOOK, "--width", "64", "--k", "4", "--tokens", "4096", "--batch-tokens", "256",
         "--buffer-tokens", "512", "--checkpoint-every", "3", "--out", str(out), "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log]
    assert steps == sorted(set(steps))  # one writer: every logged step once
    assert log[-1]["tokens"] == 4096 and log[-1]["step"] == 4096 // (2 * 256)  # both ranks' rows count
    coder = load_dictionary(out)
    assert torch.allclose(coder.W_dec.norm(dim=1), torch.ones(64) / coder.cfg.output_scale, atol=1e-4)
    assert not list(out.glob(".*tmp*"))
