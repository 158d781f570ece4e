"""meta.json's corpus path is relative to the run directory, not to the cwd of the build (issue 10, item 14)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.support.story_world import make_model, make_stories


@pytest.fixture
def built(tmp_path, monkeypatch, story_tokenizer):
    """``work/runs/r/analysis/neurons`` indexed from ``work/data/corpus``, with the cwd at ``work`` and
    the corpus opened by a cwd-relative path (as ``tinyinterp analyze neurons --corpus data/corpus`` does)."""
    from tinyinterp.data.corpus import TokenizedCorpus, tokenize_corpus
    from tinyinterp.interp import NeuronIndexConfig, build_neuron_index

    work = tmp_path / "work"
    tokenize_corpus(make_stories(12), story_tokenizer, work / "data" / "corpus", progress=False)
    monkeypatch.chdir(work)
    corpus = TokenizedCorpus.open("data/corpus")
    out = work / "runs" / "r" / "analysis" / "neurons"
    model = make_model(story_tokenizer)
    build_neuron_index(model, corpus, out, NeuronIndexConfig(k=4, seq_len=32), progress=False)
    return work, out, model


def test_meta_stores_the_corpus_relative_to_the_run_directory(built):
    work, out, _ = built
    meta = json.loads((out / "meta.json").read_text())
    assert meta["corpus"] == os.path.join("..", "..", "data", "corpus")  # from runs/r to data/corpus


@pytest.mark.parametrize("cwd", ["elsewhere", "runs", "runs/r/analysis"])
def test_index_loads_from_any_cwd(built, monkeypatch, cwd):
    from tinyinterp.interp import NeuronIndex

    work, out, model = built
    expected = NeuronIndex.load(out).top_examples(0, 1, k=2, context=3)
    (work / cwd).mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work / cwd)
    index = NeuronIndex.load(out)
    assert [(e.doc, e.pos, e.token_strs) for e in index.top_examples(0, 1, k=2, context=3)] == \
        [(e.doc, e.pos, e.token_strs) for e in expected]


def test_index_follows_a_moved_tree(built, tmp_path, monkeypatch):
    """Moving runs and data together (another machine, another mount point) keeps the index working."""
    from tinyinterp.interp import NeuronIndex

    work, out, _ = built
    moved = tmp_path / "moved"
    shutil.move(str(work), moved)
    monkeypatch.chdir(tmp_path)
    index = NeuronIndex.load(moved / "runs" / "r" / "analysis" / "neurons")
    assert index.corpus.n_docs == 12


def test_index_outside_a_run_is_relative_to_its_own_folder(tmp_path, story_tokenizer, story_corpus):
    from tinyinterp.interp import NeuronIndex, NeuronIndexConfig, build_neuron_index

    out = tmp_path / "external" / "gpt2-neurons"  # `--out DIR` for a model that is not a run
    build_neuron_index(make_model(story_tokenizer), story_corpus, out, NeuronIndexConfig(k=4, seq_len=32), progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert (out / meta["corpus"]).resolve() == story_corpus.path.resolve()
    assert NeuronIndex.load(out).corpus.n_docs == story_corpus.n_docs


def test_an_old_index_with_an_absolute_path_still_loads(built):
    from tinyinterp.interp import NeuronIndex

    work, out, _ = built
    meta = json.loads((out / "meta.json").read_text())
    meta["corpus"] = str(work / "data" / "corpus")
    (out / "meta.json").write_text(json.dumps(meta))
    assert NeuronIndex.load(out).corpus.n_docs == 12
