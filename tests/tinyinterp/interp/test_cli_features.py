"""`tinyinterp analyze features RUN --dict DIR`: the feature index (+ purity) of a dictionary from the command line."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

import tinyinterp

from tests.support.story_world import make_model
from tinyinterp.runs import rundir
from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, save_dictionary
from tinyinterp.interp.categories import PurityResult
from tinyinterp.interp.cli import main as analyze
from tinyinterp.interp.feature_index import FeatureIndex, build_feature_index
from tinyinterp.interp.neuron_index import PROGRESS_FILE, NeuronIndexConfig
from tinyinterp.runs.layout import dictionaries_dir, feature_index_dir


@pytest.fixture
def run_with_dict(story_tokenizer, tmp_path):
    model = make_model(story_tokenizer)
    run = rundir.save_run(tmp_path / "run", model, story_tokenizer)
    d = model.cfg.d_model
    coder = SparseCoder(DictionaryConfig("sae", "blocks.1.hook_resid_post", "blocks.1.hook_resid_post", d, d, 24, 3))
    coder.reset_parameters(torch.Generator().manual_seed(0))
    return run, save_dictionary(coder, dictionaries_dir(run) / "sae")


def test_features_writes_the_index_and_purity_and_resumes(run_with_dict, story_corpus, capsys, caplog):
    run, dict_dir = run_with_dict
    argv = ["features", str(run), "--dict", str(dict_dir), "--corpus", str(story_corpus.path), "--k", "5",
            "--shard-docs", "10", "--no-progress"]
    assert analyze(argv) == 0
    out = feature_index_dir(dict_dir)
    assert "feature index: 24 features" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["units"] == "features" and meta["hook_in"] == "blocks.1.hook_resid_post"
    index = FeatureIndex.load(dict_dir)
    assert index.tensors["top_values"].shape == (1, 24, 5)
    assert PurityResult.load(out).purity.shape == (1, 24)
    first = {k: v.clone() for k, v in index.tensors.items()}
    # a build interrupted after its first shard (progress left behind, no index): the command resumes it
    resumed_dir = dict_dir.parent / "resumed"
    shutil.copytree(dict_dir, resumed_dir, ignore=shutil.ignore_patterns("index"))
    model = tinyinterp.load(str(run))
    assert build_feature_index(model, story_corpus, resumed_dir, NeuronIndexConfig(k=5, shard_docs=10), progress=False,
                               max_shards=1) is None
    assert (feature_index_dir(resumed_dir) / PROGRESS_FILE).is_file()
    with caplog.at_level(logging.INFO, logger="tinyinterp"):
        assert analyze([*argv[:2], "--dict", str(resumed_dir), *argv[4:]]) == 0
    assert "resuming feature index at shard 1/" in caplog.text and "other settings" not in caplog.text
    assert not (feature_index_dir(resumed_dir) / PROGRESS_FILE).exists()
    again = FeatureIndex.load(resumed_dir).tensors
    assert all(torch.equal(again[k], v) for k, v in first.items())
    capsys.readouterr()
    assert analyze(["find", str(run), "Lily", "--dict", str(dict_dir), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["layer", "neuron", "score"] and len(lines) == 2 + 3


def test_features_errors_are_one_line(run_with_dict, story_corpus, story_tokenizer, tmp_path, capsys):
    run, dict_dir = run_with_dict
    wide = SparseCoder(DictionaryConfig("sae", "blocks.1.hook_resid_post", "blocks.1.hook_resid_post", 48, 48, 24, 3))
    missing = SparseCoder(DictionaryConfig("sae", "blocks.5.hook_mlp_out", "blocks.5.hook_mlp_out", 32, 32, 24, 3))
    cases = [(save_dictionary(wide, tmp_path / "wide"), "belongs to another model"),
             (save_dictionary(missing, tmp_path / "missing"), "is not a hook of this model"),
             (tmp_path / "nowhere", "not a folder")]
    for where, message in cases:
        capsys.readouterr()
        assert analyze(["features", str(run), "--dict", str(where), "--corpus", str(story_corpus.path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
        assert not (where / "index").exists()
