"""Scaling sweeps: the spec and its grid, shards, the FLOPs formula, run/list/summarize and the whole path."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyinterp.runs import rundir
from tinyinterp.models.config import ModelConfig
from tinyinterp.errors import TinyinterpError
from tinyinterp.io.jsonl import read_jsonl
from training.scaling_flops import flops_per_token, matmul_params
from training.scaling_spec import SPEC_FILE, ScalingSpec, parse_shard, planned_flops, select
from training.scaling_sweep import SUMMARY_FILE
from training.sweep import main

REPO = Path(__file__).resolve().parents[2]


def _spec(grid, budget=None, **extra) -> ScalingSpec:
    return ScalingSpec.from_dict({"grid": grid, "budget": budget or {"tokens": [1000]}, **extra})


@given(d_head=st.integers(1, 8), heads=st.integers(1, 4), layers=st.integers(1, 3), vocab=st.integers(5, 50))
@settings(max_examples=15, deadline=None)
def test_matmul_params_count_the_models_matmul_weights(d_head, heads, layers, vocab):
    from tinyinterp.models.transformer import HookedTransformer

    cfg = ModelConfig(d_model=d_head * heads, n_layers=layers, n_heads=heads, d_vocab=vocab, n_ctx=8)
    model = HookedTransformer(cfg)
    weights = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith(("embed", "pos_embed")))
    assert matmul_params(cfg) == weights
    assert flops_per_token(cfg, 8) == 6 * weights + 12 * layers * cfg.d_model * 8


def test_bench_uses_the_same_formula():
    sys.path.insert(0, str(REPO))
    from bench.train_throughput import flops_per_token as bench_flops

    for d, layers, vocab, seq in ((64, 8, 10_001, 256), (768, 4, 10_001, 512), (32, 2, 300, 32)):
        cfg = ModelConfig(d_model=d, n_layers=layers, n_heads=16 if d % 16 == 0 else 4, d_vocab=vocab)
        assert flops_per_token(cfg, seq) == bench_flops(cfg, seq)


@given(widths=st.lists(st.sampled_from([8, 16, 24, 32]), min_size=1, max_size=3, unique=True),
       depths=st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True),
       budgets=st.lists(st.sampled_from([1e9, 3e9, 1e10]), min_size=1, max_size=2, unique=True),
       n=st.integers(1, 5))
@settings(max_examples=30, deadline=None)
def test_shards_partition_the_grid_and_flops_budgets_are_met(widths, depths, budgets, n):
    spec = _spec([{"d_model": widths, "n_layers": depths}, {"d_model": widths[:1], "n_heads": [2, 4]}],
                 budget={"flops": budgets}, train={"batch_size": 2, "seq_len": 16})
    points = spec.points()
    names = [p.name for p in points]
    assert len(set(names)) == len(names)  # the depth/heads sub-grids share a point with the width one: kept once
    shapes = {(w, d, 4) for w in widths for d in depths} | {(widths[0], 2, 2), (widths[0], 2, 4)}
    assert {(p.d_model, p.n_layers, p.n_heads) for p in points} == shapes and len(points) == len(shapes) * len(budgets)
    round_robin = [select(points, (i, n)) for i in range(n)]
    assert sorted(p.name for s in round_robin for p in s) == sorted(names)
    assert max(map(len, round_robin)) - min(map(len, round_robin)) <= 1
    cost = planned_flops(spec)
    balanced = [select(points, (i, n), cost=cost) for i in range(n)]
    assert sorted(p.name for s in balanced for p in s) == sorted(names)
    assert all([q for q in points if q in s] == s for s in balanced)  # grid order kept inside a shard
    loads = [sum(cost[p] for p in s) for s in balanced]
    assert max(loads) - min(loads) <= max(cost.values())  # greedy balance: within one run of each other
    for p in points:
        plan = spec.plan(p, d_vocab=100)
        per_step = plan.flops_per_token * 2 * 16
        assert plan.flops == plan.train.max_steps * per_step
        assert abs(plan.flops - p.budget) <= per_step / 2 or plan.train.max_steps == 1


def test_grid_union_drops_duplicates_and_uses_defaults():
    spec = _spec([{"d_model": [32, 64]}, {"d_model": [64], "n_layers": [1, 2]}], defaults={"n_layers": 2, "n_heads": 4, "lr": 1e-3})
    assert [(p.d_model, p.n_layers, p.n_heads, p.lr) for p in spec.points()] == [(32, 2, 4, 1e-3), (64, 2, 4, 1e-3), (64, 1, 4, 1e-3)]


@pytest.mark.parametrize("data, message", [
    ({"grid": {"width": [1]}, "budget": {"tokens": [1]}}, "unknown axes"),
    ({"grid": {"d_model": [30], "n_heads": [4]}, "budget": {"tokens": [1]}}, "multiple of n_heads"),
    ({"grid": {}}, "'budget' must be"),
    ({"budget": {"tokens": [-5]}}, "positive numbers"),
    ({"budget": {"tokens": [1]}, "train": {"lr": 1}}, "train.lr"),
    ({"budget": {"tokens": [1]}, "train": {"batch_size": 0}}, "batch-size"),
    ({"budget": {"tokens": [1]}, "colour": 1}, "unknown keys"),
])
def test_bad_specs_are_refused_in_one_line(data, message):
    with pytest.raises(TinyinterpError, match=message) as info:
        ScalingSpec.from_dict(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/3", "0/0"])
def test_bad_shard_is_refused(text):
    with pytest.raises(TinyinterpError, match="--shard"):
        parse_shard(text)


def test_cli_reports_a_bad_spec_file(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("grid: {d_model: [33], n_heads: [4]}\nbudget: {tokens: [100]}\n")
    assert main(["list", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "multiple of n_heads" in err and err.count("\n") == 1
    assert main(["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err


def _sweep_args(story_files, out: Path) -> list[str]:
    return ["--out", str(out), "--d-model", "16", "32", "--n-heads", "2", "--n-layers", "1", "--lrs", "3e-3", "--seeds", "0",
            "--tokens", "2048", "--evals-per-run", "4", "--data", str(story_files["train"]),
            "--val-data", str(story_files["val"]), "--tokenizer", str(story_files["tokenizer"]),
            "--batch-size", "4", "--seq-len", "32", "--eval-batches", "2"]


def test_shards_list_summarize_and_rerun_skips(tmp_path, story_files, capsys):
    out = tmp_path / "sweep"
    args = _sweep_args(story_files, out)
    assert main(["list", *args]) == 0
    commands = capsys.readouterr().out.strip().splitlines()
    assert len(commands) == 2 and all(f"--only d{w}-l1-h2-lr0.003-s0-t2048" in c for c, w in zip(commands, (16, 32)))
    assert json.loads((out / SPEC_FILE).read_text())["budget"] == {"tokens": [2048.0]}

    assert main(["run", *args, "--shard", "0/2", "--no-progress"]) == 0  # the costlier d32 run: shard 0 of 2
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert [r["name"] for r in summary["runs"]] == ["d32-l1-h2-lr0.003-s0-t2048"]
    assert summary["pending"] == ["d16-l1-h2-lr0.003-s0-t2048"]
    assert main(["run", *args, "--shard", "1/2", "--no-progress"]) == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert {r["name"] for r in summary["runs"]} == {"d16-l1-h2-lr0.003-s0-t2048", "d32-l1-h2-lr0.003-s0-t2048"}
    assert summary["pending"] == []
    for r in summary["runs"]:
        run = out / r["name"]
        config = json.loads((run / rundir.CONFIG_FILE).read_text())
        model = ModelConfig.from_dict(config["model"])
        assert (model.d_model, model.n_layers, model.n_heads) == (r["d_model"], 1, 2)
        assert r["tokens"] == 2048 and r["flops"] == 2048 * flops_per_token(model, 32)
        records = read_jsonl(run / rundir.METRICS_FILE)
        assert all(m["flops"] == m["tokens"] * r["flops_per_token"] for m in records)
        assert sum("val_loss" in m for m in records) >= 4
        assert r["epochs"] == pytest.approx(2048 / config["data"]["train_tokens"])

    weights = out / "d16-l1-h2-lr0.003-s0-t2048" / rundir.WEIGHTS_FILE
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    only = commands[0].split("--only ")[1]
    assert main(["run", str(out / SPEC_FILE), "--out", str(out), "--only", only, "--no-progress"]) == 0  # a listed command
    assert weights.stat().st_mtime_ns == before  # finished: skipped, not retrained
    assert main(["summarize", str(out)]) == 0
    assert "2 finished, 0 pending" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_grid_end_to_end_in_two_processes(tmp_path, story_files):
    """The CI smoke test of the whole path: two shard processes at once (--parallel 2), merge, fit, plots, rerun skips."""
    out = tmp_path / "sweep"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "grid: [{d_model: [16, 32]}, {d_model: [16], n_layers: [2]}, {d_model: [16], n_heads: [4]}]\n"
        "defaults: {n_layers: 1, n_heads: 2, lr: 3.0e-3}\n"
        f"budget: {{flops: [1.5e+8, 4.0e+8]}}\nevals_per_run: 4\n"
        f"train: {{batch_size: 4, seq_len: 32, eval_batches: 2, threads: 1, data: ['{story_files['train']}'], "
        f"val_data: '{story_files['val']}', tokenizer: '{story_files['tokenizer']}'}}\n")
    assert main(["run", str(spec), "--out", str(out), "--parallel", "2", "--threads", "1"]) == 0  # two shard processes
    trained = [re.findall(r"(d\d+-\S+): training", (out / "logs" / f"shard-{i}-of-2.log").read_text()) for i in range(2)]
    assert all(trained) and not set(trained[0]) & set(trained[1]) and len(trained[0] + trained[1]) == 8
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert len(summary["runs"]) == 8 and summary["pending"] == []

    from tinyinterp.scaling.analysis import OUT_SUBDIR, RESULT_FILE
    from analyses.scaling import main as analyze_main

    assert analyze_main([str(out), "--bootstrap", "20"]) == 0
    result = json.loads((out / OUT_SUBDIR / RESULT_FILE).read_text())
    fit = result["fit"]
    assert math.isfinite(fit["b"]) and fit["b_lo"] <= fit["b_hi"]
    assert [o["flops"] for o in result["compute_optimal"]] == [1.5e8, 4.0e8]
    assert math.isfinite(result["n_opt_exponent"]["alpha"])
    for name in ("loss_vs_flops.png", "loss_by_depth.png", "loss_by_heads.png", "isoflop.png"):
        assert (out / OUT_SUBDIR / name).stat().st_size > 10_000

    weights = sorted(out.glob(f"*/{rundir.WEIGHTS_FILE}"))
    before = [w.stat().st_mtime_ns for w in weights]
    assert len(weights) == 8 and main(["run", str(spec), "--out", str(out), "--no-progress"]) == 0  # rerun: all skipped
    assert [w.stat().st_mtime_ns for w in weights] == before
