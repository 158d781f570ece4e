"""analyses/features_vs_neurons.py end to end: a tiny run and a tiny random GPT-2 folder, every layer, three unit kinds."""

from __future__ import annotations

import json

import pytest
import torch

from analyses.features_vs_neurons import JSON_FILE, KINDS, PNG_FILE, main
from tests.support.story_world import make_model, make_stories

SMALL = ["--dict-tokens", "1024", "--batch-tokens", "256", "--max-docs", "30", "--units", "6", "--width", "48", "--k", "4",
         "--seq-len", "32", "--index-k", "16"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tinyinterp.runs import rundir
    from tinyinterp.data.corpus import tokenize_corpus
    from tinyinterp.data.tokenizer import Tokenizer

    torch.set_num_threads(1)
    tokenizer = Tokenizer.train_bpe(make_stories(120, seed=1), vocab_size=300, progress=False)
    run = rundir.save_run(tmp_path_factory.mktemp("runs") / "run", make_model(tokenizer, seed=2), tokenizer)
    tokenize_corpus(make_stories(60, seed=4), tokenizer, run / "data" / "train", progress=False)
    return run


def _check(result: dict, labels_layers: dict[str, int]) -> None:
    assert [m["label"] for m in result["models"]] == list(labels_layers)
    for model in result["models"]:
        rows = model["rows"]
        assert {(r["layer"], r["unit"]) for r in rows} == {(l, k) for l in range(labels_layers[model["label"]]) for k in KINDS}
        for r in rows:
            assert 0 <= r["n_live"] <= r["n_units"] and r["n_explained"] <= min(r["n_live"], 6)
            if r["n_explained"]:
                assert -1.0 <= r["score_mean"] <= 1.0 and 0.0 <= r["share_score_ge_0.5"] <= 1.0
                assert r["n_explained"] == 1 or 0.0 <= r["score_sem"] <= 1.0
            assert r["role_share"] is None or 0.0 <= r["role_share"] <= 1.0
            assert r["type_purity_mean"] is None or 0.0 <= r["type_purity_mean"] <= 1.0
            if r["unit"] != "neuron":
                assert r["d_sae"] == 48 and r["k"] == 4 and r["train_fvu"] is not None and r["train_fvu"] >= 0
        assert any(r["n_explained"] for r in rows if r["unit"] == "neuron")
        assert any(r["n_explained"] for r in rows if r["unit"] != "neuron")


@pytest.mark.slow
def test_runs_on_a_tiny_run_and_a_tiny_gpt2_folder(tiny_run, tmp_path, shared_data, capsys):
    from tests.support.hf_models import save_tiny_hf_model

    gpt2 = save_tiny_hf_model(tmp_path / "gpt2", "gpt2", shared_data / "tokenizers" / "gpt2" / "tokenizer.json")
    texts = tmp_path / "stories.txt"
    texts.write_text("\n<|endoftext|>\n".join(make_stories(40, seed=7)) + "\n<|endoftext|>\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(tiny_run), "--gpt2", str(gpt2), "--texts", str(texts), "--out", str(out), *SMALL]) == 0
    result = json.loads((out / JSON_FILE).read_text())
    _check(result, {"ours": 2, "gpt2": 2})
    assert (out / PNG_FILE).stat().st_size > 1000 and (out / PNG_FILE).read_bytes()[:4] == b"\x89PNG"
    # the unit path wrote each dictionary's own feature index and explanations
    ddir = out / "ours" / "dictionaries" / "transcoder" / "layer_01"
    assert (ddir / "cfg.json").is_file() and json.loads((ddir / "index" / "meta.json").read_text())["units"] == "features"
    assert (ddir / "explanations" / "baseline.jsonl").is_file() and (out / "gpt2" / "neurons" / "purity.json").is_file()
    assert "transcoder" in capsys.readouterr().out


def test_a_run_alone_uses_its_training_corpus(tiny_run, tmp_path):
    out = tmp_path / "out"
    assert main([str(tiny_run), "--layers", "1", "--out", str(out), *SMALL]) == 0
    result = json.loads((out / JSON_FILE).read_text())
    assert {(r["layer"], r["unit"]) for r in result["models"][0]["rows"]} == {(1, k) for k in KINDS}
    before = (out / JSON_FILE).read_text()
    assert main([str(tiny_run), "--layers", "1", "--out", str(out), *SMALL]) == 0  # a re-run reuses what is there
    assert json.loads((out / JSON_FILE).read_text())["models"] == json.loads(before)["models"]


def test_the_llm_explainer_scores_every_kind_through_the_same_runner(tiny_run, tmp_path):
    from tests.support.explain_server import explain_server

    out = tmp_path / "out"
    small = [a if a != "6" else "2" for a in SMALL]  # 2 units per kind
    with explain_server() as server:
        assert main([str(tiny_run), "--layers", "0", "--out", str(out), *small, "--explainer", "llm",
                     "--base-url", server.url, "--model", "crude-test"]) == 0
        assert server.chat_requests()
    result = json.loads((out / JSON_FILE).read_text())
    assert result["config"]["explainer"] == "llm"
    rows = result["models"][0]["rows"]
    assert [r["unit"] for r in rows] == list(KINDS) and all(r["n_explained"] >= 1 for r in rows)
    assert (out / "ours" / "dictionaries" / "sae" / "layer_00" / "explanations" / "llm-crude-test.jsonl").is_file()


@pytest.mark.parametrize("args, message", [
    (["--layers", "7"], "has layers 0..1"),
    (["--gpt2", "x"], "--gpt2 needs --texts"),
    (["--units", "0"], "--units must be"),
    (["--labels", "a,a"], "--labels"),
])
def test_bad_arguments_are_one_line(tiny_run, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main([str(tiny_run), "--out", str(out), *SMALL, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (out / JSON_FILE).exists()
