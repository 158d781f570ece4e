"""The replacement model reproduces the model, and every node's incoming edges + bias equal its value.

GPT-Neo (a global and a local layer with an 8-token window, unscaled attention) and a GPT-2-style
model; prompts longer than the window so the local layer really differs from a global one.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.attribution_models import build_model, random_transcoders, save_transcoder_set, target_rows
from tinyinterp.attribution import ReplacementModel, attribute, load_transcoder_set

PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside with Tom."


def node_sum_error(graph) -> float:
    rows = target_rows(graph)
    A = graph.adjacency_matrix.double()
    got = A[rows].sum(1) + graph.node_biases[rows].double()
    return float((got - graph.node_values[rows].double()).abs().max())


@pytest.mark.parametrize("arch", ["gpt-neo", "gpt2"])
def test_replacement_logits_equal_model_logits(arch, tiny_tokenizer):
    model = build_model(arch, seed=1, tokenizer=tiny_tokenizer).double()
    if arch == "gpt-neo":
        assert [model.cfg.attn_type(l) for l in range(2)] == ["global", "local"]
        assert not model.cfg.use_attn_scale
    tokens = model.to_tokens(PROMPT)[0]
    if arch == "gpt-neo":
        assert len(tokens) > model.cfg.window_size
    else:
        assert model.cfg.use_attn_scale
    rm = ReplacementModel(model, random_transcoders(model, seed=2), tokens)
    real = model(tokens[None])[0]
    assert (rm.replacement_logits() - real).abs().max() < 1e-5
    # the frozen linear model with the clean sources is the same function value
    assert (rm.frozen_forward()[0] - real).abs().max() < 1e-5
    assert rm.n_active > 0 and rm.errors.abs().max() > 1e-3  # random transcoders: real error nodes


@pytest.mark.parametrize("arch", ["gpt-neo", "gpt2", "legacy", "gpt2-processed"])
def test_node_sums_and_batching(arch, tiny_tokenizer, tmp_path):
    """legacy: untied unembedding with a bias; processed: TL's folded LayerNorms (LNPre, no weights)."""
    model = build_model(arch.removesuffix("-processed"), seed=3, tokenizer=tiny_tokenizer)
    if arch.endswith("-processed"):
        model.process_weights()
        assert model.blocks[0].ln2.w is None
    folder = save_transcoder_set(random_transcoders(model, seed=4), tmp_path / "transcoders")
    transcoders = load_transcoder_set(folder, model)
    graph = attribute(model, transcoders, PROMPT, dtype=torch.float64, batch_size=16)
    assert graph.adjacency_matrix.dtype == torch.float64
    assert node_sum_error(graph) < 1e-4
    n = graph.n_selected
    assert torch.allclose(graph.node_values[:n], graph.activation_values, atol=1e-12)  # pre-activation = activation
    assert graph.n_nodes == n + 2 * graph.n_pos + graph.n_pos + graph.n_logits
    # the incoming edges are not all in the bias: each feature row has real inputs
    assert (graph.adjacency_matrix[:n].abs().sum(1) > 0).all()
    # no edges from later layers or later positions (direct effects are causal)
    layer, pos = graph.active_features[:, 0], graph.active_features[:, 1]
    later = (layer[None, :] >= layer[:, None]) | (pos[None, :] > pos[:, None])
    assert graph.adjacency_matrix[:n, :n][later].abs().max() == 0
    # batched backward passes give the same rows as one backward pass per target node
    single = attribute(model, transcoders, PROMPT, dtype=torch.float64, batch_size=1, causal_buckets=False)
    assert (single.adjacency_matrix - graph.adjacency_matrix).abs().max() < 1e-10
    # float32 (the default) keeps the sums too
    graph32 = attribute(model, transcoders, PROMPT)
    assert graph32.adjacency_matrix.dtype == torch.float32
    assert node_sum_error(graph32) < 1e-4 * max(1.0, float(graph32.node_values.abs().max()))


