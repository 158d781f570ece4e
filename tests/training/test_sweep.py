"""The grid sweep: one run dir per (preset, lr), a summary naming the best, finished runs skipped on rerun."""

from __future__ import annotations

import json

from tinyinterp.runs import rundir
from training.grid_sweep import SUMMARY_FILE, main


def test_sweep_trains_each_grid_point_once(tmp_path, train_args, capsys):
    out = tmp_path / "sweep"
    args = [*train_args, "--out", str(out), "--max-steps", "3", "--eval-every", "3", "--ckpt-every", "3",
            "--lrs", "1e-3", "1e-2"]
    assert main(args) == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert [r["name"] for r in summary["runs"]] == ["test-tiny-lr0.001", "test-tiny-lr0.01"]
    losses = {r["name"]: r["final_val_loss"] for r in summary["runs"]}
    assert summary["best"] == min(losses, key=losses.get) and len(set(losses.values())) == 2
    for r in summary["runs"]:
        assert r["steps"] == 3 and rundir.is_run_dir(out / r["name"])
        assert json.loads((out / r["name"] / rundir.CONFIG_FILE).read_text())["train"]["lr"] == r["lr"]
    weights = out / "test-tiny-lr0.001" / rundir.WEIGHTS_FILE
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # rerun: both runs are finished, nothing retrains
    assert weights.stat().st_mtime_ns == before
    assert json.loads((out / SUMMARY_FILE).read_text()) == summary
