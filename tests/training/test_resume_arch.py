"""Resuming keeps the architecture a run was started with, even when its preset's default changed
(the tinystories-* presets became GPT-Neo in tinyinterp 0.2; older runs are GPT-2-like "legacy")."""

from __future__ import annotations

from tinyinterp.runs import rundir
from tinyinterp.io.jsonl import read_jsonl
from training.train import main


def test_resume_uses_the_checkpoints_architecture(tmp_path, train_args):
    run = tmp_path / "run"
    args = [a if a != "test-tiny" else "test-neo" for a in train_args]  # a GPT-Neo preset …
    assert main([*args, "--out", str(run), "--max-steps", "4", "--ckpt-every", "2", "--arch", "legacy"]) == 0
    assert rundir.read_model_config(run).qkv_bias  # … trained as legacy
    # Resume without --arch: the preset alone would build a GPT-Neo model whose weights do not fit.
    assert main([*args, "--out", str(run), "--max-steps", "6", "--ckpt-every", "2"]) == 0
    cfg = rundir.read_model_config(run)
    assert cfg.qkv_bias and cfg.unembed_bias and cfg.attn_types is None
    steps = [r["step"] for r in read_jsonl(run / rundir.METRICS_FILE) if "train_loss" in r]
    assert steps[-1] == 6


def test_unknown_arch_is_one_line(tmp_path, train_args, capsys):
    assert main([*train_args, "--out", str(tmp_path / "r"), "--max-steps", "2", "--arch", "gpt5"]) == 2
    assert "--arch 'gpt5' is unknown" in capsys.readouterr().err
