"""Find neurons by word: a planted 'dog' neuron beats a near-dead one; scores exact against a full cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.neuron_oracle import brute_force
from tests.support.story_world import make_model
from tinyinterp.data.corpus import tokenize_corpus
from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index
from tinyinterp.interp.neuron_search import find_occurrences, word_variants

CFG = NeuronIndexConfig(k=20, seq_len=24, batch_size=8, shard_docs=16)
DOG, NEAR_DEAD = 7, 11  # planted neurons of layer 1


def plant(model, tokenizer):
    """Overwrite two neurons of layer 1: DOG fires 2.0 on ' dog' and 2.2 on ' cat' (so cats fill its top-k);
    NEAR_DEAD is 0 everywhere but 0.001 on ' dog' (so ' dog' fills its whole top-k)."""
    dog, cat = tokenizer.encode(" dog")[0], tokenizer.encode(" cat")[0]
    seen = {}
    model.embed.register_forward_pre_hook(lambda module, args: seen.__setitem__("tokens", args[0]))

    def rewrite(module, args, out):
        tokens = seen["tokens"]
        out = out.clone()
        out[..., DOG] = 2.0 * (tokens == dog) + 2.2 * (tokens == cat)
        out[..., NEAR_DEAD] = 0.001 * (tokens == dog)
        return out

    model.blocks[1].mlp.hook_post.register_forward_hook(rewrite)
    return model


@pytest.fixture(scope="module")
def planted(story_tokenizer, story_corpus, tmp_path_factory):
    model = plant(make_model(story_tokenizer), story_tokenizer)
    index = build_neuron_index(model, story_corpus, tmp_path_factory.mktemp("idx"), CFG, progress=False)
    return model, index


def test_planted_dog_neuron_beats_near_dead_neuron(planted):
    model, index = planted
    by_hits = index.neurons_for_token(" dog", top=10_000)  # the old top-k count ranks the near-dead neuron high
    hits = {(int(r.layer), int(r.neuron)): int(r.hits) for r in by_hits.itertuples()}
    assert hits[(1, NEAR_DEAD)] == CFG.k == by_hits.hits.max() and hits.get((1, DOG), 0) < CFG.k
    found = index.find_neurons("dog", model, top=10)
    assert (found.layer[0], found.neuron[0]) == (1, DOG)
    assert found.mean_on_word[0] == pytest.approx(2.0, abs=1e-5)
    assert found.score[0] > 2 * found.score[1]  # clearly ahead of every unplanted neuron
    everything = index.find_neurons("DOG", model, top=10_000)  # case-insensitive: same answer
    near = everything[(everything.layer == 1) & (everything.neuron == NEAR_DEAD)].iloc[0]
    assert near.score < 0.5 and near.mean_on_word == pytest.approx(0.001, abs=1e-6)
    assert everything.attrs["n_occurrences"] == found.attrs["n_occurrences"] > 20


def test_scores_are_exact_against_a_full_cache(story_tokenizer, story_corpus, tmp_path):
    model = make_model(story_tokenizer, seed=2)
    index = build_neuron_index(model, story_corpus, tmp_path / "idx", CFG, progress=False)
    acts, _ = brute_force(model, story_corpus, CFG.seq_len)  # (L, T, N)
    acts = acts.double().numpy()
    tokens = np.asarray(story_corpus.tokens)
    on = tokens == story_tokenizer.encode(" dog")[0]
    found = index.find_neurons("dog", model, top=10_000)
    assert found.attrs["n_occurrences"] == on.sum() == found.attrs["n_used"]
    std_layer = acts.std(1)  # (L, N)
    for row in found.head(5).itertuples():
        a = acts[row.layer, :, row.neuron]
        floor = 0.1 * np.median(std_layer[row.layer])
        expected = (a[on].mean() - a[~on].mean()) / max(a[~on].std(), floor)
        assert row.score == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert found.score.is_monotonic_decreasing and len(found) == model.cfg.n_layers * model.cfg.d_mlp
    sampled = index.find_neurons("dog", model, top=5, max_occurrences=10)  # estimate from 10 occurrences
    assert sampled.attrs["n_used"] == 10 and sampled.attrs["n_occurrences"] == on.sum()


def test_phrases_case_and_whole_words(story_tokenizer, tmp_path):
    text = ["hotdog dog dogs Dog. the dog ran", "One day, a big dog", "the DOG and one day"]
    corpus = tokenize_corpus(text, story_tokenizer, tmp_path / "c", progress=False)
    end = corpus.n_tokens
    starts, _ = find_occurrences(corpus, end, word_variants(story_tokenizer, "dog"), story_tokenizer)
    decoded = [story_tokenizer.decode(corpus.tokens[s : s + 2].tolist()) for s in starts]
    assert len(starts) == 5, decoded  # not 'hotdog', not 'dogs'
    starts, lengths = find_occurrences(corpus, end, word_variants(story_tokenizer, "one DAY"), story_tokenizer)
    assert len(starts) == 2 and (lengths >= 2).all()  # a two-word phrase, at a document start and mid-text
    starts, _ = find_occurrences(corpus, end, word_variants(story_tokenizer, ["big", "ran"]), story_tokenizer)
    assert len(starts) == 2  # alternatives count together


def test_unknown_word_and_bad_input(planted):
    model, index = planted
    with pytest.raises(TinyinterpError, match="no whole-word occurrence"):
        index.find_neurons("zebra", model)
    with pytest.raises(TinyinterpError, match="at least one non-empty word"):
        index.find_neurons("  ", model)
    other = make_model(index.tokenizer, preset="test-small")
    if (other.cfg.n_layers, other.cfg.d_mlp) != (index.n_layers, index.d_mlp):
        with pytest.raises(TinyinterpError, match="pass the model the index was built from"):
            index.find_neurons("dog", other)
