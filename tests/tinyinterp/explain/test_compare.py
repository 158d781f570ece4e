"""``tinyinterp explain-compare``: our tiny run vs. a tiny local GPT-2 (native import), same texts, baseline explainer.

Both models are indexed on the same text file with ``tinyinterp analyze neurons``, explained with
``tinyinterp explain`` (GPT-2: ``--index``, results next to its index), then compared; the printed table
must carry every explained layer of both models with exactly ``score_summary``'s numbers.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.support.story_world import make_model, make_stories
from tinyinterp.runs import rundir
from tinyinterp.cli import main
from tinyinterp.explain import load_explanations, score_summary

NEURONS = "0,1,2,3,4,5"  # in every layer: both models get every layer explained, quickly


@pytest.fixture(scope="module")
def two_models(explain_tokenizer, tmp_path_factory):
    """(run dir, GPT-2 explanations folder, cmp folder): both indexed on one text file and baseline-explained."""
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("compare")
    run = rundir.save_run(tmp / "run", make_model(explain_tokenizer, seed=2), explain_tokenizer)
    gpt2_dir = tmp / "gpt2-tiny"  # 3 layers vs. our 2: layers are matched by relative depth
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=explain_tokenizer.vocab_size, n_positions=128, n_embd=32, n_layer=3, n_head=4)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(gpt2_dir)
    explain_tokenizer.save(gpt2_dir / "tokenizer.json")
    texts = tmp / "stories.txt"
    texts.write_text("\n<|endoftext|>\n".join(make_stories(40, seed=5)))
    cmp = tmp / "cmp" / "gpt2"
    common = ["--k", "10", "--seq-len", "64", "--no-progress"]
    assert main(["analyze", "neurons", str(run), "--corpus", str(texts), *common]) == 0
    assert main(["analyze", "neurons", str(gpt2_dir), "--corpus", str(texts), "--out", str(cmp / "neurons"), *common]) == 0
    explain = ["--neurons", NEURONS, "--n-explain", "4", "--n-heldout-top", "3", "--n-heldout-random", "3", "--no-progress"]
    assert main(["explain", str(run), *explain]) == 0
    # another model: --index, no --out -> CMP/gpt2/explanations, beside its index
    assert main(["explain", str(gpt2_dir), "--index", str(cmp / "neurons"), *explain]) == 0
    return run, cmp / "explanations", tmp


def _parse(out: str) -> dict:
    """Table lines -> {"a": {layer: (n, mean, median, share)}, "b": ..., "depth": {("a", layer): depth}, "overall": ...}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["depth", "layer"])
    parsed = {"a": {}, "b": {}, "depth": {}, "overall": None}
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) != 11:
            break
        if cells[0] == "overall":
            parsed["overall"] = (cells[1:6], cells[6:11])
            continue
        for tag, part in (("a", cells[1:6]), ("b", cells[6:11])):
            if part[0] != "-":
                parsed[tag][int(part[0])] = tuple(part[1:])
                parsed["depth"][(tag, int(part[0]))] = cells[0]
    return parsed


def _expected(summary) -> dict:
    rows = summary[summary.explainer == "baseline"]
    return {int(r.layer): (str(int(r.n)), f"{r['mean']:.3f}", f"{r['median']:.3f}", f"{r['share_ge_0.5']:.3f}")
            for _, r in rows.iterrows()}


def test_gpt2_explained_on_the_same_texts_next_to_its_index(two_models):
    run, gpt2_expl, _ = two_models
    frame = load_explanations(gpt2_expl)  # an `explain --out` folder reads like a run
    assert set(frame.layer) == {0, 1, 2} and len(frame) == 3 * 6 and frame.explanation.str.startswith("fires on").all()
    meta_a = json.loads((run / "analysis" / "neurons" / "meta.json").read_text())
    meta_b = json.loads((gpt2_expl.parent / "neurons" / "meta.json").read_text())
    assert meta_a["n_tokens"] == meta_b["n_tokens"] > 0  # same texts, same tokenizer: the same tokens indexed


def test_compare_prints_score_summary_of_both_per_layer(two_models, capsys):
    run, gpt2_expl, tmp = two_models
    capsys.readouterr()
    assert main(["explain-compare", str(run), str(gpt2_expl)]) == 0
    out = capsys.readouterr().out
    parsed = _parse(out)
    assert parsed["a"] == _expected(score_summary(run)) and set(parsed["a"]) == {0, 1}
    assert parsed["b"] == _expected(score_summary(gpt2_expl)) and set(parsed["b"]) == {0, 1, 2}
    assert "run (2 layers)" in out and "gpt2-tiny (3 layers)" in out
    for tag, n_layers, layers in (("a", 2, (0, 1)), ("b", 3, (0, 1, 2))):
        for layer in layers:
            assert parsed["depth"][(tag, layer)] == f"{(layer + 0.5) / n_layers:.3f}"
    for side, source in zip(parsed["overall"], (run, gpt2_expl)):
        scores = load_explanations(source).score.astype(float).dropna()
        assert side[1:] == [str(len(scores)), f"{scores.mean():.3f}", f"{scores.median():.3f}",
                            f"{(scores >= 0.5).mean():.3f}"]
    folder = run / "analysis" / "explanations"  # default: next to A's explanations
    data = json.loads((folder / "score_compare.json").read_text())
    assert [r["layer"] for r in data["b"]["layers"]] == [0, 1, 2] and data["b"]["n_layers_source"] == "index"
    assert data["a"]["overall"]["n"] == len(load_explanations(run).score.dropna())
    assert (folder / "score_compare.png").stat().st_size > 5000
    assert main(["explain-compare", str(gpt2_expl), str(run), "--labels", "gpt2,ours", "--out", str(tmp / "o")]) == 0
    assert _parse(capsys.readouterr().out)["a"] == _expected(score_summary(gpt2_expl))
    assert (tmp / "o" / "score_compare.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["explain-compare", "{run}", "{tmp}/nope"], "no such run directory"),
    (["explain-compare", "{run}", "{gpt2}", "--explainer", "llm-x"], "--explainer llm-x"),
    (["explain-compare", "{run}", "{gpt2}", "--labels", "one"], "--labels"),
    (["explain", "{tmp}/gpt2-tiny/tokenizer.json"], "pass --index"),
])
def test_bad_input_is_one_line_error(two_models, capsys, argv, message):
    run, gpt2_expl, tmp = two_models
    capsys.readouterr()
    assert main([a.format(run=run, gpt2=gpt2_expl, tmp=tmp) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
