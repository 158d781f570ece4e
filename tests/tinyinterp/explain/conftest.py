"""Fixtures: a tiny story corpus, a tiny model with two planted neurons (:mod:`tests.support.planted_neurons`),
and its neuron index."""

from __future__ import annotations

import pytest
import torch

from tests.support.planted_neurons import plant
from tests.support.story_world import make_model, make_stories


@pytest.fixture(scope="session")
def explain_tokenizer():
    from tinyinterp.data.tokenizer import Tokenizer

    return Tokenizer.train_bpe(make_stories(200, seed=1), vocab_size=400, progress=False)


@pytest.fixture(scope="session")
def explain_corpus(explain_tokenizer, tmp_path_factory):
    from tinyinterp.data.corpus import tokenize_corpus

    return tokenize_corpus(make_stories(80, seed=3), explain_tokenizer, tmp_path_factory.mktemp("corpus"), progress=False)


@pytest.fixture(scope="session")
def planted(explain_tokenizer, explain_corpus, tmp_path_factory):
    """(model, index) with the planted neurons, index built over the corpus."""
    from tinyinterp.interp import NeuronIndexConfig, build_neuron_index

    torch.set_num_threads(1)
    model = make_model(explain_tokenizer)
    plant(model)
    index = build_neuron_index(model, explain_corpus, tmp_path_factory.mktemp("index"),
                               NeuronIndexConfig(k=20, seq_len=64), progress=False)
    return model, index


@pytest.fixture(scope="session")
def cli_run(explain_tokenizer, explain_corpus, tmp_path_factory):
    """A saved run directory (plain model, no planting) with its neuron index in analysis/neurons."""
    from tinyinterp.runs import rundir
    from tinyinterp.interp import NeuronIndexConfig, build_neuron_index, neuron_purity

    torch.set_num_threads(1)
    model = make_model(explain_tokenizer, seed=1)
    run = rundir.save_run(tmp_path_factory.mktemp("runs") / "run", model, explain_tokenizer)
    out = run / rundir.ANALYSIS_DIR / "neurons"
    index = build_neuron_index(model, explain_corpus, out, NeuronIndexConfig(k=20, seq_len=64), progress=False)
    neuron_purity(index, explain_tokenizer, explain_corpus).save(out)
    return run
