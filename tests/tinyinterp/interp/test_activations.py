"""The one activation pass: same activations as a full ``run_with_cache``, and blocks after the last
requested layer never run (our model via ``stop_at_layer``, any other hooked model via the hook exception,
the TransformerBridge)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyinterp.errors import TinyinterpError
from tinyinterp.interp.activations import iter_activations, sequence_activations, stop_layer
from tinyinterp.interp.inputs import ModelHookError, document_windows
from tinyinterp.models.transformer import HookedTransformer
from tinyinterp.models.zoo import preset_config

KINDS = ("mlp_post", "mlp_pre", "resid_pre", "resid_post", "attn_out", "pattern", "z")


@pytest.fixture(scope="module")
def deep_model(story_tokenizer):
    """Four layers, so stopping after an early one has later blocks to skip."""
    torch.manual_seed(3)
    return HookedTransformer(preset_config("test-tiny", d_vocab=story_tokenizer.vocab_size, n_layers=4)).eval()


@contextmanager
def count_block_forwards(blocks):
    """Yield a list of forward calls started per block module, counted by torch forward pre-hooks."""
    counts = [0] * len(blocks)
    handles = [block.register_forward_pre_hook(lambda module, args, i=i: counts.__setitem__(i, counts[i] + 1))
               for i, block in enumerate(blocks)]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def full_cache(model, corpus, row, names=None) -> dict:
    """Every (or the named) activation of one window from a plain full ``run_with_cache``."""
    _, start, length = row
    tokens = torch.as_tensor(np.asarray(corpus.tokens[start: start + length], dtype=np.int64))[None]
    _, cache = model.run_with_cache(tokens, return_cache_object=False, names_filter=names)
    return cache


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 7), seq_len=st.integers(1, 40), n_docs=st.integers(1, 4),
       requests=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(KINDS)), min_size=1, max_size=4))
def test_pass_equals_full_cache(deep_model, story_corpus, batch_size, seq_len, n_docs, requests):
    windows = document_windows(story_corpus, seq_len, doc_stop=n_docs)
    seen = 0
    for batch in iter_activations(deep_model, story_corpus, windows, requests, batch_size=batch_size):
        assert len(batch.windows) <= batch_size and batch.tokens.shape[0] == len(batch.windows)
        for row, window in enumerate(batch.windows):
            cache, length = full_cache(deep_model, story_corpus, window, list(batch.acts)), int(window[2])
            assert batch.positions[row, :length].tolist() == list(range(window[1], window[1] + length))
            assert not batch.mask[row, length:].any()
            for layer, kind in requests:
                name = {"mlp_post": f"blocks.{layer}.mlp.hook_post", "mlp_pre": f"blocks.{layer}.mlp.hook_pre",
                        "resid_pre": f"blocks.{layer}.hook_resid_pre", "resid_post": f"blocks.{layer}.hook_resid_post",
                        "attn_out": f"blocks.{layer}.hook_attn_out", "pattern": f"blocks.{layer}.attn.hook_pattern",
                        "z": f"blocks.{layer}.attn.hook_z"}[kind]
                got, want = batch.acts[name][row], cache[name][0]
                got = got[:, :length, :length] if kind == "pattern" else got[:length]
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        seen += len(batch.windows)
    assert seen == len(windows)


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_early_stop_skips_later_blocks(deep_model, story_corpus, layer):
    windows = document_windows(story_corpus, 16, doc_stop=5)
    n_batches = -(-len(windows) // 4)
    with count_block_forwards(deep_model.blocks) as counts:
        for _ in iter_activations(deep_model, story_corpus, windows, [(layer, "mlp_post")], batch_size=4):
            pass
    assert counts == [n_batches] * (layer + 1) + [0] * (3 - layer)
    with count_block_forwards([deep_model.blocks[layer].mlp.fc_out]) as counts:  # after hook_post: never needed
        next(iter_activations(deep_model, story_corpus, windows, [(layer, "mlp_post")], batch_size=4))
    assert counts == [0]
    with count_block_forwards(deep_model.blocks) as counts:
        for _ in iter_activations(deep_model, story_corpus, windows, [(layer, "mlp_post")], batch_size=4, stop_early=False):
            pass
    assert counts == [n_batches] * 4


class NoStopAtLayer:
    """A hooked model whose forward cannot be told where to stop: the pass must stop it from a hook."""

    def __init__(self, model):
        self.model, self.cfg, self.hook_dict = model, model.cfg, model.hook_dict
        self.forwards = 0

    def parameters(self):
        return self.model.parameters()

    def run_with_hooks(self, tokens, fwd_hooks, return_type="logits"):
        self.forwards += 1
        return self.model.run_with_hooks(tokens, fwd_hooks=fwd_hooks, return_type=return_type)


def test_hook_exception_stops_a_model_without_stop_at_layer(deep_model, story_corpus):
    wrapped = NoStopAtLayer(deep_model)
    windows = document_windows(story_corpus, 20, doc_stop=4)
    requests = ["blocks.1.hook_resid_post", "blocks.1.mlp.hook_post", "blocks.0.attn.hook_pattern"]
    with count_block_forwards(deep_model.blocks) as counts:
        batches = list(iter_activations(wrapped, story_corpus, windows, requests, batch_size=3))
    assert counts[2:] == [0, 0] and counts[:2] == [len(batches)] * 2 and wrapped.forwards == len(batches)
    reference = list(iter_activations(deep_model, story_corpus, windows, requests, batch_size=3))
    for got, want in zip(batches, reference):
        assert set(got.acts) == set(requests)
        for name in requests:
            torch.testing.assert_close(got.acts[name], want.acts[name])
    assert not deep_model.hook_dict["blocks.1.mlp.hook_post"]._forward_hooks  # hooks removed after the stop


def test_request_after_the_blocks_runs_all_and_matches(deep_model):
    seqs = [[5, 9, 11, 3], [7, 2], [1, 1, 1, 1, 1, 8]]
    got = sequence_activations(deep_model, seqs, ["ln_final.hook_normalized", "hook_embed"], batch_size=2)
    assert stop_layer(["ln_final.hook_normalized"]) is None and stop_layer(["hook_embed"]) == 0
    for ids, acts in zip(seqs, got):
        _, cache = deep_model.run_with_cache(torch.tensor([ids]))
        for name in ("ln_final.hook_normalized", "hook_embed"):
            assert acts[name].shape[0] == len(ids)
            torch.testing.assert_close(acts[name], cache[name][0], atol=1e-5, rtol=1e-5)


def test_reduce_keeps_what_it_returns_and_shares_a_memo(deep_model, story_corpus):
    windows = document_windows(story_corpus, 12, doc_stop=3)
    calls = []

    def reduce(name, acts, batch):
        batch.memo.setdefault("first", name)
        calls.append((name, batch.memo["first"]))
        return None if name.endswith("hook_pre") else batch.real_rows(acts[..., 3])

    for batch in iter_activations(deep_model, story_corpus, windows, [(0, "mlp_pre"), (0, "mlp_post")], reduce=reduce):
        assert list(batch.acts) == ["blocks.0.mlp.hook_post"]
        n_real = int(batch.mask.sum())
        assert batch.acts["blocks.0.mlp.hook_post"].shape == (n_real,) == batch.real_positions.shape
    assert all(first == "blocks.0.mlp.hook_pre" for _, first in calls)


def test_bad_requests_are_one_line(deep_model, story_corpus):
    windows = document_windows(story_corpus, 12, doc_stop=1)
    with pytest.raises(TinyinterpError, match=r"layer 4 is out of range: the model has layers 0..3"):
        next(iter_activations(deep_model, story_corpus, windows, [(4, "mlp_post")]))
    with pytest.raises(ModelHookError, match=r"has no hook 'blocks.0.mlp.hook_nope'"):
        next(iter_activations(deep_model, story_corpus, windows, ["blocks.0.mlp.hook_nope"]))


def test_top_examples_run_batched_and_stop_after_the_layer(story_model, story_corpus, tmp_path):
    from tinyinterp.interp.neuron_index import NeuronIndexConfig, build_neuron_index

    index = build_neuron_index(story_model, story_corpus, tmp_path / "idx", NeuronIndexConfig(k=12, seq_len=24),
                               progress=False)
    with count_block_forwards(story_model.blocks) as counts:
        examples = index.top_examples(0, 7, k=12, context=30, model=story_model)
    offsets = np.asarray(story_corpus.doc_offsets)
    n_windows = len({(ex.doc, ex.pos // 24) for ex in examples})
    # each distinct window once, in batches of 4, never past layer 0 (the old path: 12 forwards through every block)
    assert counts == [-(-n_windows // 4), 0] and counts[0] < len(examples) == 12
    for ex in examples:  # every known activation is the one a full forward of the index's window gives
        start = offsets[ex.doc] + ex.pos // 24 * 24
        end = min(start + 24, offsets[ex.doc + 1])
        cache = full_cache(story_model, story_corpus, (ex.doc, start, end - start))
        lo = offsets[ex.doc] + ex.pos - ex.center
        for i, value in enumerate(ex.activations):
            if start <= lo + i < end:
                assert value == pytest.approx(float(cache["blocks.0.mlp.hook_post"][0, lo + i - start, 7]), abs=1e-5)
            else:
                assert np.isnan(value)


@pytest.mark.slow
def test_bridge_pass_matches_its_cache_and_stops_early(tmp_path, shared_data):
    import tinyinterp
    from tests.support.hf_models import save_tiny_hf_model

    model_dir = save_tiny_hf_model(tmp_path / "gpt2", "gpt2", shared_data / "tokenizers" / "gpt2" / "tokenizer.json")
    model = tinyinterp.load(model_dir, backend="bridge")
    seqs = [model.tokenizer.encode(t) for t in ("Once upon a time, Lily saw a cat.", "Tom ran.", "The big dog sat.")]
    names = ["blocks.0.mlp.hook_post", "blocks.0.attn.hook_pattern"]
    with count_block_forwards([block.attn for block in model.bridge.blocks]) as counts:  # a stopped block's
        got = sequence_activations(model, seqs, names, batch_size=2)                    # wrapper is entered
    assert counts == [2, 0]
    for ids, acts in zip(seqs, got):
        _, cache = model.run_with_cache(torch.tensor([ids]))
        for name in names:
            torch.testing.assert_close(acts[name], cache[name][0], atol=1e-5, rtol=1e-5)
