"""`tinyinterp sae export-neuronpedia`: the jsonl.gz files read back hold exactly the feature index's top
activations (values and token strings), the dictionary's decoder rows and the features' explanations."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from tinyinterp.cli import main
from tinyinterp.data.corpus import TokenizedCorpus
from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, load_dictionary, save_dictionary
from tinyinterp.dictionaries.neuronpedia import read_neuronpedia
from tinyinterp.explain import load_explanations
from tinyinterp.interp.feature_index import FeatureIndex
from tinyinterp.runs.layout import dictionaries_dir

HOOK = "blocks.1.hook_resid_post"
WIDTH, K, TOP = 24, 3, 4


@pytest.fixture(scope="module")
def exported(dict_run, tmp_path_factory):
    import tinyinterp

    model = tinyinterp.load(str(dict_run))
    d = model.cfg.d_model
    coder = SparseCoder(DictionaryConfig("sae", HOOK, HOOK, d, d, WIDTH, K, model_name="story-run"))
    coder.reset_parameters(torch.Generator().manual_seed(3))
    dict_dir = save_dictionary(coder, dictionaries_dir(dict_run) / "np-sae")
    corpus = dict_run / "data" / "train"
    assert main(["analyze", "features", str(dict_run), "--dict", str(dict_dir), "--corpus", str(corpus), "--k", str(TOP),
                 "--no-progress"]) == 0
    assert main(["explain", str(dict_run), "--dict", str(dict_dir), "--max-neurons", "5", "--no-progress"]) == 0
    out = tmp_path_factory.mktemp("np")
    assert main(["sae", "export-neuronpedia", str(dict_dir), "--out", str(out), "--model-id", "story-model",
                 "--context", "5", "--no-progress"]) == 0
    source = out / "story-model" / "1-tinyinterp-sae-resid-post-w24"
    return dict_dir, source, TokenizedCorpus.open(corpus)


def test_exported_activations_equal_the_index(exported):
    dict_dir, source, corpus = exported
    index = FeatureIndex.load(dict_dir)
    rows = read_neuronpedia(source)
    by_feature: dict[str, list[dict]] = {}
    for row in rows["activations"]:
        by_feature.setdefault(row["index"], []).append(row)
    tokenizer = index.tokenizer
    offsets = np.asarray(corpus.doc_offsets)
    n_checked = 0
    for f in range(WIDTH):
        values = index.tensors["top_values"][0, f]
        positions = index.tensors["top_positions"][0, f].numpy()
        keep = positions >= 0
        got = by_feature.get(str(f), [])
        assert len(got) == int(keep.sum())
        for row, value, pos in zip(got, values[torch.from_numpy(keep)].tolist(), positions[keep].tolist()):
            c = row["qualifyingTokenIndex"]
            assert row["values"][c] == value  # the index's stored top activation, exactly
            doc = int(np.searchsorted(offsets, pos, side="right") - 1)
            lo, hi = max(int(offsets[doc]), pos - 5), min(int(offsets[doc + 1]), pos + 6)
            assert row["tokens"] == [tokenizer.token_str(int(t)) for t in corpus.tokens[lo:hi]]
            assert c == pos - lo and row["dataIndex"] == str(doc)
            assert len(row["values"]) == len(row["tokens"]) and min(row["values"]) >= 0  # TopK of a ReLU
            assert row["maxValue"] == max(row["values"]) == row["values"][row["maxValueTokenIndex"]]
            assert row["layer"] == source.name and row["modelId"] == "story-model"
            n_checked += 1
    assert n_checked > WIDTH  # most features have several examples


def test_exported_features_and_explanations(exported):
    dict_dir, source, _ = exported
    coder, index = load_dictionary(dict_dir), FeatureIndex.load(dict_dir)
    rows = read_neuronpedia(source)
    features = sorted(rows["features"], key=lambda r: int(r["index"]))
    assert [r["index"] for r in features] == [str(f) for f in range(WIDTH)]
    for f, row in enumerate(features):
        assert row["vector"] == coder.W_dec[f].tolist() and row["hookName"] == HOOK
        assert row["maxActApprox"] == float(index.tensors["max"][0, f])
        assert row["frac_nonzero"] == float(index.tensors["frac_active"][0, f])
        promoted = index.logit_effects(0, f)["promoted"]
        assert row["pos_str"] == promoted["token"].tolist() and row["pos_values"] == promoted["effect"].tolist()
    expected = load_explanations(dict_dir)
    assert len(expected) == 5
    got = {r["index"]: r for r in rows["explanations"]}
    for rec in expected.itertuples():
        assert got[str(rec.neuron)]["description"] == rec.explanation
        assert got[str(rec.neuron)]["explanationModelName"] == "baseline"
    for name in ("model.jsonl", "source.jsonl", "sourceset.jsonl"):
        (line,) = (source / name).read_text().splitlines()
        assert json.loads(line)["creatorId" if name != "model.jsonl" else "id"]
    with gzip.open(source / "features" / "batch-0.jsonl.gz", "rt") as f:  # plain gzip, one JSON object a line
        assert len(f.read().splitlines()) == WIDTH


def test_an_existing_export_is_not_overwritten(exported, capsys):
    dict_dir, source, _ = exported
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["sae", "export-neuronpedia", str(dict_dir), "--out", str(source.parent.parent), "--model-id",
                 "story-model", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before


def test_a_dictionary_without_a_feature_index_is_one_line(dict_run, tmp_path, capsys):
    d = 32
    coder = SparseCoder(DictionaryConfig("sae", HOOK, HOOK, d, d, 16, 2))
    dict_dir = save_dictionary(coder, dictionaries_dir(dict_run) / "np-no-index")
    capsys.readouterr()
    assert main(["sae", "export-neuronpedia", str(dict_dir), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "feature index" in err[0], err
    assert not any(tmp_path.iterdir())