def test_logit_nodes_are_the_top_tokens_and_centred(tiny_tokenizer):
    model = build_model("gpt-neo", seed=5, tokenizer=tiny_tokenizer)
    transcoders = random_transcoders(model, seed=6)
    graph = attribute(model, transcoders, PROMPT, max_n_logits=3, desired_logit_prob=0.999)
    with torch.no_grad():
        logits = model(model.to_tokens(PROMPT))[0, -1].double()
    probs = logits.softmax(-1)
    assert graph.n_logits == 3
    assert graph.logit_tokens.tolist() == probs.topk(3).indices.tolist()
    assert torch.allclose(graph.logit_probabilities.double(), probs[graph.logit_tokens], atol=1e-6)
    values = graph.node_values[graph.logit_offset:].double()
    assert torch.allclose(values, logits[graph.logit_tokens] - logits.mean(), atol=1e-4)
    few = attribute(model, transcoders, PROMPT, max_n_logits=10, desired_logit_prob=float(probs.max()) / 2)
    assert few.n_logits == 1  # the top token alone passes half its probability
    # a target that is not among the top tokens: a word token that round-trips through the tokenizer
    ranked = probs.argsort(descending=True).tolist()
    word = next(i for i in ranked[5:] if tiny_tokenizer.encode(tiny_tokenizer.decode([i])) == [i])
    one = attribute(model, transcoders, PROMPT, target=tiny_tokenizer.decode([word]))
    assert one.logit_tokens.tolist() == [word]
    assert torch.allclose(one.logit_probabilities.double(), probs[[word]], atol=1e-6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n_layers=st.integers(1, 3), n_pos=st.integers(1, 14), arch=st.sampled_from(["gpt-neo", "gpt2"]),
       k=st.integers(1, 8), batch_size=st.integers(1, 40))
def test_node_sums_hold_for_any_shape(seed, n_layers, n_pos, arch, k, batch_size):
    model = build_model(arch, seed=seed, d_vocab=40, n_layers=n_layers, d_model=16, n_heads=2)
    transcoders = random_transcoders(model, d_sae=24, k=k, seed=seed)
    tokens = torch.randint(0, 40, (n_pos,), generator=torch.Generator().manual_seed(seed))
    graph = attribute(model, transcoders, tokens, dtype=torch.float64, batch_size=batch_size)
    assert node_sum_error(graph) < 1e-8
    rm = ReplacementModel(model.double(), transcoders.to(torch.float64), tokens)
    assert (rm.replacement_logits() - model(tokens[None])[0]).abs().max() < 1e-10


@pytest.mark.parametrize("arch", ["gpt-neo", "gpt2"])
def test_batched_rows_equal_the_per_target_reference(arch):
    """edge_rows (closed-form first attention step, causal buckets, vmapped batches) == one plain
    autograd backward pass per target through the whole frozen model."""
    from tinyinterp.attribution.edges import edge_rows, per_target_rows

    model = build_model(arch, seed=13, d_vocab=30, d_model=16, n_heads=2, n_layers=3).double()
    transcoders = random_transcoders(model, d_sae=20, k=4, seed=14)
    tokens = torch.randint(0, 30, (13,), generator=torch.Generator().manual_seed(15))
    rm = ReplacementModel(model, transcoders, tokens)
    logit_vecs = torch.randn(3, model.cfg.d_model, dtype=torch.float64)
    batched = edge_rows(rm, logit_vecs, batch_size=6)
    reference = per_target_rows(rm, logit_vecs, values_only=False)
    assert reference.abs().max() > 0.1
    assert (batched - reference).abs().max() < 1e-10
    only = torch.zeros(len(reference), dtype=torch.bool)
    only[::5] = True
    partial = edge_rows(rm, logit_vecs, batch_size=4, only=only)
    assert torch.equal(partial[~only], torch.zeros_like(partial[~only]))
    assert (partial[only] - reference[only]).abs().max() < 1e-10
    assert (per_target_rows(rm, logit_vecs) - reference).abs().max() < 1e-10  # values-only projection: same rows
