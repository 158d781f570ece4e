"""Explaining dictionary features: the neuron pipeline (records, explainer, simulator, scoring) over a feature
index. A dictionary whose features read the planted neurons must be explained and scored like them."""

from __future__ import annotations

import json

import pytest
import torch

from tests.support.explain_server import explain_server
from tests.support.planted_neurons import NAME_NEURON, PLANT_LAYER, RANDOM_NEURON
from tinyinterp.cli import main
from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, save_dictionary
from tinyinterp.explain import ExplainRunConfig, ExplainRunner, load_explanations, score_summary
from tinyinterp.explain.records import RecordBuilder, RecordConfig
from tinyinterp.interp import NeuronIndexConfig, build_feature_index
from tinyinterp.llm import LLMClient, LLMConfig
from tinyinterp.runs.layout import dictionaries_dir, feature_explanations_dir

PICKS = [NAME_NEURON, RANDOM_NEURON, 7, 30]
"""Feature i reads neuron PICKS[i] of the planted layer: feature 0 is the names neuron, feature 1 the random one."""


def neuron_dictionary(model, out, picks=PICKS):
    """A transcoder of the planted layer's MLP whose feature i = ReLU(neuron picks[i]), decoder = its W_out row."""
    d_mlp, d = model.cfg.d_mlp, model.cfg.d_model
    coder = SparseCoder(DictionaryConfig("transcoder", f"blocks.{PLANT_LAYER}.mlp.hook_post",
                                         f"blocks.{PLANT_LAYER}.hook_mlp_out", d_mlp, d, len(picks), len(picks)))
    with torch.no_grad():
        coder.W_enc[picks, torch.arange(len(picks))] = 1.0
        coder.W_dec.copy_(model.W_out[PLANT_LAYER, picks])
    return save_dictionary(coder, out)


@pytest.fixture(scope="module")
def feature_index(planted, explain_corpus, tmp_path_factory):
    model, _ = planted
    dict_dir = neuron_dictionary(model, tmp_path_factory.mktemp("dict") / "names")
    return build_feature_index(model, explain_corpus, dict_dir, NeuronIndexConfig(k=20, seq_len=64), progress=False)


def test_feature_records_equal_the_neuron_records(planted, feature_index):
    """Records come from the feature index and the dictionary's encode: for a feature that IS a (non-negative)
    neuron, every record's activations equal the neuron's on the same tokens."""
    model, neuron_index = planted
    cfg = RecordConfig(n_heldout_random=3)
    feats = RecordBuilder(model, feature_index, cfg).build(0, [0, 1])
    neurons = RecordBuilder(model, neuron_index, cfg).build(PLANT_LAYER, [NAME_NEURON, RANDOM_NEURON])
    for f, n in ((0, NAME_NEURON), (1, RANDOM_NEURON)):
        assert feats[f].max_activation == pytest.approx(neurons[n].max_activation)
        for rec in feats[f].explain + feats[f].heldout:
            assert min(rec.activations) >= 0
        # both indexes rank the same top values (ties may pick other tokens): the record maxima agree
        assert [max(r.activations) for r in feats[f].explain] == pytest.approx([max(r.activations) for r in neurons[n].explain])
        # a window that both chose holds the same activations token by token
        by_start = {r.start: r for r in neurons[n].explain + neurons[n].heldout}
        shared = [r for r in feats[f].explain + feats[f].heldout if r.start in by_start and len(r.tokens) == len(by_start[r.start].tokens)]
        assert shared
        for r in shared:
            assert r.activations == pytest.approx([max(a, 0.0) for a in by_start[r.start].activations], abs=1e-6)


def test_baseline_explains_and_scores_features(planted, feature_index, tmp_path):
    model, _ = planted
    summary = ExplainRunner(model, feature_index, ExplainRunConfig(), tmp_path).run()
    assert summary["done"] == len(PICKS) and summary["failed"] == 0
    recs = {r["id"]: r for r in map(json.loads, open(tmp_path / "baseline.jsonl"))}
    assert set(recs) == {f"L0N{i}" for i in range(len(PICKS))}
    assert recs["L0N0"]["explanation"].startswith("fires on names: ") and recs["L0N0"]["score"] > 0.9
    assert abs(recs["L0N1"]["score"]) < 0.3


def test_llm_explains_and_scores_features(planted, feature_index, tmp_path):
    model, _ = planted
    with explain_server(logprobs=True) as server:
        client = LLMClient(LLMConfig(base_url=server.url, model="gpt-4o-mini", backoff_base_s=0.01))
        summary = ExplainRunner(model, feature_index, ExplainRunConfig(explainer="llm", neurons=[(0, 0), (0, 1)]),
                                tmp_path, client).run()
    assert summary["done"] == 2 and summary["failed"] == 0
    recs = {r["id"]: r for r in map(json.loads, open(tmp_path / "llm-gpt-4o-mini.jsonl"))}
    assert recs["L0N0"]["score"] > 0.95 and abs(recs["L0N1"]["score"]) < 0.3


def test_cli_explain_dict(cli_run, explain_corpus, capsys):
    import tinyinterp

    model = tinyinterp.load(str(cli_run))
    dict_dir = neuron_dictionary(model, dictionaries_dir(cli_run) / "tc")
    assert main(["analyze", "features", str(cli_run), "--dict", str(dict_dir), "--corpus", str(explain_corpus.path),
                 "--no-progress"]) == 0
    argv = ["explain", str(cli_run), "--dict", str(dict_dir), "--no-progress"]
    before = len(load_explanations(cli_run))
    assert main(argv) == 0
    out = feature_explanations_dir(dict_dir)
    assert (out / "baseline.jsonl").is_file()
    frame = load_explanations(dict_dir)  # a dictionary folder reads its own explanations
    assert len(frame) == len(PICKS) and set(frame.layer) == {0} and sorted(frame.neuron) == list(range(len(PICKS)))
    assert len(load_explanations(cli_run)) == before  # the run's neuron explanations are untouched
    capsys.readouterr()
    assert main(argv) == 0
    assert f'"skipped": {len(PICKS)}' in capsys.readouterr().out  # resumed: nothing redone
    assert main([*argv, "--summary"]) == 0
    assert int(score_summary(dict_dir).n.iloc[0]) == frame.score.notna().sum()


def test_cli_explain_dict_errors_are_one_line(cli_run, tmp_path, capsys):
    for argv, message in ((["--dict", str(tmp_path)], "no feature index"),
                          (["--dict", str(tmp_path), "--index", str(tmp_path)], "pass one of them")):
        capsys.readouterr()
        assert main(["explain", str(cli_run), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
