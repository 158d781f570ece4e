"""Activation histograms, per-bin examples, quantile and most negative examples: exact against a full cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.neuron_oracle import CFG, brute_force
from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.neuron_distribution import (
    N_BINS, ZERO_BIN, activation_bins, bin_edges, bin_ranges, position_priority, quantile_bins,
)
from tinyinterp.interp.neuron_index import NeuronIndex, NeuronIndexConfig, build_neuron_index


@pytest.fixture(scope="module")
def built(story_tokenizer, story_corpus, tmp_path_factory):
    from tests.support.story_world import make_model

    model = make_model(story_tokenizer)
    index = build_neuron_index(model, story_corpus, tmp_path_factory.mktemp("idx"), NeuronIndexConfig(**CFG, k_negative=4),
                               progress=False)
    acts, positions = brute_force(model, story_corpus, CFG["seq_len"])  # (L, T, N); positions are 0..T-1
    return model, index, acts.numpy()


def in_bin(x: float, b: int) -> bool:
    lo, hi = bin_ranges()[b]
    if b < ZERO_BIN:
        return lo < x <= hi  # negative bins are closed at the edge nearer zero
    if b == ZERO_BIN:
        return lo < x < hi
    return lo <= x < hi


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32))
def test_bin_of_any_value_matches_its_edges(x):
    b = int(activation_bins(torch.tensor([x], dtype=torch.float32))[0])
    assert 0 <= b < N_BINS and in_bin(x, b)


def test_bin_edges_are_exact_and_ascending():
    edges = bin_edges()
    assert len(edges) == N_BINS - 1 and np.all(np.diff(edges) > 0)
    assert edges[ZERO_BIN] == 2.0**-8 and edges[-1] == 128.0 and edges[ZERO_BIN - 1] == -(2.0**-8)
    at = torch.tensor(edges, dtype=torch.float32)  # a positive edge opens its bin, a negative one closes its bin
    got = activation_bins(at).tolist()
    assert got == [b for b in range(N_BINS - 1) if b < ZERO_BIN] + [b + 1 for b in range(ZERO_BIN, N_BINS - 1)]


def test_position_priority_is_fixed_and_spread():
    pos = np.arange(100_000)
    p = position_priority(pos)
    assert (p >= 0).all() and len(np.unique(p)) == len(p)
    assert np.array_equal(p, position_priority(pos))
    assert abs(np.corrcoef(pos, p)[0, 1]) < 0.02  # not ordered by position
    assert position_priority(np.array([-1]))[0] == -1


def test_histogram_samples_and_negatives_match_brute_force(built):
    _, index, acts = built
    t = {k: v.numpy() for k, v in index.tensors.items()}
    L, T, N = acts.shape
    bins = activation_bins(torch.from_numpy(acts)).numpy()  # (L, T, N)
    prio = position_priority(np.arange(T))
    order = np.argsort(-prio, kind="stable")
    for layer in range(L):
        cells = (np.arange(N) * N_BINS + bins[layer])  # (T, N)
        expected = np.bincount(cells.reshape(-1), minlength=N * N_BINS).reshape(N, N_BINS)
        assert np.array_equal(t["hist_counts"][layer], expected)
        # each non-empty bin's example is its member with the highest priority (a uniform random member)
        ranked = cells[order]  # rows in priority order
        first_cell, first_row = np.unique(ranked.reshape(-1), return_index=True)
        winner = order[first_row // N]
        sample = t["sample_positions"][layer].reshape(-1)
        assert np.array_equal(sample[first_cell], winner)
        assert (sample[np.setdiff1d(np.arange(N * N_BINS), first_cell)] == -1).all()
        np.testing.assert_allclose(t["sample_values"][layer].reshape(-1)[first_cell],
                                   acts[layer, winner, first_cell // N_BINS], rtol=1e-5, atol=1e-6)
        low = np.sort(acts[layer], axis=0)[:4].T  # (N, 4) most negative
        np.testing.assert_allclose(t["bottom_values"][layer], low, rtol=1e-5, atol=1e-6)
        at = acts[layer, t["bottom_positions"][layer], np.arange(N)[:, None]]
        np.testing.assert_allclose(at, t["bottom_values"][layer], rtol=1e-5, atol=1e-6)


def test_quantile_bins_known_answers():
    counts = np.array([0, 5, 0, 3, 2])
    got = quantile_bins(counts, [0.0, 0.5, 0.51, 0.8, 0.81, 1.0])
    assert [b for b, _, _ in got] == [1, 1, 3, 3, 4, 4]
    assert got[2][1:] == (0.5, 0.8)
    assert quantile_bins(np.zeros(3), [0.5]) == []


def test_quantile_examples_lie_at_their_quantiles(built, story_corpus):
    model, index, acts = built
    layer, neuron = 1, 5
    column = acts[layer, :, neuron]
    examples = index.quantile_examples(layer, neuron, quantiles=(0.1, 0.5, 0.9, 0.99), context=3, model=model)
    assert [e.quantile for e in examples] == [0.1, 0.5, 0.9, 0.99]
    offsets = np.asarray(story_corpus.doc_offsets)
    for ex in examples:
        pos = offsets[ex.doc] + ex.pos
        assert ex.activation == pytest.approx(column[pos], abs=1e-5)
        assert ex.activations[ex.center] == pytest.approx(ex.activation, abs=1e-5)  # re-run with the model
        share_at_or_below = np.mean(column <= ex.activation)
        lo, hi = ex.share_range
        assert lo <= ex.quantile <= hi and lo < share_at_or_below <= hi + 1e-9
    assert examples[0].activation <= examples[1].activation <= examples[2].activation <= examples[3].activation
    neg = index.negative_examples(layer, neuron, context=2)
    assert [e.activation for e in neg] == pytest.approx(sorted(column)[:4], abs=1e-5)
    hist = index.activation_histogram(layer, neuron)
    assert hist["count"].sum() == len(column) and len(hist) == N_BINS
    assert np.isinf(hist.lo[0]) and np.isinf(hist.hi[N_BINS - 1])


def test_index_without_distribution_says_rebuild(built, tmp_path):
    _, index, _ = built
    old = NeuronIndex(tmp_path, index.meta, {k: v for k, v in index.tensors.items() if not k.startswith(("hist", "sample", "bottom", "logit"))},
                      corpus=index.corpus, tokenizer=index.tokenizer)
    for query in (old.quantile_examples, old.activation_histogram, old.negative_examples, old.logit_effects):
        with pytest.raises(TinyinterpError, match="rebuild it with `tinyinterp analyze neurons`"):
            query(0, 1)


def test_samples_do_not_depend_on_batching(built, story_corpus, tmp_path):
    model, index, _ = built
    other = build_neuron_index(model, story_corpus, tmp_path / "b3", NeuronIndexConfig(**(CFG | {"batch_size": 3}), k_negative=4),
                               progress=False)
    for key in ("hist_counts", "sample_positions"):  # the sample is fixed by the positions' priorities
        assert torch.equal(index.tensors[key], other.tensors[key]), key
    for key in ("sample_values", "bottom_values"):  # (bottom positions may differ where identical openings tie)
        torch.testing.assert_close(index.tensors[key], other.tensors[key], atol=1e-5, rtol=1e-5)
