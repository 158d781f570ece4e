"""DDP: ``torchrun --nproc_per_node=2`` (CPU, gloo) follows the same loss curve as one process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinyinterp.runs import rundir
from tinyinterp.io.jsonl import read_jsonl
from training.train import main

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 6


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path, train_args):
    common = [*train_args, "--max-steps", str(STEPS), "--log-every", "1", "--eval-every", "3", "--ckpt-every", "3",
              "--threads", "1"]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun not found next to the python executable"
    ddp_run, single_run = tmp_path / "ddp", tmp_path / "single"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "training.train", *common, "--out", str(ddp_run)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    threads = torch.get_num_threads()
    try:
        assert main([*common, "--out", str(single_run)]) == 0
    finally:
        torch.set_num_threads(threads)

    ddp, single = (read_jsonl(r / rundir.METRICS_FILE) for r in (ddp_run, single_run))
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == list(range(1, STEPS + 1))
    for a, b in zip(ddp, single):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["tokens"] == b["tokens"]  # same global batch
        if "val_loss" in b:
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    assert single[-1]["train_loss"] < single[0]["train_loss"] - 0.01  # the curve actually moves
    # only rank 0 wrote: one record per step, one final model, no per-rank leftovers
    assert rundir.is_run_dir(ddp_run) and not list(ddp_run.glob("**/*.tmp"))
