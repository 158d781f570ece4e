"""Exact resume: 2N straight steps == N steps, kill -9 of a real subprocess, resume to 2N (bit-identical)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tinyinterp.runs import rundir
from tinyinterp.runs.checkpoints import latest_checkpoint
from tinyinterp.io.jsonl import read_jsonl
from training.train import main
from training.trainer import PAUSE_AFTER_CKPT_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
N = 4


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs"


def _steps(run: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run / rundir.METRICS_FILE)]


def test_kill9_then_resume_gives_identical_weights(tmp_path, train_args):
    common = [*train_args, "--max-steps", str(2 * N), "--ckpt-every", str(N), "--eval-every", str(N), "--log-every", "1",
              "--threads", "2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main([*common, "--out", str(straight)]) == 0

    env = {**os.environ, PAUSE_AFTER_CKPT_ENV: str(N)}
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *common, "--out", str(killed)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(killed) is None:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert latest_checkpoint(killed).name == f"step_{N:08d}"
    assert not (killed / rundir.WEIGHTS_FILE).exists()  # it really died mid-run

    assert main([*common, "--out", str(killed)]) == 0  # resumes automatically
    _assert_same_weights(straight / rundir.WEIGHTS_FILE, killed / rundir.WEIGHTS_FILE)
    assert _steps(killed) == list(range(1, 2 * N + 1))
    straight_losses = [r["train_loss"] for r in read_jsonl(straight / rundir.METRICS_FILE)]
    killed_losses = [r["train_loss"] for r in read_jsonl(killed / rundir.METRICS_FILE)]
    assert straight_losses == killed_losses

    # A crash after step 2N's metrics but before its checkpoint: resume from N rewrites N+1..2N once.
    shutil.rmtree(latest_checkpoint(straight))
    (straight / rundir.WEIGHTS_FILE).unlink()
    assert main([*common, "--out", str(straight)]) == 0
    assert _steps(straight) == list(range(1, 2 * N + 1))
    _assert_same_weights(straight / rundir.WEIGHTS_FILE, killed / rundir.WEIGHTS_FILE)


def test_resume_flag_requires_a_checkpoint(tmp_path, train_args, capsys):
    assert main([*train_args, "--out", str(tmp_path / "new"), "--max-steps", "2", "--resume"]) == 2
    assert "has no checkpoint to resume from" in capsys.readouterr().err


def test_rerunning_a_finished_run_keeps_its_result(tmp_path, train_args):
    run = tmp_path / "run"
    args = [*train_args, "--out", str(run), "--max-steps", "2", "--eval-every", "2", "--ckpt-every", "2"]
    assert main(args) == 0
    first = rundir.read_json(run / rundir.CONFIG_FILE)["result"]
    weights = load_file(str(run / rundir.WEIGHTS_FILE))
    assert main(args) == 0  # nothing left to train
    again = rundir.read_json(run / rundir.CONFIG_FILE)["result"]
    assert again["steps"] == 2 and again["final_val_loss"] == first["final_val_loss"]
    assert again["final_train_loss"] == first["final_train_loss"]
    _assert_same_weights_dict(weights, load_file(str(run / rundir.WEIGHTS_FILE)))
    assert _steps(run) == [2]  # log_every 10: only the final step is recorded, once


def _assert_same_weights_dict(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
