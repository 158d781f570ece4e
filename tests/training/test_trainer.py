"""The training loop end to end on a tiny corpus: metrics.jsonl, NaN stop, time budget, optimizer set-up."""

from __future__ import annotations

import json
import math
import re

import pytest

from tinyinterp.runs import rundir
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import preset_config
from tinyinterp.runs.checkpoints import latest_checkpoint, list_checkpoints
from training.config import TrainConfig
from training.train import main
from training.trainer import lr_at, param_groups


def test_metrics_checkpoints_and_final_run_dir(tmp_path, train_args):
    run = tmp_path / "run"
    assert main([*train_args, "--out", str(run), "--max-steps", "8", "--log-every", "2", "--eval-every", "4",
                 "--ckpt-every", "4", "--keep-last", "1"]) == 0
    records = read_jsonl(run / rundir.METRICS_FILE)
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert [("val_loss" in r) for r in records] == [False, True, False, True]
    cfg = TrainConfig(**{**TrainConfig(max_steps=8).to_dict(), "lr": 3e-3, "warmup_steps": 2})
    for r in records:
        assert set(r) >= {"step", "tokens", "train_loss", "lr", "tokens_per_s", "elapsed_s"}
        assert r["tokens"] == r["step"] * 8 * 32  # global batch 8 x seq_len 32
        assert r["lr"] == pytest.approx(lr_at(r["step"] - 1, cfg, 8))
        assert r["tokens_per_s"] > 0 and math.isfinite(r["train_loss"])
    assert [r["elapsed_s"] for r in records] == sorted(r["elapsed_s"] for r in records)
    assert records[-1]["train_loss"] < math.log(301) - 0.2  # it learned something from uniform

    assert [c.step for c in list_checkpoints(run)] == [8]  # keep_last=1 pruned step 4
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    assert config["train"]["preset"] == "test-tiny" and config["model"]["d_vocab"] == 301
    assert config["result"]["steps"] == 8 and config["result"]["final_val_loss"] == pytest.approx(records[-1]["val_loss"])
    assert config["tokenizer"]["vocab_size"] == 301 and config["data"]["train_docs"] == 270
    model = rundir.load_run(run)  # the final run dir is complete and loadable
    assert model.cfg.d_vocab == 301 and model.tokenizer is not None
    ckpt_model = rundir.load_run(latest_checkpoint(run))  # a checkpoint is a loadable run dir too
    assert ckpt_model.cfg == model.cfg


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(tmp_path, train_args, capsys):
    run = tmp_path / "run"
    base = [*train_args, "--out", str(run), "--warmup-steps", "0", "--ckpt-every", "4", "--eval-every", "4"]
    assert main([*base, "--max-steps", "4"]) == 0
    good = latest_checkpoint(run)
    capsys.readouterr()
    # Continue the same run with an absurd learning rate: the weights blow up and the loss turns NaN/inf.
    assert main([*base, "--max-steps", "12", "--lr", "1e30"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    message = [line for line in err if line.startswith("error:")]
    assert len(message) == 1
    match = re.search(r"diverged at step (\d+): (loss|gradient norm) is", message[0])
    assert match and int(match.group(1)) > 4 and str(good) in message[0]
    assert latest_checkpoint(run) == good and [c.step for c in list_checkpoints(run)] == [4]
    rundir.load_run(good)  # still intact


def test_time_budget_stops_at_first_boundary(tmp_path, train_args):
    run = tmp_path / "run"
    # A budget of 6 ms is spent after the first step; the stop waits for the eval boundary (step 3).
    assert main([*train_args, "--out", str(run), "--max-minutes", "0.0001", "--eval-every", "3", "--ckpt-every", "100"]) == 0
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    assert config["result"]["steps"] == 3 and config["result"]["stopped_by"] == "max_minutes"
    assert [c.step for c in list_checkpoints(run)] == [3]
    assert read_jsonl(run / rundir.METRICS_FILE)[-1]["step"] == 3


def test_bad_settings_give_one_line_errors(tmp_path, train_args, capsys):
    assert main([*train_args, "--out", str(tmp_path / "a"), "--max-steps", "2", "--seq-len", "65"]) == 2
    assert "--seq-len 65 exceeds the context of preset test-tiny (64)" in capsys.readouterr().err
    assert main([*train_args, "--out", str(tmp_path / "b"), "--max-steps", "2", "--preset", "nope"]) == 2
    assert "--preset 'nope' is unknown" in capsys.readouterr().err
    assert main([*train_args, "--out", str(tmp_path / "c")]) == 2
    assert "--max-steps or --max-minutes" in capsys.readouterr().err
    assert main([*train_args, "--out", str(tmp_path / "d"), "--max-steps", "2", "--data", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert [lr_at(s, cfg, 110) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(60, cfg, 110) == pytest.approx(0.55)  # half-way through the cosine
    assert lr_at(110, cfg, 110) == pytest.approx(0.1) and lr_at(500, cfg, 110) == pytest.approx(0.1)
    assert all(lr_at(s, cfg, 110) >= lr_at(s + 1, cfg, 110) for s in range(10, 120))


def test_weight_decay_only_on_linear_matrices():
    model = HookedTransformer(preset_config("test-tiny", d_vocab=50))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "unembed.weight" in decayed and "blocks.0.attn.qkv.weight" in decayed and "blocks.1.mlp.fc_out.weight" in decayed
    assert not any(n.startswith(("embed", "pos_embed")) or n.endswith(("bias", ".w", ".b")) for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_time_budget_calibrates_a_saved_cosine_horizon(tmp_path, train_args):
    run = tmp_path / "run"
    assert main([*train_args, "--out", str(run), "--max-minutes", "0.05", "--eval-every", "2", "--ckpt-every", "100",
                 "--warmup-steps", "0", "--calibration-steps", "2"]) == 0
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    steps = config["result"]["steps"]
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    horizon = state["horizon"]
    assert horizon is not None and horizon % 2 == 0 and steps % 2 == 0 and steps <= horizon
    assert config["result"]["stopped_by"] == ("max_steps" if steps == horizon else "max_minutes")
    last = read_jsonl(run / rundir.METRICS_FILE)[-1]
    cfg = TrainConfig(lr=3e-3, warmup_steps=0, max_minutes=0.05)
    assert last["lr"] == pytest.approx(lr_at(steps - 1, cfg, horizon))  # the schedule followed the saved horizon


def test_train_subcommand_registers_with_help_for_every_option():
    import argparse

    from training.cli import add_subparser

    parser = argparse.ArgumentParser(prog="tinyinterp")
    add_subparser(parser.add_subparsers(dest="command"))
    sub = parser._subparsers._group_actions[0].choices["train"]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert {"--out", "--data", "--preset", "--max-minutes", "--max-steps", "--vocab-size", "--resume"} <= {
        s for a in options for s in a.option_strings}
    assert all(a.help and len(a.help) > 10 for a in options)
    args = parser.parse_args(["train", "--out", "runs/x", "--preset", "tinystories-3m", "--max-minutes", "5"])
    assert args.func.__name__ == "train_from_args" and args.preset == "tinystories-3m" and args.max_minutes == 5.0
