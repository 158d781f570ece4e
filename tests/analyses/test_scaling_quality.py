"""analyses/scaling_quality.py: story quality of each run of a sweep vs. size, depth and heads (no LLM / LLM judge)."""

from __future__ import annotations

import json
import os

import pytest

from analyses import scaling, scaling_quality
from tinyinterp.scaling.analysis import RESULT_FILE
from analyses.scaling_quality import COMPLETION_TAG, QUALITY_FILE, RUN_CACHE_FILE, TABLE_FILE, QualityConfig
from tests.support.synthetic_sweep import make_sweep
from tests.support.openai_server import openai_server
from tinyinterp.evaluation.completions import completions_path, eval_dir
from tinyinterp.evaluation.grade_prompts import completion_turns
from tinyinterp.evaluation.metrics import set_stats
from tinyinterp.io.jsonl import read_jsonl
from tinyinterp.runs.rundir import read_json

STORIES = ["Once upon a time, there was a little cat named Tom. Tom liked to play with his red ball.",
           "Lily was tired, so she went to bed. Her mom said good night and turned off the light."] * 10
PROMPTS = [{"id": "a", "text": "Once upon a time, Tom saw a"}, {"id": "b", "text": "Lily was tired, so she went"},
           {"id": "c", "text": "Ben had a big dog. The dog"}]
