"""Neuron index: exact against a brute-force full cache on a tiny corpus, resumable, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.neuron_oracle import CFG, brute_force
from tinyinterp.errors import DataError, TinyinterpError
from tinyinterp.interp.inputs import ModelHookError
from tinyinterp.interp.neuron_index import PROGRESS_FILE, NeuronIndex, NeuronIndexConfig, build_neuron_index

@pytest.fixture
def built(story_model, story_corpus, tmp_path):
    return build_neuron_index(story_model, story_corpus, tmp_path / "idx", NeuronIndexConfig(**CFG), progress=False)


def test_index_matches_brute_force(built, story_model, story_corpus):
    acts, positions = brute_force(story_model, story_corpus, CFG["seq_len"])
    t = built.tensors
    expected_vals, expected_idx = torch.topk(acts, CFG["k"], dim=1)  # (L, k, N)
    torch.testing.assert_close(t["top_values"], expected_vals.transpose(1, 2), atol=1e-5, rtol=1e-5)
    assert torch.equal(positions, torch.arange(story_corpus.n_tokens))  # windows cover the corpus in order
    # each stored position really holds the stored activation (identical story openings tie exactly)
    L, N, k = t["top_positions"].shape
    at = acts[torch.arange(L)[:, None, None], t["top_positions"], torch.arange(N)[None, :, None]]
    torch.testing.assert_close(at, t["top_values"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t["mean"], acts.mean(1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(t["std"], acts.std(1, unbiased=False), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(t["max"], acts.amax(1))
    torch.testing.assert_close(t["frac_active"], (acts > 0).float().mean(1))
    tokens = np.asarray(story_corpus.tokens)
    assert (t["top_tokens"].numpy() == tokens[t["top_positions"].numpy()]).all()
    assert built.meta["n_tokens"] == story_corpus.n_tokens


def test_resume_gives_identical_index(story_model, story_corpus, built, tmp_path):
    out = tmp_path / "resumed"
    cfg = NeuronIndexConfig(**CFG)
    assert build_neuron_index(story_model, story_corpus, out, cfg, progress=False, max_shards=2) is None
    assert (out / PROGRESS_FILE).is_file()
    resumed = build_neuron_index(story_model, story_corpus, out, cfg, progress=False)
    assert not (out / PROGRESS_FILE).exists()
    # the resumed state covers the distribution and the logit effects too
    assert {"hist_counts", "sample_positions", "sample_values", "bottom_values", "logit_top_tokens"} <= set(built.tensors)
    for key, value in built.tensors.items():
        assert torch.equal(value, resumed.tensors[key]), key


def test_queries(built, story_model, story_tokenizer, story_corpus):
    loaded = NeuronIndex.load(built.path)  # corpus and tokenizer found from meta.json / the copy
    ex = loaded.top_examples(1, 5, k=3, context=4, model=story_model)
    assert len(ex) == 3 and ex[0].activation >= ex[1].activation >= ex[2].activation
    for e in ex:
        assert e.activations[e.center] == pytest.approx(e.activation, abs=1e-5)  # re-run matches the index
        doc = story_corpus.document(e.doc)
        assert e.tokens[e.center] == doc[e.pos] and len(e.tokens) <= 9
    hist = loaded.token_histogram(1, 5)
    assert sum(hist.values()) == CFG["k"]
    ids = loaded.tensors["top_tokens"][1, 5].tolist()
    assert hist[story_tokenizer.token_str(ids[0])] == ids.count(ids[0])
    frame = loaded.neurons_for_token(ids[0])
    hits = (loaded.tensors["top_tokens"] == ids[0]).sum(-1)
    assert frame.hits.iloc[0] == hits.max() and frame.hits.is_monotonic_decreasing
    assert len(loaded.stats_frame(layer=0)) == story_model.cfg.d_mlp


def test_out_of_range_queries(built):
    with pytest.raises(TinyinterpError, match="layer 2 is out of range"):
        built.top_examples(2, 0)
    with pytest.raises(TinyinterpError, match="neuron 128 is out of range"):
        built.token_histogram(0, 128)
    with pytest.raises(TinyinterpError, match="pass a single token"):
        built.neurons_for_token(" Lucy jumped")


def test_empty_corpus_is_refused(story_model, story_corpus, tmp_path):
    class Empty:
        tokens = np.zeros(0, dtype=np.uint16)
        doc_offsets = np.zeros(1, dtype=np.int64)
        n_docs = 0
        tokenizer_fingerprint = story_corpus.tokenizer_fingerprint
        path = "empty-corpus"

    with pytest.raises(DataError, match="empty-corpus: corpus is empty"):
        build_neuron_index(story_model, Empty(), tmp_path / "x", progress=False)


def test_other_tokenizer_is_refused(story_corpus, tmp_path):
    from tests.support.story_world import make_model, make_stories
    from tinyinterp.data.tokenizer import Tokenizer

    other = Tokenizer.train_bpe(make_stories(50, seed=7), vocab_size=420, progress=False)
    with pytest.raises(DataError, match="re-tokenize the corpus with the model's tokenizer"):
        build_neuron_index(make_model(other), story_corpus, tmp_path / "x", progress=False)


def test_model_without_mlp_hooks_is_refused(story_model, story_corpus, tmp_path):
    class AttnOnly:  # an attention-only model: same contract, no MLP hook points
        cfg = story_model.cfg
        tokenizer = story_model.tokenizer
        hook_dict = {k: v for k, v in story_model.hook_dict.items() if ".mlp." not in k}

    with pytest.raises(ModelHookError, match="no MLP hook 'blocks.0.mlp.hook_post'"):
        build_neuron_index(AttnOnly(), story_corpus, tmp_path / "x", progress=False)
