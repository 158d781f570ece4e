"""The three figure scripts run on a tiny run directory (and a tiny local GPT-2) and write PNG + JSON."""

from __future__ import annotations

import json

import pytest

from tests.support.story_world import make_model, make_stories
from tinyinterp.runs import rundir
from tinyinterp.interp.cli import main as analyze


@pytest.fixture
def analysed_run(story_tokenizer, story_corpus, tmp_path):
    run = rundir.save_run(tmp_path / "run", make_model(story_tokenizer), story_tokenizer)
    assert analyze(["neurons", str(run), "--corpus", str(story_corpus.path), "--k", "5", "--no-progress"]) == 0
    assert analyze(["heads", str(run), "--corpus", str(story_corpus.path), "--n-samples", "6", "--seq-len", "32", "--no-progress"]) == 0
    return run


def test_attention_maps_and_neuron_table(analysed_run, tmp_path):
    from analyses import attention_maps, neuron_table

    out = tmp_path / "fig"
    assert attention_maps.main([str(analysed_run), "--heads", "0.1,1.2", "--out", str(out)]) == 0
    data = json.loads((out / "attention_maps.json").read_text())
    assert set(data["patterns"]) == {"0.1", "1.2"} and len(data["patterns"]["0.1"]) == len(data["tokens"])
    assert attention_maps.main([str(analysed_run), "--heads", "5.0", "--out", str(out)]) == 2
    assert neuron_table.main([str(analysed_run), "--out", str(out)]) == 0
    rows = json.loads((out / "neuron_table.json").read_text())
    assert len(rows) == 10 and all(sum(r["top_tokens"].values()) <= 5 for r in rows)
    assert (out / "attention_maps.png").stat().st_size > 1000 and (out / "neuron_table.png").stat().st_size > 1000


def test_compare_gpt2xl_script_on_local_gpt2(story_tokenizer, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from analyses import compare_gpt2xl

    run = rundir.save_run(tmp_path / "run", make_model(story_tokenizer), story_tokenizer)
    gpt2_dir = tmp_path / "gpt2-tiny"
    cfg = transformers.GPT2Config(vocab_size=story_tokenizer.vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(gpt2_dir)
    story_tokenizer.save(gpt2_dir / "tokenizer.json")
    texts = tmp_path / "stories.txt"
    texts.write_text("\n<|endoftext|>\n".join(make_stories(20)))
    out = tmp_path / "fig"
    assert compare_gpt2xl.main([str(run), "--model", str(gpt2_dir), "--texts", str(texts), "--n-samples", "4", "--out", str(out)]) == 0
    data = json.loads((out / "compare_gpt2xl.json").read_text())
    assert data["comparison"]["b"]["n_layers"] == 2 and data["seconds"] > 0 and data["peak_rss_mib"] > 0
    assert data["model_class"] == "HookedTransformer"  # the native GPT-2 import, not the bridge
    assert (out / "compare_gpt2xl.png").is_file()
    # offline, the default gpt2-xl fails with the loader's one-line error
    assert compare_gpt2xl.main([str(run), "--model", "gpt2-xl", "--texts", str(texts), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