# (d_model, n_layers, n_heads): a width series at 2 layers / 4 heads, a depth and a heads variant at width 32.
SHAPES = [(16, 2, 4), (32, 2, 4), (32, 1, 4), (32, 2, 2)]


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory):
    """A sweep folder: sweep_summary.json + four saved random models of different shapes with val curves."""
    import torch

    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.runs.rundir import save_run
    from tinyinterp.data.tokenizer import Tokenizer
    from tinyinterp.models.zoo import preset_config

    sweep = tmp_path_factory.mktemp("sweep")
    tokenizer = Tokenizer.train_bpe(STORIES, vocab_size=300, progress=False)
    runs = []
    for i, (d, layers, heads) in enumerate(SHAPES):
        name = f"d{d}-l{layers}-h{heads}-lr0.003-s0-c1e9"
        torch.manual_seed(i)
        model = HookedTransformer(preset_config("test-tiny", d_vocab=tokenizer.vocab_size, d_model=d, n_layers=layers,
                                                n_heads=heads), tokenizer=tokenizer)
        with torch.no_grad():  # peaked next-token distributions, so models sampled with one seed write different text
            model.unembed.weight.mul_(30.0)
        save_run(sweep / name, model, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        losses = [6.0 - 0.1 * k - 1e-5 * n_params for k in range(4)]
        (sweep / name / "metrics.jsonl").write_text("".join(
            json.dumps({"step": k, "tokens": 1000 * (k + 1), "flops": 6e3 * n_params * (k + 1), "val_loss": l}) + "\n"
            for k, l in enumerate(losses)))
        runs.append({"name": name, "d_model": d, "n_layers": layers, "n_heads": heads, "lr": 3e-3, "seed": 0,
                     "budget_kind": "flops", "budget": 1e9, "flops_per_token": 6 * n_params, "n_params": n_params,
                     "n_matmul": n_params, "train_tokens": 10_000})
    (sweep / "sweep_summary.json").write_text(json.dumps({"kind": "scaling", "runs": runs, "pending": [], "best": None}))
    (sweep / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return sweep


@pytest.fixture
def sweep(sweep_template, tmp_path):
    import shutil

    return shutil.copytree(sweep_template, tmp_path / "sweep")


def _args(sweep, *extra):
    return [str(sweep), "--bootstrap", "0", "--quality", "--max-prompts", "2", "--n", "2", "--max-new-tokens", "10",
            "--prompts", str(sweep / "prompts.jsonl"), *extra]


def test_no_llm_quality_end_to_end_with_cache(sweep, capsys):
    assert scaling.main(_args(sweep)) == 0
    out = sweep / scaling.OUT_SUBDIR
    quality = read_json(out / QUALITY_FILE)
    assert not quality["judged"] and len(quality["runs"]) == len(SHAPES) and not any(r["cached"] for r in quality["runs"])
    for r in quality["runs"]:
        run = sweep / r["name"]
        records = read_jsonl(completions_path(run, COMPLETION_TAG))
        assert sorted({x["prompt_id"] for x in records}) == ["a", "b"] and len(records) == 4  # 2 prompts x 2
        stats = read_json(eval_dir(run) / f"metrics_{COMPLETION_TAG}.json")
        probes = read_json(eval_dir(run) / "probes.json")
        assert r["metrics"]["distinct_2"] == stats["distinct_2"] and r["metrics"]["mean_words"] == stats["mean_words"]
        assert r["metrics"]["probe_accuracy"] == probes["accuracy"] and 0.0 <= probes["accuracy"] <= 1.0
    series = quality["series"]
    assert [p["x"] for p in series["n_params"]["points"]] == sorted(r["n_params"] for r in quality["runs"]
                                                                   if (r["n_layers"], r["n_heads"]) == (2, 4))
    assert [p["x"] for p in series["n_layers"]["points"]] == [1, 2] and series["n_layers"]["fixed"]["d_model"] == 32
    assert [p["x"] for p in series["n_heads"]["points"]] == [2, 4] and series["n_heads"]["fixed"]["n_layers"] == 2
    for name in (TABLE_FILE, "quality_vs_params.png", "quality_by_depth.png", "quality_by_heads.png", RESULT_FILE):
        assert (out / name).stat().st_size > 0
    assert all(r["name"] in (out / TABLE_FILE).read_text() for r in quality["runs"])
    assert "probe_accuracy" in capsys.readouterr().out

    # Rerun: every run comes from its cache; nothing is sampled again.
    mtimes = {r["name"]: os.stat(completions_path(sweep / r["name"], COMPLETION_TAG)).st_mtime_ns for r in quality["runs"]}
    assert scaling.main(_args(sweep)) == 0
    again = read_json(out / QUALITY_FILE)
    assert all(r["cached"] for r in again["runs"])
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in quality["runs"]]
    assert mtimes == {r: os.stat(completions_path(sweep / r, COMPLETION_TAG)).st_mtime_ns for r in mtimes}

    # Other settings are another result: recomputed (and the stale completions replaced, not mixed).
    assert scaling.main(_args(sweep, "--n", "3")) == 0
    third = read_json(out / QUALITY_FILE)
    assert not any(r["cached"] for r in third["runs"])
    assert all(len(read_jsonl(completions_path(sweep / r, COMPLETION_TAG))) == 6 for r in mtimes)

    # Fewer prompts: the completions file still holds both, but the metrics are over the requested one only.
    assert scaling.main(_args(sweep, "--n", "3", "--max-prompts", "1")) == 0
    for r in read_json(out / QUALITY_FILE)["runs"]:
        records = read_jsonl(completions_path(sweep / r["name"], COMPLETION_TAG))
        assert len(records) == 6
        only_a = set_stats([x for x in records if x["prompt_id"] == "a"])
        assert r["metrics"]["distinct_2"] == only_a["distinct_2"] and r["metrics"]["mean_words"] == only_a["mean_words"]


def _grade(turn1: str) -> int:
    return sum(map(ord, turn1)) % 11


def _reply(request: dict) -> str:
    """Turn 1: an assessment; turn 2: grades that depend on the graded story, so runs get different means."""
    last = request["messages"][-1]
    if len(request["messages"]) == 1 or not last["content"].startswith("Now, grade"):
        return "The completion is short but grammatical."
    g = _grade(request["messages"][0]["content"])
    return json.dumps({"grammar": g, "creativity": 5, "consistency": 10 - g, "plot": 7, "age_group": "C"})


def test_llm_judge_grades_land_in_the_table_and_a_rerun_asks_nothing(sweep):
    cfg = QualityConfig(max_prompts=2, n=2, max_new_tokens=10, prompts_file=sweep / "prompts.jsonl", probes=False,
                        grader_model="gpt-4o-mini", max_retries=1, timeout_s=5.0)
    out = sweep / "q"
    with openai_server(_reply) as server:
        cfg.base_url = server.url
        quality, paths = scaling_quality.run(sweep, out, cfg)
        n_requests = len(server.chat_requests())
        assert n_requests == 2 * 4 * len(SHAPES)  # two turns per completion, 4 completions per run
        for r in quality["runs"]:
            records = read_jsonl(completions_path(sweep / r["name"], COMPLETION_TAG))
            by_prompt: dict[str, list[int]] = {}
            for x in records:
                by_prompt.setdefault(x["prompt_id"], []).append(_grade(completion_turns(x["prompt"], x["completion"])[0]))
            expected = sum(sum(v) / len(v) for v in by_prompt.values()) / len(by_prompt)
            m = r["metrics"]
            assert m["grammar"] == pytest.approx(expected) and m["consistency"] == pytest.approx(10 - expected)
            assert m["creativity"] == 5 and m["n_graded"] == 4 and "probe_accuracy" not in m  # --no-probes
        assert len({r["metrics"]["grammar"] for r in quality["runs"]}) > 1  # the grades really differ per run
        assert quality["judged"] and quality["metrics"][:3] == ["grammar", "creativity", "consistency"]
        assert "grammar" in (out / TABLE_FILE).read_text() and all(p.stat().st_size > 0 for p in paths)

        again, _ = scaling_quality.run(sweep, out, cfg)
        assert len(server.chat_requests()) == n_requests  # nothing graded again
        assert all(r["cached"] for r in again["runs"])
        assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in quality["runs"]]
        assert all((eval_dir(sweep / r["name"]) / RUN_CACHE_FILE).is_file() for r in again["runs"])


def test_sweep_without_weights_is_one_line_error(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep", widths=(16, 64, 256), budgets=(1e11, 1e12))  # metrics only, no weights
    assert scaling_quality.main([str(sweep), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no finished run has final weights" in err and "\n" not in err


def test_bad_settings_are_one_line_errors():
    from tinyinterp.errors import TinyinterpError

    with pytest.raises(TinyinterpError, match="--max-prompts must be >= 1"):
        QualityConfig(max_prompts=0)
